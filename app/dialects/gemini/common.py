"""What both directions of the Gemini dialect share: errors, usage, finish reasons, helpers.

Google's REST errors are ``{"error": {"code", "message", "status"}}`` where ``status``
is a google.rpc.Code name; usage is ``usageMetadata`` with camelCase token counts.
"""
from __future__ import annotations

import json
import secrets
import string
from typing import Any

from app.errors import GatewayError, bad_request, name_for_status

# HTTP status -> google.rpc.Code name, as Google's APIs pair them.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_STATUS_CODES = frozenset(STATUS_NAMES.values()) | {"OUT_OF_RANGE", "ALREADY_EXISTS", "DATA_LOSS", "UNKNOWN"}

# Gemini finishReason -> OpenAI finish_reason. A candidate that called a function
# finishes with STOP; the converters turn that into tool_calls.
FINISH_TO_CHAT = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "TOO_MANY_TOOL_CALLS": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}
FINISH_FROM_CHAT = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "content_filter": "SAFETY",
}

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def dumps(value: Any) -> str:
    """Compact JSON, the way OpenAI serialises tool call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def field(obj: dict, camel: str, snake: str | None = None) -> Any:
    """Google's JSON parser accepts lowerCamelCase and the proto's snake_case names."""
    value = obj.get(camel)
    if value is None and snake:
        value = obj.get(snake)
    return value


# -- errors --------------------------------------------------------------------------------


def status_name(http_status: int, hint: str | None = None) -> str:
    """The google.rpc.Code name for an HTTP status (an upstream's own name wins)."""
    if hint in _STATUS_CODES:
        return hint
    return name_for_status(http_status, STATUS_NAMES, "INTERNAL", "INVALID_ARGUMENT")


def error_body(http_status: int, message: str, status: str | None = None) -> dict:
    """Google's error JSON for a status and message."""
    return {"error": {"code": http_status, "message": message, "status": status_name(http_status, status)}}


def invalid(message: str, param: str) -> GatewayError:
    """A 400 whose text names the field: Google's error shape has no ``param``."""
    return bad_request(f"{param}: {message}", param=param)


def error_from_gemini(body: Any) -> tuple[str, str | None]:
    """(message, status name) from a Google error body; other bodies yield their JSON text."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        status = error.get("status")
        return str(error.get("message") or "upstream error"), status if isinstance(status, str) else None
    if isinstance(body, list) and body and isinstance(body[0], dict):  # some Google front ends wrap it
        return error_from_gemini(body[0])
    return dumps(body)[:500], None


# -- usage ---------------------------------------------------------------------------------


def usage_to_chat(meta: dict | None) -> dict:
    """usageMetadata as OpenAI usage. Thinking tokens count as completion tokens there."""
    meta = meta or {}
    prompt = meta.get("promptTokenCount") or 0
    candidates = meta.get("candidatesTokenCount") or 0
    thoughts = meta.get("thoughtsTokenCount") or 0
    completion = candidates + thoughts
    total = meta.get("totalTokenCount") or prompt + completion + (meta.get("toolUsePromptTokenCount") or 0)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    cached = meta.get("cachedContentTokenCount")
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if "thoughtsTokenCount" in meta:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def usage_from_chat(usage: dict | None) -> dict:
    """OpenAI usage as usageMetadata: the inverse of ``usage_to_chat``."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(0, completion - reasoning),
        "totalTokenCount": usage.get("total_tokens") or prompt + completion,
    }
    if reasoning:
        meta["thoughtsTokenCount"] = reasoning
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


# -- thought signatures ---------------------------------------------------------------------
# Carried in the canonical form the way Google's own OpenAI-compatible endpoint does:
# ``extra_content: {"google": {"thought_signature": "..."}}`` on a tool call (or on an
# assistant message, for the signature of a text part). The string is never re-encoded.


def signature_of(obj: dict) -> str | None:
    extra = obj.get("extra_content")
    if isinstance(extra, dict):
        google = extra.get("google")
        if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
            return google["thought_signature"]
    return None


def with_signature(obj: dict, signature: str | None) -> dict:
    if signature:
        obj["extra_content"] = {"google": {"thought_signature": signature}}
    return obj


# A surface whose tool calls cannot carry extra fields (Anthropic's tool_use blocks) can
# carry the signature in the call id instead: ``id_with_signature`` builds such an id
# (letters, digits, "_" and "-" only), and ``chat_request_to_gemini`` reads it back.
_ID_MARK = "__thought_"


def id_with_signature(call_id: str, signature: str) -> str:
    return call_id + _ID_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def split_id_signature(call_id: str) -> tuple[str, str | None]:
    head, mark, tail = call_id.partition(_ID_MARK)
    if not mark or not tail:
        return call_id, None
    signature = tail.replace("-", "+").replace("_", "/")
    return head, signature + "=" * (-len(signature) % 4)
