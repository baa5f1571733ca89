"""Ways a fake upstream answers (or fails to answer) one request.

A behaviour gets an `Exchange` (see server.py) and drives it with a few verbs:

    ex.respond(**options)   normal reply (JSON or stream), options tweak it (see REPLY_OPTIONS)
    ex.options              dict of options collected so far (Combine() merges several behaviours)
    ex.wait(seconds)        sleep, but wake up (and abandon the request) when the server stops
    ex.send_error(status, message=None, headers=None, error_type=None)
                            the dialect's own error JSON for that status
    ex.reset()              close the socket with a TCP RST, no response at all
    ex.close()              close the socket (FIN) without a response

To add a behaviour, subclass Behaviour as a frozen dataclass and override `prepare` (only tweaks
options or waits, so it can be combined) or `run` (decides the outcome).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Options understood by Exchange.respond / the dialects' reply builders.
REPLY_OPTIONS = (
    "content",          # str: reply text (also the text next to a tool call)
    "tool_call",        # None=auto (tools given and last turn is the user's), True=force, False=never,
                        # or {"name": ..., "arguments": dict|str}
    "finish_reason",    # OpenAI-style: stop / length / tool_calls / content_filter (mapped for Anthropic)
    "reasoning",        # OpenAI-compatible only: reasoning_content reported before the answer
    "chunks",           # number of content pieces in a stream
    "first_delay",      # seconds before the first stream event (headers are sent at once)
    "gap",              # seconds between stream events
    "cut_after",        # stream: close the connection after this many events
    "cut_reset",        # stream cut with RST instead of FIN
    "malformed_after",  # stream: after this many events send an event that is not JSON
    "malformed_resume",  # ... then carry on with the rest of the stream (else end the stream there)
    "error_after",      # stream: after this many events send the dialect's in-stream error event and end
    "malformed_event",  # bytes of that bad event, instead of the dialect's own
)


@dataclass(frozen=True)
class Behaviour:
    def prepare(self, ex) -> None:
        """Adjust ex.options or wait; must not send anything."""

    def run(self, ex) -> None:
        self.prepare(ex)
        ex.respond()


@dataclass(frozen=True)
class Status(Behaviour):
    """Answer with the provider's error JSON for `code` (e.g. 429, 500, 529)."""
    code: int
    message: str | None = None
    headers: dict | None = field(default=None, hash=False)   # e.g. {"retry-after": "1"}
    error_type: str | None = None                             # override the dialect's error type

    def run(self, ex) -> None:
        ex.send_error(self.code, self.message, headers=self.headers, error_type=self.error_type)


@dataclass(frozen=True)
class Delay(Behaviour):
    """Wait before answering normally (nothing is sent meanwhile, not even headers)."""
    seconds: float

    def prepare(self, ex) -> None:
        ex.wait(self.seconds)


@dataclass(frozen=True)
class Stall(Behaviour):
    """Accept the request, send nothing for `seconds`, then close the connection."""
    seconds: float

    def run(self, ex) -> None:
        ex.wait(self.seconds)
        ex.close()


@dataclass(frozen=True)
class Reset(Behaviour):
    """Close the socket with a TCP reset, without any response."""

    def run(self, ex) -> None:
        ex.reset()


@dataclass(frozen=True)
class CutStream(Behaviour):
    """Stream `after_chunks` events normally, then drop the connection: no terminating chunk,
    no [DONE] / message_stop (even if after_chunks >= the stream's length).  reset=True closes
    with RST instead of FIN.  On a non-streaming request: headers and half the JSON body."""
    after_chunks: int
    reset: bool = False

    def prepare(self, ex) -> None:
        ex.options.update(cut_after=self.after_chunks, cut_reset=self.reset)


@dataclass(frozen=True)
class MalformedChunk(Behaviour):
    """Stream `after_chunks` good events, then `data: {not json` (Anthropic: with
    `event: content_block_delta`), then the rest of the stream (resume=True) or the clean end of
    the response (resume=False).  On a non-streaming request the body is `{not json`.
    `event` replaces the bad event's bytes (e.g. an upstream that quotes its key in garbage)."""
    after_chunks: int
    resume: bool = True
    event: bytes | None = None

    def prepare(self, ex) -> None:
        ex.options.update(malformed_after=self.after_chunks, malformed_resume=self.resume)
        if self.event is not None:
            ex.options["malformed_event"] = self.event


@dataclass(frozen=True)
class ErrorEvent(Behaviour):
    """Stream `after_chunks` good events, then the provider's own in-stream error (Anthropic: `event: error`
    with overloaded_error; OpenAI: a `data:` event holding an "error" object), then end the response."""
    after_chunks: int

    def prepare(self, ex) -> None:
        ex.options.update(error_after=self.after_chunks)


@dataclass(frozen=True)
class Stream(Behaviour):
    """Length and timing of a normal stream: `chunks` content pieces, `first_delay` seconds before
    the first event, `gap` seconds between events."""
    chunks: int | None = None
    first_delay: float = 0.0
    gap: float = 0.0

    def prepare(self, ex) -> None:
        if self.chunks is not None:
            ex.options["chunks"] = self.chunks
        ex.options.update(first_delay=self.first_delay, gap=self.gap)


@dataclass(frozen=True)
class Reply(Behaviour):
    """Override the reply: text, tool call (see REPLY_OPTIONS) and finish reason."""
    content: str | None = None
    tool_call: object = field(default=None, hash=False)
    finish_reason: str | None = None
    reasoning: str | None = None

    def prepare(self, ex) -> None:
        if self.reasoning is not None:
            ex.options["reasoning"] = self.reasoning
        if self.content is not None:
            ex.options["content"] = self.content
        if self.tool_call is not None:
            ex.options["tool_call"] = self.tool_call
        if self.finish_reason is not None:
            ex.options["finish_reason"] = self.finish_reason


@dataclass(frozen=True, init=False)
class Combine(Behaviour):
    """Several behaviours for ONE request: all but the last only prepare, the last decides.
    E.g. Combine(Delay(2), Status(500)), Combine(Reply("hi"), CutStream(2))."""
    parts: tuple

    def __init__(self, *parts: Behaviour):
        if not parts:
            raise ValueError("Combine needs at least one behaviour")
        object.__setattr__(self, "parts", tuple(parts))

    def prepare(self, ex) -> None:
        for part in self.parts:
            part.prepare(ex)

    def run(self, ex) -> None:
        for part in self.parts[:-1]:
            part.prepare(ex)
        self.parts[-1].run(ex)


def as_behaviour(value) -> Behaviour:
    """plan() accepts a behaviour, or a tuple/list meaning Combine(*items)."""
    if isinstance(value, Behaviour):
        return value
    if isinstance(value, (tuple, list)):
        return Combine(*(as_behaviour(v) for v in value))
    raise TypeError(f"not a behaviour: {value!r}")


__all__ = [
    "Behaviour", "Status", "Delay", "Stall", "Reset", "CutStream", "MalformedChunk", "ErrorEvent", "Stream",
    "Reply", "Combine", "as_behaviour", "REPLY_OPTIONS",
]
