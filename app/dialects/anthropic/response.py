"""Replies: Anthropic Message <-> canonical chat.completion, usage both ways, errors both ways.

Anthropic's ``input_tokens`` leaves out cached tokens while OpenAI's
``prompt_tokens`` counts them, so usage is converted here and nowhere else.
"""
from __future__ import annotations

import json
import time
from typing import Any

from app.dialects.gemini.common import id_with_signature, signature_of
from app.errors import GatewayError, name_for_status

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


def dumps(value: Any) -> str:
    """Compact JSON, the way OpenAI serialises tool call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_dumps = dumps

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
        # cache_creation_tokens is the gateway's canonical name for cache writes
        # (app.pricing bills them at the cache-write price).
        out["prompt_tokens_details"] = {"cached_tokens": cache_read or 0, "cache_creation_tokens": cache_write or 0}
    return out


chat_usage = _chat_usage


def anthropic_usage(usage: dict | None) -> dict:
    """Canonical usage as Anthropic's: every count an integer, cached tokens split out."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int(details.get("cached_tokens") or 0)
    cache_write = int(details.get("cache_creation_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(0, prompt - cache_read - cache_write),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


# -- canonical response -> Anthropic Message ----------------------------------

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def tool_input(arguments: Any) -> dict:
    """OpenAI's argument string as the object Anthropic carries; text that is not an object is kept whole."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        value = None
    return value if isinstance(value, dict) else {"arguments": arguments}


def tool_use_id(call: dict) -> Any:
    """A canonical tool call's id as a tool_use id. A tool_use block has no room for Gemini's
    thought signature, so it rides in the id (app.dialects.gemini ``id_with_signature``) and
    comes back, unchanged, with the client's next turn."""
    call_id = call.get("id")
    signature = signature_of(call)
    return id_with_signature(call_id, signature) if signature and isinstance(call_id, str) else call_id


def chat_response_to_message(resp: dict, model: str | None = None) -> dict:
    """Convert a canonical ``chat.completion`` into an Anthropic Message object."""
    choices = resp.get("choices") or [{}]
    choice = choices[0] or {}
    message = choice.get("message") or {}
    content: list[dict] = []
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if reasoning:
        # No signature: only the provider that wrote it could sign it.
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # a content-parts reply from some compatible servers
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": tool_use_id(call), "name": function.get("name"),
                        "input": tool_input(function.get("arguments"))})
    if not content and message.get("refusal"):
        content.append({"type": "text", "text": message["refusal"]})
    finish = choice.get("finish_reason")
    reason = "tool_use" if message.get("tool_calls") and finish in (None, "stop") else stop_reason(finish)
    return {
        "id": resp.get("id") or "msg_gateway",
        "type": "message",
        "role": "assistant",
        "model": model or resp.get("model"),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": anthropic_usage(resp.get("usage")),
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


# -- GatewayError -> Anthropic error ------------------------------------------

ERROR_TYPES = frozenset(_STREAM_ERRORS) | {"request_too_large"}
_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error"}


def error_type_for(status: int, error_type: str | None = None) -> str:
    """Anthropic's error type for a status; an Anthropic type from the upstream is kept when it fits the status.

    (OpenAI calls a bad key ``invalid_request_error`` with a 401; Anthropic's SDK user
    expects ``authentication_error`` there.)
    """
    if error_type in ERROR_TYPES:
        expected = _STREAM_ERRORS.get(error_type, (413,))[0]
        if expected == status or (error_type == "overloaded_error" and status in (503, 529)):
            return error_type
    return name_for_status(status, _TYPE_BY_STATUS, "api_error", "invalid_request_error")


def error_body(error: GatewayError) -> dict:
    """``{"type": "error", "error": {"type", "message"}}`` for any gateway error."""
    status = error.http_status
    message = error.message
    if error.param and error.param not in message:  # Anthropic's shape has no param: name the field in the text
        message = f"{error.param}: {message}"
    return {"type": "error", "error": {"type": error_type_for(status, error.error_type), "message": message}}
