"""Conversations the gateway continues on its own: a plugin's ``follow_up`` after each model turn.

After a chat turn the engine hands the assistant message to the plugins. A ``FollowUp``
with messages appends them and calls the model again (agent mode runs tools this way);
one with ``final`` ends with that message. For a stream, text deltas reach the client
at once, but when a plugin set ``call.hold_tool_calls`` the tool-call deltas, the finish
chunk and the usage chunk of each turn wait for that decision: intermediate turns stay
inside the gateway and the final one is streamed. Usage and cost cover every turn.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from app.call import Call
    from app.engine import Engine, Reply, Stream
    from app.pricing import Pricing


def continue_reply(engine: "Engine", call: "Call", reply: "Reply", next_turn: Callable[[], "Reply"]) -> "Reply":
    while True:
        choices = reply.body.get("choices") if isinstance(reply.body, dict) else None
        if not choices:
            break
        step = engine.plugins.follow_up(call, choices[0].get("message") or {})
        if step is None:
            break
        if step.final is not None:
            choices[0]["message"] = step.final
            choices[0]["finish_reason"] = step.finish_reason
            break
        call.earlier_turns.append((reply.served, reply.body.get("usage") or {}))
        call.body = {**call.body, "messages": [*call.body["messages"], *(step.messages or ())]}
        reply = next_turn()
    if call.earlier_turns:
        reply.body["usage"] = add_usage(*(u for _, u in call.earlier_turns), reply.body.get("usage") or {})
    return reply


def continue_stream(engine: "Engine", call: "Call", stream: "Stream", next_turn: Callable[[], "Stream"]) -> Iterator[dict]:
    """The chunks the client sees, across every turn; the first ``next()`` may run whole turns."""
    current = stream
    try:
        while True:
            held: list[dict] = []
            text: list[str] = []
            calls: dict[int, dict] = {}
            finish_reason = None
            usage = None
            for chunk in current:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                choices = chunk.get("choices") or []
                delta = choices[0].get("delta") or {} if choices else {}
                if choices and choices[0].get("finish_reason"):
                    finish_reason = choices[0]["finish_reason"]
                if delta.get("tool_calls"):
                    _gather_calls(calls, delta["tool_calls"])
                if isinstance(delta.get("content"), str):
                    text.append(delta["content"])
                if delta.get("tool_calls") or finish_reason or not choices or held:
                    held.append(chunk)
                    continue
                yield chunk
            message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            step = engine.plugins.follow_up(call, message)
            if step is not None and step.messages is not None and step.final is None:
                call.earlier_turns.append((current.served, usage or {}))
                call.body = {**call.body, "messages": [*call.body["messages"], *step.messages]}
                current.close()
                current = next_turn()
                continue
            total = add_usage(*(u for _, u in call.earlier_turns), usage or {}) if call.earlier_turns else None
            if step is not None and step.final is not None:
                held = _final_chunks(held, step.final, step.finish_reason)
            for chunk in held:
                if total is not None and chunk.get("usage"):
                    chunk = {**chunk, "usage": total}
                yield chunk
            return
    finally:
        current.close()


def _gather_calls(calls: dict[int, dict], deltas: list[dict]) -> None:
    for delta in deltas:
        index = delta.get("index", 0)
        item = calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        if delta.get("id"):
            item["id"] = delta["id"]
        function = delta.get("function") or {}
        if function.get("name"):
            item["function"]["name"] += function["name"]
        if function.get("arguments"):
            item["function"]["arguments"] += function["arguments"]


def _final_chunks(held: list[dict], final: dict, finish_reason: str) -> list[dict]:
    """A turn's held chunks replaced by one delta carrying ``final``, then its finish and usage chunks."""
    template = next((c for c in held if c.get("choices")), held[0] if held else {"object": "chat.completion.chunk"})
    delta: dict[str, Any] = {}
    if final.get("content"):
        delta["content"] = final["content"]
    if final.get("tool_calls"):
        delta["tool_calls"] = [{**tc, "index": i} for i, tc in enumerate(final["tool_calls"])]
    body = copy.copy(template)
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    body.pop("usage", None)
    finish = copy.copy(template)
    finish["choices"] = [{"index": 0, "delta": {}, "finish_reason": finish_reason}]
    usage_chunk = next((c for c in held if c.get("usage")), None)
    if usage_chunk is not None and usage_chunk.get("choices"):
        finish["usage"] = usage_chunk["usage"]
        return [body, finish]
    return [body, finish] + ([usage_chunk] if usage_chunk is not None else [])


def add_usage(*usages: dict) -> dict:
    """Sum OpenAI usage dicts, nested *_details included."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in (usage or {}).items():
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                total[key] = add_usage(total.get(key) or {}, value)
    return total


def cost(pricing: "Pricing", call: "Call") -> float | None:
    """Each turn priced with the model that served it."""
    earlier = add_usage(*(u for _, u in call.earlier_turns))
    last = _subtract(call.usage or {}, earlier)
    parts = [pricing.cost(s.provider, s.model, u) for s, u in call.earlier_turns if u]
    parts.append(pricing.cost(call.served.provider, call.served.model, last))
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def _subtract(a: dict, b: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in a.items():
        if isinstance(value, dict):
            out[key] = _subtract(value, b.get(key) or {})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value - (b.get(key) or 0)
        else:
            out[key] = value
    return out
