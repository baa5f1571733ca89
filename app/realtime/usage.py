"""Usage of one realtime call, counted from the provider's ``response.done`` events, and its accounting.

A realtime call is one ``app.call.Call`` (request type ``realtime``) through the plugins, as an
inference request is: ``open_call`` runs the before-hooks when the call starts (governance admits
it against the virtual key; logs and metrics see it in flight) and ``report_call`` the after-hooks
when it ends (one log row, metrics, the key's budget and token counters), with canonical usage
and its cost from app/pricing.py.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from app.errors import GatewayError

if TYPE_CHECKING:
    from app.call import Call
    from app.context import RequestContext

log = logging.getLogger("bifrost.realtime")


@dataclass
class CallUsage:
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_audio_tokens: int = 0
    input_text_tokens: int = 0
    input_cached_tokens: int = 0
    output_audio_tokens: int = 0
    output_text_tokens: int = 0
    unparsed: int = field(default=0, repr=False)

    def add_event_text(self, text: str | bytes) -> None:
        """Count one event if it is ``response.done``; anything else is ignored."""
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.unparsed += 1
            return
        if isinstance(event, dict):
            self.add_event(event)

    def add_event(self, event: dict) -> None:
        if event.get("type") != "response.done":
            return
        self.turns += 1
        usage = (event.get("response") or {}).get("usage") or {}
        self.input_tokens += _int(usage.get("input_tokens"))
        self.output_tokens += _int(usage.get("output_tokens"))
        self.total_tokens += _int(usage.get("total_tokens"))
        details_in = usage.get("input_token_details") or {}
        details_out = usage.get("output_token_details") or {}
        self.input_audio_tokens += _int(details_in.get("audio_tokens"))
        self.input_text_tokens += _int(details_in.get("text_tokens"))
        self.input_cached_tokens += _int(details_in.get("cached_tokens"))
        self.output_audio_tokens += _int(details_out.get("audio_tokens"))
        self.output_text_tokens += _int(details_out.get("text_tokens"))

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "unparsed"}


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


REALTIME = "realtime"
SUMMARY_METADATA = ("transport", "call_id", "upstream_call_id", "duration_s", "reason", "turns", "input_audio_tokens",
                    "input_text_tokens", "output_audio_tokens", "output_text_tokens", "to_upstream", "to_client")


@dataclass
class Accounting:
    """One realtime call as the plugins see it, from its start to its summary."""

    engine: Any  # app.engine.Engine
    call: "Call"
    done: bool = False

    def finish(self, summary: dict | None = None, error: GatewayError | None = None) -> None:
        """The after-hooks, once: the call's usage and cost, or the error that ended it before it began."""
        if self.done:
            return
        self.done = True
        call = self.call
        call.finished_at = time.perf_counter()
        call.error = error
        if summary is not None:
            from app.engine import Served

            provider, model = summary.get("provider") or call.target.provider, summary.get("model") or call.target.model
            call.served = Served(provider, model, 0, summary.get("key"), 0)
            call.usage = canonical_usage(summary)
            call.cost = self.engine.pricing.cost(provider, model, call.usage)
            call.state["logs.metadata"] = {name: summary[name] for name in SUMMARY_METADATA if name in summary}
        self.engine.plugins.after(call)


def open_call(engine: Any, ctx: "RequestContext", provider: str, model: str, virtual_key: str | None) -> Accounting:
    """Run the before-hooks for a call about to start; their refusal (a GatewayError) is recorded, then raised."""
    from app.call import Call
    from app.schemas import Target

    ctx.virtual_key = virtual_key  # a client secret's key, or one sent in the WebSocket subprotocol
    accounting = Accounting(engine, Call(REALTIME, True, {}, Target(provider, model), [], ctx, surface=REALTIME))
    try:
        engine.plugins.before(accounting.call)
    except GatewayError as error:
        accounting.finish(error=error)
        raise
    return accounting


def canonical_usage(summary: dict) -> dict:
    """The summary's Realtime token counts as OpenAI's chat usage (what pricing, budgets and logs read)."""
    prompt, completion = _int(summary.get("input_tokens")), _int(summary.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _int(summary.get("total_tokens")) or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _int(summary.get("input_cached_tokens")),
                                  "audio_tokens": _int(summary.get("input_audio_tokens"))},
        "completion_tokens_details": {"audio_tokens": _int(summary.get("output_audio_tokens"))},
    }


def report_call(summary: dict, accounting: Accounting | None = None) -> None:
    """One finished call (WebRTC or WebSocket): duration, turns, tokens, end reason; keep the keys stable."""
    log.info("realtime call summary %s", orjson.dumps(summary).decode())
    if accounting is not None:
        try:
            accounting.finish(summary)
        except Exception:  # noqa: BLE001 - reporting never breaks the call's teardown
            log.exception("realtime: accounting call %s failed", summary.get("call_id"))
