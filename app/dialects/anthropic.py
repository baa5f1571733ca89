"""Conversion between the canonical form and Anthropic's Messages API.

The canonical form is the OpenAI Chat Completions wire shape as plain dicts. This
module holds the directions a provider adapter needs: a canonical chat request
becomes a ``POST /v1/messages`` body, and Anthropic's reply (a Message object, or
its server-sent events one at a time) becomes a ``chat.completion`` or a series of
``chat.completion.chunk`` dicts.

Everything here is a pure function of its input: no I/O, no Flask, no clock
except where a caller leaves ``created`` unset. Input that Anthropic cannot
express raises :func:`app.errors.bad_request` naming the offending field.
"""
from __future__ import annotations

import json
import time
from typing import Any

from app.errors import GatewayError, bad_request, echo

# The only media types Anthropic accepts for base64 images.
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> (HTTP status, retryable, rotate_key). The statuses are
# the ones Anthropic documents for the same error outside a stream, so the engine
# treats a mid-stream error like the equivalent HTTP reply. overloaded_error is
# 529 upstream; clients get the standard 503 instead.
_STREAM_ERRORS: dict[str, tuple[int, bool, bool]] = {
    "invalid_request_error": (400, False, False),
    "authentication_error": (401, False, False),
    "billing_error": (402, False, False),
    "permission_error": (403, False, False),
    "not_found_error": (404, False, False),
    "request_too_large": (413, False, False),
    "rate_limit_error": (429, False, True),
    "api_error": (500, True, False),
    "timeout_error": (504, True, False),
    "overloaded_error": (503, True, False),
}


def _dumps(value: Any) -> str:
    """Compact JSON, the way OpenAI serialises tool call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- canonical request -> Anthropic request ---------------------------------


def chat_request_to_anthropic(req: dict, model: str, default_max_tokens: int = 4096) -> dict:
    """Convert a canonical chat request into an Anthropic Messages body for ``model``.

    OpenAI-only fields (``n``, ``logprobs``, penalties, ``seed``,
    ``response_format``, ``stream_options``, ...) are dropped because Anthropic
    rejects unknown fields.
    """
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")

    system, turns = _convert_messages(messages)
    body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req, default_max_tokens)}
    if system:
        # The string form is the common case and the easiest to read in logs;
        # a list is needed for several blocks or a cache breakpoint.
        if len(system) == 1 and "cache_control" not in system[0]:
            body["system"] = system[0]["text"]
        else:
            body["system"] = system
    body["messages"] = turns

    for key in ("temperature", "top_p", "top_k"):
        if req.get(key) is not None:
            body[key] = req[key]

    stop = _stop_sequences(req.get("stop"))
    if stop:
        body["stop_sequences"] = stop

    tools = req.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise bad_request("'tools' must be an array", param="tools")
        body["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
        # A tool_choice without tools means nothing; Anthropic would reject it.
        choice = _tool_choice(req.get("tool_choice"), req.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice

    if req.get("user"):
        body["metadata"] = {"user_id": req["user"]}
    if req.get("stream") is not None:
        body["stream"] = bool(req["stream"])
    return body


def _max_tokens(req: dict, default: int) -> int:
    # max_completion_tokens supersedes the deprecated max_tokens in OpenAI's API;
    # Anthropic requires a value, so fall back to the configured default.
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad_request(f"{key} must be a positive integer", param=key)
            return value
    return default


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop) or None
    raise bad_request("'stop' must be a string or an array of strings", param="stop")


def _convert_messages(messages: list) -> tuple[list[dict], list[dict]]:
    """Split canonical messages into Anthropic ``system`` blocks and turns."""
    system: list[dict] = []
    turns: list[dict] = []
    for i, msg in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request("each message must be an object", param=path)
        role = msg.get("role")
        if role in ("system", "developer"):
            # Anthropic has no system role, only the top-level field.
            system.extend(_content_blocks(msg.get("content"), f"{path}.content", allow_images=False))
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), f"{path}.content", allow_images=True)
        elif role == "assistant":
            blocks = _assistant_blocks(msg, path)
        elif role == "tool":
            role, blocks = "user", [_tool_result(msg, path)]
        else:
            raise bad_request(f"message role {echo(role)!r} is not supported", param=f"{path}.role")
        # Anthropic rejects empty content; a turn without any says nothing.
        if blocks:
            _append_turn(turns, role, blocks)
    if not turns:
        raise bad_request("at least one user or assistant message with content is required", param="messages")
    return system, turns


def _append_turn(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Add blocks as a turn, merging into the previous turn of the same role.

    Anthropic wants alternating roles, and in a user turn every ``tool_result``
    must come before any other block, so tool results are kept at the front.
    """
    if turns and turns[-1]["role"] == role:
        content = turns[-1]["content"]
    else:
        content = []
        turns.append({"role": role, "content": content})
    for block in blocks:
        if block["type"] == "tool_result":
            content.insert(sum(b["type"] == "tool_result" for b in content), block)
        else:
            content.append(block)


def _content_blocks(content: Any, path: str, *, allow_images: bool) -> list[dict]:
    """Canonical message content (string, None or parts) as Anthropic blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or an array of parts", param=path)
    blocks = []
    for j, part in enumerate(content):
        block = _part_block(part, f"{path}[{j}]", allow_images)
        if block is not None:
            blocks.append(block)
    return blocks


def _part_block(part: Any, path: str, allow_images: bool) -> dict | None:
    if not isinstance(part, dict):
        raise bad_request("content parts must be objects", param=path)
    kind = part.get("type")
    if kind in ("text", "refusal"):
        # An assistant's refusal part is text the model said; keep it as such.
        text = part.get(kind)
        if not isinstance(text, str):
            raise bad_request(f"{kind} part needs a string '{kind}'", param=f"{path}.{kind}")
        if not text.strip():
            # Anthropic rejects empty and whitespace-only text blocks.
            return None
        block: dict[str, Any] = {"type": "text", "text": text}
    elif kind == "image_url" and allow_images:
        block = _image_block(part.get("image_url"), f"{path}.image_url")
    else:
        raise bad_request(f"content part type {echo(kind)!r} is not supported here", param=f"{path}.type")
    # Some clients send Anthropic's prompt caching marker on OpenAI parts.
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(image_url: Any, path: str) -> dict:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise bad_request("image_url needs a 'url'", param=f"{path}.url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, params = header.partition(";")
        media_type = media_type.strip().lower()
        if not sep or "base64" not in params.split(";"):
            raise bad_request("image data URLs must be base64-encoded (data:<type>;base64,...)", param=f"{path}.url")
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise bad_request(
                f"image type {media_type!r} is not supported; use image/jpeg, image/png, image/gif or image/webp",
                param=f"{path}.url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.lower().startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request("image URL must be an http(s) URL or a base64 data URL", param=f"{path}.url")


def _assistant_blocks(msg: dict, path: str) -> list[dict]:
    if msg.get("function_call") is not None:
        raise bad_request("legacy 'function_call' is not supported; use 'tool_calls'", param=f"{path}.function_call")
    blocks = _content_blocks(msg.get("content"), f"{path}.content", allow_images=False)
    tool_calls = msg.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise bad_request("'tool_calls' must be an array", param=f"{path}.tool_calls")
    for k, call in enumerate(tool_calls):
        blocks.append(_tool_use_block(call, f"{path}.tool_calls[{k}]"))
    return blocks


def _tool_use_block(call: Any, path: str) -> dict:
    if not isinstance(call, dict):
        raise bad_request("each tool call must be an object", param=path)
    if call.get("type", "function") != "function":
        raise bad_request(f"tool call type {echo(call.get('type'))!r} is not supported", param=f"{path}.type")
    if not call.get("id"):
        raise bad_request("tool call needs an 'id'", param=f"{path}.id")
    function = call.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise bad_request("tool call needs a function name", param=f"{path}.function.name")
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": function["name"],
        "input": _parse_arguments(function.get("arguments"), f"{path}.function.arguments"),
    }


def _parse_arguments(arguments: Any, path: str) -> dict:
    """OpenAI carries tool arguments as a JSON string; Anthropic wants the object."""
    if isinstance(arguments, dict):
        return arguments
    # Some clients send "" (or nothing) for a call without arguments.
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        raise bad_request("tool call arguments must be a JSON string", param=path)
    try:
        value = json.loads(arguments)
    except ValueError as e:
        raise bad_request(f"tool call arguments are not valid JSON: {e}", param=path) from None
    if not isinstance(value, dict):
        raise bad_request("tool call arguments must be a JSON object", param=path)
    return value


def _tool_result(msg: dict, path: str) -> dict:
    call_id = msg.get("tool_call_id")
    if not call_id:
        raise bad_request("tool message needs a 'tool_call_id'", param=f"{path}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        # Anthropic allows a result without content, but not an empty text block.
        if content:
            block["content"] = content
    else:
        parts = _content_blocks(content, f"{path}.content", allow_images=False)
        if parts:
            block["content"] = parts
    return block


def _tool(tool: Any, i: int) -> dict:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise bad_request(f"tool type {echo(kind)!r} is not supported; only 'function' tools are", param=f"tools[{i}].type")
    function = tool.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise bad_request("function tool needs a name", param=f"tools[{i}].function.name")
    # OpenAI allows a function without parameters; Anthropic requires an object schema.
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request("function parameters must be a JSON Schema object", param=f"tools[{i}].function.parameters")
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = schema
    return out


def _tool_choice(choice: Any, parallel_tool_calls: Any) -> dict | None:
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not function.get("name"):
            raise bad_request("tool_choice needs a function name", param="tool_choice.function.name")
        result = {"type": "tool", "name": function["name"]}
    else:
        raise bad_request("tool_choice must be 'auto', 'required', 'none' or a function", param="tool_choice")

    if parallel_tool_calls is False:
        # Anthropic carries this flag inside tool_choice; "none" has no such field.
        if result is None:
            result = {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


# -- Anthropic response -> canonical response -------------------------------


def anthropic_response_to_chat(resp: dict, created: int | None = None) -> dict:
    """Convert an Anthropic Message object into a ``chat.completion``."""
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[dict] = []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": _dumps(block.get("input") or {})},
                }
            )
        # redacted_thinking and server-side tool blocks have no Chat Completions form.

    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        message["reasoning"] = "".join(thoughts)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": resp.get("id"),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": resp.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(resp.get("stop_reason")),
            }
        ],
        "usage": _chat_usage(resp.get("usage")),
    }


def _finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    # A stop reason added after this was written still ends the turn.
    return _FINISH_REASONS.get(stop_reason, "stop")


def _chat_usage(usage: dict | None) -> dict:
    """Anthropic usage as OpenAI usage.

    Anthropic's ``input_tokens`` leaves out cached tokens; its total input is the
    sum of the three input counts, which is what OpenAI's ``prompt_tokens`` means.
    """
    usage = usage or {}
    cache_write = usage.get("cache_creation_input_tokens")
    cache_read = usage.get("cache_read_input_tokens")
    prompt = (usage.get("input_tokens") or 0) + (cache_write or 0) + (cache_read or 0)
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_write is not None or cache_read is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cache_read or 0}
    return out


# -- Anthropic stream -> canonical chunks ------------------------------------


class AnthropicStreamToChat:
    """Turn Anthropic's server-sent events into ``chat.completion.chunk`` dicts.

    Feed each event in order; ``done`` becomes True at ``message_stop``. An
    ``error`` event raises :class:`GatewayError`. Unknown events are ignored, as
    Anthropic asks, since it may add new ones.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.id: str | None = None
        self.created = int(time.time())
        self.done = False
        self._usage: dict[str, Any] = {}
        # Anthropic content block index -> OpenAI tool_calls index. Only client
        # tool_use blocks get one, so server tool input deltas are not leaked.
        self._tool_index: dict[int, int] = {}

    def feed(self, event: str, data: dict) -> list[dict]:
        """Convert one event (its SSE name and parsed data) into zero or more chunks."""
        handler = self._handlers.get(event or data.get("type"))
        if handler is None:
            return []
        return handler(self, data)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def _on_message_start(self, data: dict) -> list[dict]:
        message = data.get("message") or {}
        self.id = message.get("id") or self.id
        self.model = message.get("model") or self.model
        self._usage = dict(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, data: dict) -> list[dict]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning": block["thinking"]})]
        if kind == "tool_use":
            k = len(self._tool_index)
            self._tool_index[data.get("index")] = k
            # The input arrives through input_json_delta; the start carries {}.
            arguments = _dumps(block["input"]) if block.get("input") else ""
            call = {"index": k, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _on_content_block_delta(self, data: dict) -> list[dict]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            k = self._tool_index.get(data.get("index"))
            if k is not None:
                call = {"index": k, "function": {"arguments": delta["partial_json"]}}
                return [self._chunk({"tool_calls": [call]})]
        # signature_delta, citations_delta and future kinds have no chunk form.
        return []

    def _on_message_delta(self, data: dict) -> list[dict]:
        # Usage here is cumulative and, when present, its input counts supersede
        # message_start's (server tools can add input tokens during the turn).
        self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        chunk = self._chunk({}, _finish_reason(stop_reason) or "stop")
        chunk["usage"] = _chat_usage(self._usage)
        return [chunk]

    def _on_message_stop(self, data: dict) -> list[dict]:
        self.done = True
        return []

    def _on_error(self, data: dict) -> list[dict]:
        error = data.get("error") or {}
        error_type = error.get("type")
        message = error.get("message") or "Anthropic stream error"
        status, retryable, rotate_key = _STREAM_ERRORS.get(error_type, (400, False, False))
        raise GatewayError(message, status, error_type=error_type, retryable=retryable, rotate_key=rotate_key)

    _handlers = {
        "message_start": _on_message_start,
        "content_block_start": _on_content_block_start,
        "content_block_delta": _on_content_block_delta,
        "message_delta": _on_message_delta,
        "message_stop": _on_message_stop,
        "error": _on_error,
    }


# -- errors ------------------------------------------------------------------


def error_from_anthropic(status: int, body: bytes | str | dict) -> tuple[str, str | None]:
    """Extract ``(message, error_type)`` from an Anthropic error body.

    Anthropic answers ``{"type": "error", "error": {"type": ..., "message": ...}}``;
    anything else (a proxy's HTML page, an empty body) yields its raw text,
    truncated to 500 characters, and no type.
    """
    parsed: Any = body
    if isinstance(body, (bytes, str)):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            error_type = error.get("type")
            return error["message"], error_type if isinstance(error_type, str) else None

    if isinstance(body, bytes):
        text = body.decode("utf-8", "replace")
    elif isinstance(body, str):
        text = body
    else:
        text = _dumps(body)
    text = text.strip()[:500]
    return (text or f"Anthropic returned HTTP {status} with an empty body"), None
