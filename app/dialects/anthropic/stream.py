"""Streams: Anthropic's server-sent events <-> canonical ``chat.completion.chunk`` dicts.

``AnthropicStreamToChat`` serves the Anthropic provider adapter; ``ChatStreamToAnthropic``
serves the /anthropic surface when the upstream speaks another dialect; ``UsageMeter``
reads canonical usage off a passed-through Anthropic stream.
"""
from __future__ import annotations

import time
from typing import Any

from app.dialects.anthropic.response import _STREAM_ERRORS, _finish_reason, anthropic_usage, stop_reason
from app.dialects.anthropic.response import chat_usage as _chat_usage
from app.dialects.anthropic.response import dumps as _dumps
from app.dialects.anthropic.response import tool_use_id
from app.errors import GatewayError



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
        raise stream_error(data)

    _handlers = {
        "message_start": _on_message_start,
        "content_block_start": _on_content_block_start,
        "content_block_delta": _on_content_block_delta,
        "message_delta": _on_message_delta,
        "message_stop": _on_message_stop,
        "error": _on_error,
    }



def stream_error(data: dict) -> GatewayError:
    """An Anthropic ``error`` event as the error the engine retries or reports."""
    error = data.get("error") or {}
    error_type = error.get("type")
    message = error.get("message") or "Anthropic stream error"
    status, retryable, rotate_key = _STREAM_ERRORS.get(error_type, (400, False, False))
    return GatewayError(message, status, error_type=error_type, retryable=retryable, rotate_key=rotate_key)


class UsageMeter:
    """Canonical usage, as far as known, from the events of a passed-through Anthropic stream."""

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}

    def __call__(self, event: dict) -> dict | None:
        kind = event.get("type")
        if kind == "message_start":
            self._usage = dict((event.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        else:
            return None
        return _chat_usage(self._usage)


# -- canonical chunks -> Anthropic events -------------------------------------

Event = tuple[str, dict]  # (SSE event name, data)
_TEXT_START = {"type": "text", "text": ""}
_THINKING_START = {"type": "thinking", "thinking": "", "signature": ""}


class ChatStreamToAnthropic:
    """Turn canonical chunks into Anthropic's events, for the /anthropic surface.

    ``feed`` each chunk in order, then ``finish`` once the upstream stream has ended:
    only then are the stop reason and the usage known (OpenAI-shaped upstreams send
    usage after the finishing chunk), so ``message_delta`` carries the input counts
    too. ``message_start`` always has integer counts, 0 when not yet known.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._started = False
        self._kind: str | None = None  # type of the open content block
        self._index = -1
        self._tools: dict[int, int] = {}  # canonical tool_calls index -> content block index
        self._finish: str | None = None
        self._usage: dict | None = None

    def feed(self, chunk: dict) -> list[Event]:
        events: list[Event] = []
        if not self._started:
            events.extend(self._start(chunk))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Anthropic has one answer per message
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if reasoning:
                events.extend(self._text("thinking", reasoning))
            if delta.get("content"):
                events.extend(self._text("text", delta["content"]))
            for call in delta.get("tool_calls") or ():
                events.extend(self._tool(call))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        events: list[Event] = []
        if not self._started:
            events.extend(self._start({}))
        events.extend(self._close())
        reason = stop_reason(self._finish)
        if self._tools and reason == "end_turn":
            reason = "tool_use"  # some servers finish a tool call with "stop"
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": reason, "stop_sequence": None},
                                         "usage": anthropic_usage(self._usage)}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _start(self, chunk: dict) -> list[Event]:
        self._started = True
        usage = anthropic_usage(chunk.get("usage"))
        usage["output_tokens"] = 0
        message = {"id": chunk.get("id") or "msg_gateway", "type": "message", "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _open(self, kind: str, block: dict) -> list[Event]:
        events = self._close()
        self._index += 1
        self._kind = kind
        events.append(("content_block_start", {"type": "content_block_start", "index": self._index,
                                               "content_block": block}))
        return events

    def _close(self) -> list[Event]:
        if self._kind is None:
            return []
        self._kind = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _text(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self._kind != kind:
            block = _THINKING_START if kind == "thinking" else _TEXT_START
            events.extend(self._open(kind, dict(block)))
        if kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": text}
        else:
            delta = {"type": "text_delta", "text": text}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}))
        return events

    def _tool(self, call: dict) -> list[Event]:
        events: list[Event] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self._tools:
            block = {"type": "tool_use", "id": tool_use_id(call), "name": function.get("name"), "input": {}}
            events.extend(self._open("tool_use", block))
            self._tools[position] = self._index
        arguments = function.get("arguments")
        if arguments:
            # Deltas of an earlier call after a later one started cannot be placed; they are rare.
            index = self._tools[position]
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta", "partial_json": arguments}}))
        return events
