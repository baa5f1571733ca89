"""Usage of one realtime call, counted from the provider's ``response.done`` events.

``report_call`` is the one place a finished call is reported; today it logs one line,
and it is where the log store, metrics and budgets plug in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson

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


def report_call(summary: dict) -> None:
    """One finished call (WebRTC or WebSocket): duration, turns, tokens, end reason.

    The lead wires this to the logging and metrics plugins; keep the summary's keys stable.
    """
    log.info("realtime call summary %s", orjson.dumps(summary).decode())
