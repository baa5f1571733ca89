"""One client request as the engine and its plugins see it, from the first hook to the last.

The engine fills it as the request travels (attempts, who served, usage, cost, the error),
and plugins read it in their after-hooks; a stream's after-hooks run when the stream ends,
so usage and output are complete even when the client disconnects.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.context import RequestContext
from app.errors import GatewayError
from app.schemas import Target


@dataclass
class Attempt:
    """One upstream call: a retry or a fallback is an attempt of its own."""

    provider: str
    model: str
    fallback_index: int
    retry: int
    key_name: str | None
    started: float  # perf_counter
    seconds: float = 0.0
    error: GatewayError | None = None  # None: the attempt answered (for a stream: its first chunk came)


@dataclass
class Call:
    request_type: str  # chat_completion, text_completion, embedding, ... (never with a _stream suffix)
    stream: bool
    body: dict | None  # the canonical request; before-hooks may change it (None: see native)
    target: Target
    fallbacks: list[Target]
    ctx: RequestContext
    surface: str = "openai"  # the dialect the client speaks: openai, anthropic, genai, ...
    # The client's request in its own dialect (app.native), when the surface has one. body is then
    # None until a translated attempt (or a plugin, see Engine._before) needs the canonical form.
    native: Any = None
    passthrough: bool = False  # the answering attempt got native.body as it is (reply/chunks are native)
    translate: bool = False  # a before-hook changed the canonical body: no attempt passes native.body through
    started_at: float = field(default_factory=time.time)  # wall clock, for logs
    attempts: list[Attempt] = field(default_factory=list)
    served: Any = None  # engine.Served once a target answered
    reply: dict | None = None  # the canonical JSON reply
    usage: dict | None = None  # canonical usage (prompt_tokens, completion_tokens, ..._details)
    cost: float | None = None  # USD, from app.pricing; None when the model has no known price
    error: GatewayError | None = None  # the error the client received, if any
    # Streams: chunks are kept only when a plugin asks (keep_chunks), to assemble the output.
    keep_chunks: bool = False
    chunks: list[dict] = field(default_factory=list)
    chunk_count: int = 0
    first_chunk_at: float | None = None  # perf_counter
    last_chunk_at: float = 0.0
    chunk_gaps: list[float] = field(default_factory=list)  # seconds between chunks, for inter-token latency
    finished_at: float | None = None  # perf_counter, when the reply was complete or the stream ended
    cancelled: bool = False  # the client went away before the stream ended
    state: dict[str, Any] = field(default_factory=dict)  # per-plugin scratch space, keyed by plugin name
    # Conversations the gateway continues (app/turns.py): the turns before the last, as (served, usage);
    # a plugin sets hold_tool_calls so a stream's tool-call deltas wait for its follow_up decision.
    earlier_turns: list[tuple[Any, dict]] = field(default_factory=list)
    hold_tool_calls: bool = False

    def canonical_body(self) -> dict:
        """The canonical request, translated from the native one the first time it is needed."""
        if self.body is None:
            self.body = self.native.dialect.to_canonical(self.native.body)
        return self.body

    @property
    def seconds(self) -> float:
        """Latency of the whole request so far, or up to its end."""
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return end - self.ctx.started

    @property
    def retries(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.served is not None
