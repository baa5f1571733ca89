"""Canonical -> Gemini: requests for the Gemini adapter, replies and chunks for /genai.

A canonical chat request becomes a ``generateContent`` body (the model is in the URL,
not the body); a canonical reply or stream becomes Gemini's ``GenerateContentResponse``
objects. Input Gemini cannot express raises ``bad_request`` naming the field.
"""
from __future__ import annotations

import json
import mimetypes
from typing import Any

from app.dialects.openai import SYSTEM_ROLES, iter_messages, iter_parts, part_text, unsupported_role
from app.errors import bad_request

from .common import FINISH_FROM_CHAT, signature_of, split_id_signature, usage_from_chat

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "ogg": "audio/ogg",
                "aac": "audio/aac", "pcm16": "audio/pcm"}
# reasoning_effort -> thinkingBudget for Gemini 2.x (Gemini 3 takes the level itself).
_THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


# -- canonical request -> generateContent body -------------------------------------------


def chat_request_to_gemini(req: dict, model: str = "") -> dict:
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    system: list[dict] = []
    contents: list[dict] = []
    call_names: dict[str, str] = {}
    for path, msg, role in iter_messages(messages):
        if role in SYSTEM_ROLES:
            system.extend(_parts(msg.get("content"), f"{path}.content", media=False))
        elif role == "user":
            _append(contents, "user", _parts(msg.get("content"), f"{path}.content", media=True))
        elif role == "assistant":
            _append(contents, "model", _model_parts(msg, path, call_names))
        elif role in ("tool", "function"):
            _append(contents, "user", [_function_response(msg, path, call_names)])
        else:
            raise unsupported_role(role, path)
    if not contents:
        raise bad_request("at least one user or assistant message with content is required", param="messages")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = req.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise bad_request("'tools' must be an array", param="tools")
        body["tools"] = [{"functionDeclarations": [_declaration(tool, i) for i, tool in enumerate(tools)]}]
        choice = _tool_config(req.get("tool_choice"))
        if choice:
            body["toolConfig"] = {"functionCallingConfig": choice}
    config = _generation_config(req, model)
    if config:
        body["generationConfig"] = config
    return body


def _append(contents: list[dict], role: str, parts: list[dict]) -> None:
    """Add parts as a turn, merging into the previous turn of the same role.

    Gemini wants all function responses of a turn in one content, and rejects empty parts.
    """
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _parts(content: Any, path: str, *, media: bool) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or an array of parts", param=path)
    parts = []
    for where, part, kind in iter_parts(content, path):
        if kind in ("text", "refusal"):
            text = part_text(part, kind, where)
            if text:
                parts.append({"text": text})
        elif media and kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media(url, f"{where}.image_url.url", default_type="image/jpeg"))
        elif media and kind == "input_audio":
            audio = part.get("input_audio") or {}
            if not isinstance(audio.get("data"), str):
                raise bad_request("input_audio needs base64 'data'", param=f"{where}.input_audio.data")
            mime = _AUDIO_TYPES.get(str(audio.get("format") or "wav"), "audio/" + str(audio.get("format")))
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        elif media and kind == "file":
            file = part.get("file") or {}
            if isinstance(file.get("file_data"), str):
                parts.append(_media(file["file_data"], f"{where}.file.file_data", default_type="application/pdf"))
            elif isinstance(file.get("file_id"), str):
                parts.append({"fileData": {"fileUri": file["file_id"]}})
            else:
                raise bad_request("file part needs 'file_data' or 'file_id'", param=f"{where}.file")
        else:
            raise bad_request(f"content part type {kind!r} is not supported here", param=f"{where}.type")
    return parts


def _media(url: Any, path: str, *, default_type: str) -> dict:
    if not isinstance(url, str) or not url:
        raise bad_request("a media part needs a URL", param=path)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, params = header.partition(";")
        if not sep or "base64" not in params.split(";"):
            raise bad_request("data URLs must be base64-encoded (data:<type>;base64,...)", param=path)
        return {"inlineData": {"mimeType": mime.strip().lower() or default_type, "data": data}}
    if url.lower().startswith(("http://", "https://", "gs://")):
        file_data = {"fileUri": url}
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
        if guessed:
            file_data = {"mimeType": guessed, "fileUri": url}
        return {"fileData": file_data}
    raise bad_request("media URL must be an http(s) or gs:// URL or a base64 data URL", param=path)


def _model_parts(msg: dict, path: str, call_names: dict[str, str]) -> list[dict]:
    parts = _parts(msg.get("content"), f"{path}.content", media=False)
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise bad_request("'tool_calls' must be an array", param=f"{path}.tool_calls")
    message_signature = signature_of(msg)
    if message_signature and parts and not calls:
        parts[-1]["thoughtSignature"] = message_signature
    for k, call in enumerate(calls):
        where = f"{path}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise bad_request("tool call needs a function name", param=f"{where}.function.name")
        function_call: dict[str, Any] = {"name": function["name"],
                                         "args": _arguments(function.get("arguments"), f"{where}.function.arguments")}
        id_signature = None
        if call.get("id"):
            function_call["id"], id_signature = split_id_signature(call["id"])
            call_names[call["id"]] = function["name"]
        part: dict[str, Any] = {"functionCall": function_call}
        signature = signature_of(call) or id_signature
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    if msg.get("function_call"):
        raise bad_request("legacy 'function_call' is not supported; use 'tool_calls'", param=f"{path}.function_call")
    return parts


def _arguments(arguments: Any, path: str) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        raise bad_request("tool call arguments must be a JSON object string", param=path) from None
    if not isinstance(value, dict):
        raise bad_request("tool call arguments must be a JSON object", param=path)
    return value


def _function_response(msg: dict, path: str, call_names: dict[str, str]) -> dict:
    call_id = msg.get("tool_call_id")
    name = call_names.get(call_id) if call_id else None
    name = name or msg.get("name")
    if not name:
        raise bad_request("tool message answers no earlier tool call (unknown tool_call_id)",
                          param=f"{path}.tool_call_id")
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    response: Any = None
    if isinstance(content, str):
        try:
            response = json.loads(content)
        except ValueError:
            response = None
    if not isinstance(response, dict):  # Gemini's response is an object; the SDK wraps others the same way
        response = {"result": content if content is not None else ""}
    part: dict[str, Any] = {"name": name, "response": response}
    if call_id:
        part["id"] = split_id_signature(call_id)[0]
    return {"functionResponse": part}


def _declaration(tool: Any, i: int) -> dict:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise bad_request(f"tool type {kind!r} is not supported; only 'function' tools are", param=f"tools[{i}].type")
    function = tool.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise bad_request("function tool needs a name", param=f"tools[{i}].function.name")
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    if function.get("parameters"):
        # parametersJsonSchema takes JSON Schema as it is; "parameters" is an OpenAPI subset.
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _tool_config(choice: Any) -> dict | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "required":
        return {"mode": "ANY"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    raise bad_request("tool_choice must be 'auto', 'required', 'none' or a function", param="tool_choice")


_CONFIG_FIELDS = (
    ("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("n", "candidateCount"),
    ("seed", "seed"), ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
    ("logprobs", "responseLogprobs"), ("top_logprobs", "logprobs"),
)


def _generation_config(req: dict, model: str) -> dict:
    config: dict[str, Any] = {}
    for ours, theirs in _CONFIG_FIELDS:
        if req.get(ours) is not None:
            config[theirs] = req[ours]
    for key in ("max_completion_tokens", "max_tokens"):
        if req.get(key) is not None:
            config["maxOutputTokens"] = req[key]
            break
    stop = req.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = req.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                config["responseJsonSchema"] = schema
    effort = req.get("reasoning_effort")
    if isinstance(effort, str):
        if model.startswith("gemini-3"):
            config["thinkingConfig"] = {"thinkingLevel": "low" if effort in ("none", "minimal") else effort}
        elif effort in _THINKING_BUDGETS:
            config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[effort]}
    return config


# -- canonical reply -> GenerateContentResponse ------------------------------------------


def chat_response_to_gemini(reply: dict) -> dict:
    candidates = []
    for choice in reply.get("choices") or []:
        message = choice.get("message") or {}
        parts = _reply_parts(message.get("reasoning"), message.get("content"), message.get("tool_calls") or [])
        signature = signature_of(message)
        if signature and parts and not message.get("tool_calls"):
            parts[-1]["thoughtSignature"] = signature
        candidates.append(_candidate(choice.get("index", 0), parts or [{"text": ""}], choice.get("finish_reason")))
    out: dict[str, Any] = {"candidates": candidates, "usageMetadata": usage_from_chat(reply.get("usage"))}
    if reply.get("model"):
        out["modelVersion"] = reply["model"]
    if reply.get("id"):
        out["responseId"] = reply["id"]
    return out


def _reply_parts(reasoning: Any, content: Any, tool_calls: list) -> list[dict]:
    parts: list[dict] = []
    if isinstance(reasoning, str) and reasoning:
        parts.append({"text": reasoning, "thought": True})
    if isinstance(content, str) and content:
        parts.append({"text": content})
    elif isinstance(content, list):
        parts.extend({"text": p["text"]} for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    for call in tool_calls:
        function = call.get("function") or {}
        try:
            args = json.loads(function.get("arguments") or "{}")
        except ValueError:
            args = {}
        function_call: dict[str, Any] = {"name": function.get("name"), "args": args if isinstance(args, dict) else {}}
        if call.get("id"):
            function_call["id"] = call["id"]
        part: dict[str, Any] = {"functionCall": function_call}
        signature = signature_of(call)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _candidate(index: int, parts: list[dict], finish_reason: str | None) -> dict:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if finish_reason:
        candidate["finishReason"] = FINISH_FROM_CHAT.get(finish_reason, "OTHER")
    return candidate


class ChatStreamToGemini:
    """Canonical chunks in, ``streamGenerateContent`` events out.

    Text and reasoning go out as they come. Tool call arguments arrive in pieces
    and Gemini sends a call whole, so calls wait for the finish; the final event
    carries them, the finish reason and the usage (which canonical streams send
    after the finishing chunk).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.response_id: str | None = None
        self._calls: dict[int, dict[int, dict]] = {}  # candidate -> tool call index -> call
        self._finish: dict[int, str] = {}
        self._usage: dict | None = None

    def feed(self, chunk: dict) -> list[dict]:
        self.response_id = self.response_id or chunk.get("id")
        if chunk.get("model"):
            self.model = chunk["model"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        out = []
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            parts = _reply_parts(delta.get("reasoning"), delta.get("content"), [])
            for call in delta.get("tool_calls") or ():
                calls = self._calls.setdefault(index, {})
                slot = calls.setdefault(call.get("index", 0), {"function": {"arguments": ""}})
                if call.get("id"):
                    slot["id"] = call["id"]
                if call.get("extra_content"):
                    slot["extra_content"] = call["extra_content"]
                function = call.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] = function["name"]
                slot["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self._finish[index] = choice["finish_reason"]
            if parts:
                out.append(self._event([_candidate(index, parts, None)]))
        return out

    def finish(self) -> list[dict]:
        """The last event: pending tool calls, finish reasons and usage."""
        indexes = sorted(set(self._finish) | set(self._calls)) or [0]
        candidates = []
        for index in indexes:
            calls = [self._calls[index][k] for k in sorted(self._calls.get(index, {}))]
            parts = _reply_parts(None, None, calls) or [{"text": ""}]
            candidates.append(_candidate(index, parts, self._finish.get(index, "stop")))
        event = self._event(candidates)
        event["usageMetadata"] = usage_from_chat(self._usage)
        return [event]

    def _event(self, candidates: list[dict]) -> dict:
        event: dict[str, Any] = {"candidates": candidates, "modelVersion": self.model}
        if self.response_id:
            event["responseId"] = self.response_id
        return event
