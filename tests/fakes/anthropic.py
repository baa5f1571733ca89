"""Anthropic dialect: POST /v1/messages (+ /v1/messages/count_tokens, GET /v1/models).

Checks what the real Messages API checks: the API key (x-api-key, or Authorization: Bearer as the
anthropic SDK 2.x sends it) and the anthropic-version header, required
model / max_tokens / messages, no unknown fields ("...: Extra inputs are not permitted"), roles
user/assistant only (system is top-level), known content block types, tool_use/tool_result
pairing.  Error JSON: {"type": "error", "error": {"type", "message"}, "request_id"}.
"""
from __future__ import annotations

import json
import re

from .common import (DEFAULT_TEXT, Endpoint, Response, ToolCall, count_tokens, dumps, example_arguments,
                     random_id, split_even, split_text, sse)

# anthropic-version must be present and look like a version date.  The real API only knows a few dates
# (2023-01-01, 2023-06-01, and 2026-10-21, which the installed anthropic SDK 2.x sends), so any
# well-formed date is accepted rather than guessing the list.
VERSION_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Top-level fields of POST /v1/messages (anything else: "<field>: Extra inputs are not permitted").
MESSAGE_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_k", "top_p", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "output_config", "output_format", "inference_geo", "speed", "cache_control",
    "diagnostics", "user_profile_id", "workspace_id",
})
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                                 "context_management", "output_config", "output_format", "cache_control"})

# Content block types and, for the common ones, their allowed keys (None = not checked).
BLOCK_FIELDS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "search_result": None,
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
    "tool_use": {"type", "id", "name", "input", "cache_control", "caller"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "server_tool_use": None,
    "web_search_tool_result": None,
    "web_fetch_tool_result": None,
    "code_execution_tool_result": None,
    "bash_code_execution_tool_result": None,
    "text_editor_code_execution_tool_result": None,
    "tool_search_tool_result": None,
    "container_upload": None,
    "mcp_tool_use": None,
    "mcp_tool_result": None,
}
BLOCK_REQUIRED = {
    "text": ("text",), "image": ("source",), "document": ("source",), "tool_use": ("id", "name", "input"),
    "tool_result": ("tool_use_id",), "thinking": ("thinking", "signature"), "redacted_thinking": ("data",),
}
CUSTOM_TOOL_FIELDS = {"type", "name", "description", "input_schema", "cache_control", "strict", "input_examples",
                      "defer_loading", "allowed_callers", "eager_input_streaming"}

ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization. "
                              "Please try again later."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
SYSTEM_ROLE = ('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
               'not "system" as an input message role.')

_MISSING = object()


class Invalid(Exception):
    """A 400 invalid_request_error."""


def _extra(path: str) -> Invalid:
    return Invalid(f"{path}: Extra inputs are not permitted")


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- validation ---------------------------------------------------------------------------------
def validate_block(block, p: str) -> None:
    if not isinstance(block, dict):
        raise Invalid(f"{p}: Input should be a valid dictionary or object to extract fields from")
    kind = block.get("type", _MISSING)
    if kind is _MISSING:
        raise Invalid(f"{p}: Unable to extract tag using discriminator 'type'")
    if not isinstance(kind, str) or kind not in BLOCK_FIELDS:
        expected = ", ".join(f"'{t}'" for t in BLOCK_FIELDS)
        raise Invalid(f"{p}: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                      f"{expected}")
    allowed = BLOCK_FIELDS[kind]
    if allowed is not None:
        for key in block:
            if key not in allowed:
                raise _extra(f"{p}.{kind}.{key}")
    for key in BLOCK_REQUIRED.get(kind, ()):
        if key not in block:
            raise Invalid(f"{p}.{kind}.{key}: Field required")
    for key in ("id", "tool_use_id", "name"):
        if key in block and not isinstance(block[key], str):
            raise Invalid(f"{p}.{kind}.{key}: Input should be a valid string")
    if kind == "text":
        if not isinstance(block["text"], str):
            raise Invalid(f"{p}.text.text: Input should be a valid string")
        if not block["text"]:
            raise Invalid("messages: text content blocks must be non-empty")
    if kind == "tool_use" and not isinstance(block["input"], dict):
        raise Invalid(f"{p}.tool_use.input: Input should be a valid dictionary")
    if kind == "tool_result" and isinstance(block.get("content"), list):
        for k, inner in enumerate(block["content"]):
            validate_block(inner, f"{p}.tool_result.content.{k}")


def validate_messages(messages) -> None:
    if messages is _MISSING:
        raise Invalid("messages: Field required")
    if not isinstance(messages, list):
        raise Invalid("messages: Input should be a valid list")
    if not messages:
        raise Invalid("messages: at least one message is required")
    for i, msg in enumerate(messages):
        p = f"messages.{i}"
        if not isinstance(msg, dict):
            raise Invalid(f"{p}: Input should be a valid dictionary or object to extract fields from")
        role = msg.get("role", _MISSING)
        if role == "system":
            raise Invalid(SYSTEM_ROLE)
        for key in msg:
            if key not in ("role", "content"):
                raise _extra(f"{p}.{key}")
        if role is _MISSING:
            raise Invalid(f"{p}.role: Field required")
        if role not in ("user", "assistant"):
            raise Invalid(f"{p}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content", _MISSING)
        if content is _MISSING:
            raise Invalid(f"{p}.content: Field required")
        final_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            if not content.strip() and not final_assistant:
                raise Invalid(f"{p}: all messages must have non-empty content except for the optional final "
                              "assistant message")
        elif isinstance(content, list):
            if not content and not final_assistant:
                raise Invalid(f"{p}: all messages must have non-empty content except for the optional final "
                              "assistant message")
            for j, block in enumerate(content):
                validate_block(block, f"{p}.content.{j}")
        else:
            raise Invalid(f"{p}.content: Input should be a valid list")
    validate_tool_pairing(messages)


def _blocks(msg: dict, kind: str) -> list:
    content = msg.get("content")
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind] if isinstance(content, list) else []


def validate_tool_pairing(messages: list) -> None:
    for i, msg in enumerate(messages):
        prev = messages[i - 1] if i > 0 else {}
        offered = {b.get("id") for b in _blocks(prev, "tool_use")} if prev.get("role") == "assistant" else set()
        content = msg.get("content") if isinstance(msg.get("content"), list) else []
        for j, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            if block.get("tool_use_id") not in offered:
                raise Invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                              f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                              "`tool_use` block in the previous message.")
        if msg.get("role") == "assistant" and i + 1 < len(messages):
            ids = [b.get("id") for b in _blocks(msg, "tool_use")]
            answered = {b.get("tool_use_id") for b in _blocks(messages[i + 1], "tool_result")}
            missing = [t for t in ids if t not in answered]
            if missing:
                raise Invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                              f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                              "`tool_result` block in the next message.")


def validate_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise Invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise Invalid(f"tools.{i}: Input should be a valid dictionary or object to extract fields from")
            if tool.get("type", "custom") != "custom":
                continue        # server tools (web_search_..., bash_..., ...) are not checked
            for key in tool:
                if key not in CUSTOM_TOOL_FIELDS:
                    raise _extra(f"tools.{i}.custom.{key}")
            for key in ("name", "input_schema"):
                if key not in tool:
                    raise Invalid(f"tools.{i}.custom.{key}: Field required")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice: Input tag found using 'type' does not match any of the expected tags: "
                          "'auto', 'any', 'tool', 'none'")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise Invalid("tool_choice.tool.name: Field required")
        if not tools:
            raise Invalid("tool_choice may only be specified while providing tools.")


def validate_body(body: dict, endpoint: Endpoint) -> None:
    allowed = MESSAGE_FIELDS if endpoint.kind == "messages" else COUNT_TOKENS_FIELDS
    for key in body:
        if key not in allowed:
            raise _extra(key)
    if "model" not in body:
        raise Invalid("model: Field required")
    if not isinstance(body["model"], str):
        raise Invalid("model: Input should be a valid string")
    if endpoint.kind == "messages":
        max_tokens = body.get("max_tokens", _MISSING)
        if max_tokens is _MISSING:
            raise Invalid("max_tokens: Field required")
        if not _int(max_tokens):
            raise Invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise Invalid("max_tokens: Input should be greater than or equal to 1")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise Invalid("stream: Input should be a valid boolean")
    validate_messages(body.get("messages", _MISSING))
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise Invalid("system: Input should be a valid string")
    if isinstance(system, list):
        for j, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise Invalid(f"system.{j}.type: Input should be 'text'")
            validate_block(block, f"system.{j}")
    validate_tools(body)


# -- replies ------------------------------------------------------------------------------------
def text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, dict) and isinstance(b.get("text"), str):
                parts.append(b["text"])
            elif isinstance(b, dict) and b.get("type") == "tool_result":
                parts.append(text_of(b.get("content")))
        return " ".join(parts)
    return ""


def input_tokens(body: dict) -> int:
    return count_tokens(text_of(body.get("system"))) + sum(
        count_tokens(text_of(m.get("content"))) for m in body.get("messages") or [])


def choose_tool_call(body: dict, options: dict) -> ToolCall | None:
    wanted = options.get("tool_call")
    if wanted is False:
        return None
    if isinstance(wanted, dict):
        args = wanted.get("arguments", {})
        return ToolCall(wanted["name"], args if isinstance(args, str) else dumps(args), random_id("toolu_01"))
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    choice = body.get("tool_choice") or {}
    if wanted is None:
        last = body["messages"][-1]
        if not tools or choice.get("type") == "none" or last.get("role") != "user" or _blocks(last, "tool_result"):
            return None
    tool = tools[0] if tools else {"name": "get_weather"}
    if choice.get("type") == "tool":
        tool = next((t for t in tools if t.get("name") == choice.get("name")), tool)
    return ToolCall(tool["name"], dumps(example_arguments(tool.get("input_schema"))), random_id("toolu_01"))


def usage(inp: int, out: int) -> dict:
    return {"input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": out, "service_tier": "standard"}


class AnthropicDialect:
    name = "anthropic"

    # -- routing -------------------------------------------------------------------------------
    def match(self, method: str, path: str, headers: dict) -> Endpoint | None:
        if method == "POST" and path == "/v1/messages":
            return Endpoint("messages")
        if method == "POST" and path == "/v1/messages/count_tokens":
            return Endpoint("count_tokens")
        if method == "GET" and path == "/v1/models" and ("x-api-key" in headers or "anthropic-version" in headers):
            return Endpoint("models")
        return None

    def api_key(self, headers: dict, endpoint) -> str | None:
        """x-api-key, or an API key sent as `Authorization: Bearer` (what the anthropic SDK 2.x does)."""
        if "x-api-key" in headers:
            return headers["x-api-key"]
        auth = headers.get("authorization") or ""
        return auth[7:].strip() if auth[:7].lower() == "bearer " else None

    def model(self, body, endpoint) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    # -- errors --------------------------------------------------------------------------------
    def error(self, status: int, message: str | None = None, error_type: str | None = None, request=None) -> Response:
        default_type, default_message = ERRORS.get(
            status, ("api_error", "Internal server error") if status >= 500 else ("invalid_request_error", "Error"))
        if status == 404 and message is None and request is not None and request.model:
            default_message = f"model: {request.model}"
        request_id = random_id("req_011C", 20)
        body = {"type": "error", "error": {"type": error_type or default_type, "message": message or default_message},
                "request_id": request_id}
        return Response(status, body, headers={"request-id": request_id})

    # -- checking ------------------------------------------------------------------------------
    def check(self, req, endpoint: Endpoint, upstream) -> Response | None:
        if req.api_key is None:
            return self.error(401, "x-api-key header is required")
        if req.api_key not in upstream.api_keys:
            return self.error(401, "invalid x-api-key")
        version = req.headers.get("anthropic-version")
        if version is None:
            return self.error(400, "anthropic-version: header is required")
        if not VERSION_SHAPE.match(version):
            return self.error(400, f'anthropic-version: "{version}" is not a valid version')
        if endpoint.kind == "models":
            return None
        if not isinstance(req.body, dict):
            return self.error(400, "There was an issue with the format or content of your request: "
                                   "the body must be a JSON object.")
        try:
            validate_body(req.body, endpoint)
        except Invalid as exc:
            return self.error(400, str(exc))
        return None

    # -- replies -------------------------------------------------------------------------------
    def build(self, req, endpoint: Endpoint, options: dict, upstream=None) -> Response:
        headers = {"request-id": random_id("req_011C", 20)}
        if endpoint.kind == "models":
            models = [m for m in (upstream.models if upstream is not None else ()) if m.startswith("claude")]
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                    for m in models]
            return Response(200, {"data": data, "has_more": False, "first_id": models[0] if models else None,
                                  "last_id": models[-1] if models else None}, headers=headers)
        body = req.body
        if endpoint.kind == "count_tokens":
            return Response(200, {"input_tokens": input_tokens(body)}, headers=headers)
        call = choose_tool_call(body, options)
        text = options.get("content")
        if call is None and text is None:
            text = DEFAULT_TEXT
        finish = options.get("finish_reason")
        stop_reason = STOP_REASONS.get(finish, finish) if finish else ("tool_use" if call else "end_turn")
        resp = (self._stream(body, text, call, stop_reason, options) if body.get("stream")
                else self._message(body, text, call, stop_reason))
        resp.headers.update(headers)
        return resp

    def _message(self, body: dict, text, call, stop_reason: str) -> Response:
        content, out = [], 0
        if text is not None:
            content.append({"type": "text", "text": text})
            out += count_tokens(text)
        if call is not None:
            content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _loads(call.arguments)})
            out += 1 + count_tokens(call.arguments)
        return Response(200, {
            "id": random_id("msg_01"), "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage(input_tokens(body), out),
        })

    def _stream(self, body: dict, text, call, stop_reason: str, options: dict) -> Response:
        chunks = options.get("chunks")
        message = {"id": random_id("msg_01"), "type": "message", "role": "assistant", "model": body["model"],
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage(input_tokens(body), 1)}
        events = [sse({"type": "message_start", "message": message}, "message_start")]
        index, out = 0, 0

        def block(start: dict, deltas: list):
            nonlocal index
            events.append(sse({"type": "content_block_start", "index": index, "content_block": start},
                              "content_block_start"))
            if index == 0:
                events.append(sse({"type": "ping"}, "ping"))
            for delta in deltas:
                events.append(sse({"type": "content_block_delta", "index": index, "delta": delta},
                                  "content_block_delta"))
            events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
            index += 1

        if text is not None:
            pieces = split_text(text, chunks)
            block({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces])
            out += count_tokens("".join(pieces))
        if call is not None:
            pieces = [""] + split_even(call.arguments, chunks or 4)
            block({"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
                  [{"type": "input_json_delta", "partial_json": p} for p in pieces])
            out += 1 + count_tokens(call.arguments)
        events.append(sse({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                           "usage": {"output_tokens": out}}, "message_delta"))
        events.append(sse({"type": "message_stop"}, "message_stop"))
        return Response(200, events=events, malformed=b"event: content_block_delta\ndata: {not json\n\n",
                        error_event=b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                                    b'"message":"Overloaded"}}\n\n')


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return {}


DIALECT = AnthropicDialect()
