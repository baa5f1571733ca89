"""Gemini -> canonical: replies and stream events for the adapter, requests for /genai.

A ``GenerateContentResponse`` becomes a ``chat.completion`` (or chunks); a candidate
that called a function finishes with ``tool_calls`` although Gemini says STOP. A
``generateContent`` body becomes a canonical chat request for non-Gemini upstreams.
"""
from __future__ import annotations

import time
from typing import Any

from app.errors import GatewayError, bad_request

from .common import invalid, FINISH_TO_CHAT, dumps, error_from_gemini, field, new_id, usage_to_chat, with_signature

_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3"}


# -- GenerateContentResponse -> chat.completion -------------------------------------------


def gemini_response_to_chat(resp: dict, model: str, created: int | None = None) -> dict:
    choices = []
    for position, candidate in enumerate(resp.get("candidates") or []):
        message, has_calls = _message(((candidate.get("content") or {}).get("parts")) or [])
        choices.append({
            "index": candidate.get("index", position),
            "message": message,
            "logprobs": None,
            "finish_reason": _finish(candidate.get("finishReason"), has_calls) or "stop",
        })
    if not choices:  # the prompt itself was blocked: promptFeedback.blockReason, no candidates
        blocked = bool((resp.get("promptFeedback") or {}).get("blockReason"))
        choices.append({"index": 0, "message": {"role": "assistant", "content": None}, "logprobs": None,
                        "finish_reason": "content_filter" if blocked else "stop"})
    return {
        "id": resp.get("responseId") or new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": resp.get("modelVersion") or model,
        "choices": choices,
        "usage": usage_to_chat(resp.get("usageMetadata")),
    }


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if not reason:
        return None
    if has_calls and reason == "STOP":
        return "tool_calls"
    return FINISH_TO_CHAT.get(reason, "stop")


def _message(parts: list) -> tuple[dict, bool]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict] = []
    text_signature = None
    for part in parts:
        if not isinstance(part, dict):
            continue
        signature = field(part, "thoughtSignature", "thought_signature")
        if "functionCall" in part or "function_call" in part:
            calls.append(_tool_call(field(part, "functionCall", "function_call") or {}, signature))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
            if signature and not part.get("thought"):
                text_signature = signature
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        message["reasoning"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    elif text_signature:
        with_signature(message, text_signature)
    return message, bool(calls)


def _tool_call(function_call: dict, signature: str | None) -> dict:
    call = {
        "id": function_call.get("id") or new_id("call_"),
        "type": "function",
        "function": {"name": function_call.get("name"), "arguments": dumps(function_call.get("args") or {})},
    }
    return with_signature(call, signature)


# -- streamGenerateContent events -> chat.completion.chunk ----------------------------------


class GeminiStreamToChat:
    """Feed each event's JSON in order; ``done`` turns True once a candidate finished.

    Gemini has no end-of-stream event: the body just ends, so an answer without a
    finishReason was cut. A ``{"error": ...}`` event raises GatewayError.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = new_id("chatcmpl-")
        self.created = int(time.time())
        self.done = False
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls so far

    def feed(self, event: dict) -> list[dict]:
        if "error" in event and "candidates" not in event:
            raise stream_error(event)
        self.id = event.get("responseId") or self.id
        self.model = event.get("modelVersion") or self.model
        chunks = []
        candidates = event.get("candidates") or []
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            delta = self._delta(index, ((candidate.get("content") or {}).get("parts")) or [])
            if index not in self._started:
                self._started.add(index)
                delta = {"role": "assistant", **delta}
                delta.setdefault("content", "")
            reason = _finish(candidate.get("finishReason"), bool(self._calls.get(index)))
            if delta or reason:
                chunks.append(self._chunk(index, delta, reason))
            if reason:
                self.done = True
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            chunks.append(self._chunk(0, {"role": "assistant", "content": ""}, "content_filter"))
            self.done = True
        if event.get("usageMetadata") and self.done:
            usage = usage_to_chat(event["usageMetadata"])
            if chunks:
                chunks[-1]["usage"] = usage
            else:  # usage after the finishing event: OpenAI's usage-only chunk
                chunks.append({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": usage})
        return chunks

    def _delta(self, index: int, parts: list) -> dict:
        delta: dict[str, Any] = {}
        for part in parts:
            if not isinstance(part, dict):
                continue
            if "functionCall" in part or "function_call" in part:
                call = _tool_call(field(part, "functionCall", "function_call") or {},
                                  field(part, "thoughtSignature", "thought_signature"))
                call["index"] = self._calls.get(index, 0)
                self._calls[index] = call["index"] + 1
                delta.setdefault("tool_calls", []).append(call)
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning" if part.get("thought") else "content"
                delta[key] = delta.get(key, "") + part["text"]
        return delta

    def _chunk(self, index: int, delta: dict, finish_reason: str | None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }


def stream_error(event: dict) -> GatewayError:
    """A Google error sent inside a stream, as the equivalent HTTP error."""
    message, status = error_from_gemini(event)
    code = (event.get("error") or {}).get("code")
    code = code if isinstance(code, int) and 400 <= code < 600 else 500
    return GatewayError(message, code, error_type=status, retryable=code >= 500 or code == 429,
                        rotate_key=code == 429)


# -- generateContent request -> canonical chat request ---------------------------------------


def gemini_request_to_chat(body: Any) -> dict:
    """A generateContent body as a canonical chat request (no model: it is in the path)."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise invalid("contents is required and must be a non-empty array", "contents")
    messages: list[dict] = []
    system = field(body, "systemInstruction", "system_instruction")
    if system is not None:
        text = "\n".join(_texts(system, "systemInstruction"))
        if text:
            messages.append({"role": "system", "content": text})
    pending: list[dict] = []  # the last model turn's calls not answered yet
    for i, content in enumerate(contents):
        path = f"contents[{i}]"
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise invalid("each content needs a 'parts' array", f"{path}.parts")
        role = content.get("role")
        role = "user" if role is None or role == "" else role
        if role == "model":
            message, pending = _model_turn(content["parts"], i)
            messages.append(message)
        elif role in ("user", "function"):
            messages.extend(_user_turn(content["parts"], path, pending))
        else:
            raise invalid(f"role {role!r} is not supported; use 'user' or 'model'", f"{path}.role")
    chat: dict[str, Any] = {"messages": messages}
    _tools(body, chat)
    config = field(body, "generationConfig", "generation_config")
    if config is not None and not isinstance(config, dict):
        raise invalid("must be an object", "generationConfig")
    _config(config or {}, chat)
    return chat


def _texts(content: Any, path: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise invalid("must be a content with 'parts'", path)
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _model_turn(parts: list, i: int) -> tuple[dict, list[dict]]:
    texts, calls = [], []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        function_call = field(part, "functionCall", "function_call")
        if isinstance(function_call, dict):
            # Ids unique in the conversation: strict upstreams (Anthropic) reject repeats.
            calls.append({"id": function_call.get("id") or f"call_{i}_{j}", "type": "function",
                          "function": {"name": function_call.get("name"),
                                       "arguments": dumps(function_call.get("args") or {})}})
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message, list(calls)


def _user_turn(parts: list, path: str, pending: list[dict]) -> list[dict]:
    results: list[dict] = []
    content: list[dict] = []
    for j, part in enumerate(parts):
        where = f"{path}.parts[{j}]"
        if not isinstance(part, dict):
            raise invalid("each part must be an object", where)
        response = field(part, "functionResponse", "function_response")
        inline = field(part, "inlineData", "inline_data")
        file_data = field(part, "fileData", "file_data")
        if isinstance(response, dict):
            results.append(_tool_result(response, pending, f"{path}_{j}"))
        elif isinstance(part.get("text"), str):
            content.append({"type": "text", "text": part["text"]})
        elif isinstance(inline, dict):
            content.append(_inline(inline, f"{where}.inlineData"))
        elif isinstance(file_data, dict):
            uri = field(file_data, "fileUri", "file_uri")
            mime = field(file_data, "mimeType", "mime_type") or ""
            if not isinstance(uri, str) or (mime and not mime.startswith("image/")):
                raise invalid("only image fileData can be sent to this provider", f"{where}.fileData")
            content.append({"type": "image_url", "image_url": {"url": uri}})
        else:
            raise invalid("this part kind can only be served by Gemini", where)
    messages = results
    if content:
        if all(p["type"] == "text" for p in content):
            messages.append({"role": "user", "content": "".join(p["text"] for p in content)})
        else:
            messages.append({"role": "user", "content": content})
    return messages


def _tool_result(response: dict, pending: list[dict], fallback_id: str) -> dict:
    name = response.get("name")
    match = next((c for c in pending if response.get("id") and c["id"] == response["id"]), None)
    match = match or next((c for c in pending if c["function"]["name"] == name), None)
    if match is not None:
        pending.remove(match)
    value = response.get("response")
    if isinstance(value, dict) and set(value) == {"result"} and isinstance(value["result"], str):
        text = value["result"]  # the SDK's wrapping of a plain result
    else:
        text = dumps(value if value is not None else {})
    return {"role": "tool", "tool_call_id": match["id"] if match else (response.get("id") or "call_" + fallback_id),
            "content": text}


def _inline(inline: dict, path: str) -> dict:
    mime = str(field(inline, "mimeType", "mime_type") or "")
    data = inline.get("data")
    if not isinstance(data, str):
        raise invalid("inlineData needs base64 'data'", f"{path}.data")
    # Google accepts URL-safe base64 (the SDK sends it); other providers want the standard alphabet.
    data = data.replace("-", "+").replace("_", "/")
    data += "=" * (-len(data) % 4)
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime in _AUDIO_FORMATS:
        return {"type": "input_audio", "input_audio": {"data": data, "format": _AUDIO_FORMATS[mime]}}
    return {"type": "file", "file": {"file_data": f"data:{mime};base64,{data}", "filename": "inline"}}


def _tools(body: dict, chat: dict) -> None:
    tools = body.get("tools")
    if not tools:
        return
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array", "tools")
    out = []
    for i, tool in enumerate(tools):
        declarations = field(tool, "functionDeclarations", "function_declarations") if isinstance(tool, dict) else None
        if not isinstance(declarations, list) or len(tool) != 1:
            raise invalid("only functionDeclarations tools can be sent to this provider", f"tools[{i}]")
        for k, declaration in enumerate(declarations):
            if not isinstance(declaration, dict) or not declaration.get("name"):
                raise invalid("a function declaration needs a name", f"tools[{i}].functionDeclarations[{k}].name")
            function: dict[str, Any] = {"name": declaration["name"]}
            if declaration.get("description"):
                function["description"] = declaration["description"]
            schema = field(declaration, "parametersJsonSchema", "parameters_json_schema")
            if schema is None and declaration.get("parameters") is not None:
                schema = openapi_to_json_schema(declaration["parameters"])
            if schema is not None:
                function["parameters"] = schema
            out.append({"type": "function", "function": function})
    chat["tools"] = out
    config = field(field(body, "toolConfig", "tool_config") or {}, "functionCallingConfig", "function_calling_config")
    if isinstance(config, dict):
        mode = str(config.get("mode") or "AUTO").upper()
        names = field(config, "allowedFunctionNames", "allowed_function_names") or []
        if mode == "NONE":
            chat["tool_choice"] = "none"
        elif mode == "ANY" and len(names) == 1:
            chat["tool_choice"] = {"type": "function", "function": {"name": names[0]}}
        elif mode == "ANY":
            chat["tool_choice"] = "required"
        else:
            chat["tool_choice"] = "auto"


def openapi_to_json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-style Schema (``"type": "STRING"``, ``nullable``) as JSON Schema."""
    if isinstance(schema, list):
        return [openapi_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties",) and isinstance(value, dict):
            out[key] = {name: openapi_to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "any_of"):
            out["anyOf" if key == "any_of" else key] = openapi_to_json_schema(value)
        elif key in ("propertyOrdering", "property_ordering", "nullable"):
            continue
        else:
            out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


_CONFIG_FIELDS = (
    ("temperature", "temperature", None), ("topP", "top_p", "top_p"), ("candidateCount", "n", "candidate_count"),
    ("seed", "seed", None), ("presencePenalty", "presence_penalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty", "frequency_penalty"),
    ("maxOutputTokens", "max_tokens", "max_output_tokens"),
    ("responseLogprobs", "logprobs", "response_logprobs"), ("logprobs", "top_logprobs", None),
)


def _config(config: dict, chat: dict) -> None:
    """generationConfig as OpenAI parameters; topK has no OpenAI form and is left out."""
    for theirs, ours, snake in _CONFIG_FIELDS:
        value = field(config, theirs, snake)
        if value is not None:
            chat[ours] = value
    stop = field(config, "stopSequences", "stop_sequences")
    if stop:
        chat["stop"] = stop
    mime = field(config, "responseMimeType", "response_mime_type")
    schema = field(config, "responseJsonSchema", "response_json_schema")
    if schema is None and field(config, "responseSchema", "response_schema") is not None:
        schema = openapi_to_json_schema(field(config, "responseSchema", "response_schema"))
    if mime == "application/json":
        chat["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
            if schema is not None else {"type": "json_object"}
        )
