"""Requests a surface receives in its own dialect, for providers that speak it natively.

A surface such as /anthropic hands the engine the client's body as a
``NativeRequest``. For each target the engine decides, in ``Engine._passage`` and
nowhere else, whether that provider gets the body as it is (pass-through: only the
model replaced, unknown fields kept) or the canonical form translated from it. A
``NativeDialect`` says how to read what a pass-through attempt brings back in
canonical terms, so usage, cost and plugins work the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from app.dialects import anthropic, gemini


@dataclass(frozen=True)
class NativeDialect:
    name: str  # matches Provider.dialect of the providers that speak it
    to_canonical: Callable[[dict], dict]  # native request body -> canonical chat request
    reply_usage: Callable[[dict], "dict | None"]  # native JSON reply -> canonical usage
    reply_to_canonical: Callable[[dict], dict]  # native JSON reply -> canonical reply (for plugins)
    usage_meter: Callable[[], Callable[[dict], "dict | None"]]  # per stream: native event -> canonical usage


@dataclass
class NativeRequest:
    dialect: NativeDialect
    body: dict  # the client's body without the model and the gateway's own fields
    headers: dict[str, str] = field(default_factory=dict)  # client headers a native upstream honours


def _anthropic_reply_usage(reply: dict) -> dict | None:
    usage = reply.get("usage") if isinstance(reply, dict) else None
    return anthropic.chat_usage(usage) if usage else None


ANTHROPIC = NativeDialect(
    "anthropic",
    to_canonical=anthropic.messages_request_to_chat,
    reply_usage=_anthropic_reply_usage,
    reply_to_canonical=anthropic.anthropic_response_to_chat,
    usage_meter=anthropic.UsageMeter,
)
# count_tokens takes a Messages body without max_tokens; its reply is {"input_tokens": n} in both forms.
ANTHROPIC_COUNT_TOKENS = NativeDialect(
    "anthropic",
    to_canonical=anthropic.messages_request_to_chat,
    reply_usage=lambda reply: None,
    reply_to_canonical=lambda reply: {"input_tokens": reply.get("input_tokens") or 0},
    usage_meter=anthropic.UsageMeter,
)


# -- Gemini (the /genai surface): one descriptor per operation, since each has its own body --------


def _gemini_reply_usage(reply: dict) -> dict | None:
    meta = reply.get("usageMetadata") if isinstance(reply, dict) else None
    return gemini.usage_to_chat(meta) if meta else None


def _gemini_usage_meter() -> Callable[[dict], "dict | None"]:
    # usageMetadata in a Gemini stream is cumulative: the last event's counts are the totals.
    return _gemini_reply_usage


GEMINI = NativeDialect(
    "gemini",
    to_canonical=gemini.gemini_request_to_chat,
    reply_usage=_gemini_reply_usage,
    reply_to_canonical=lambda reply: gemini.gemini_response_to_chat(reply, reply.get("modelVersion") or ""),
    usage_meter=_gemini_usage_meter,
)
GEMINI_COUNT_TOKENS = NativeDialect(
    "gemini",
    to_canonical=gemini.count_request_to_chat,
    reply_usage=lambda reply: None,
    reply_to_canonical=lambda reply: {"input_tokens": reply.get("totalTokens") or 0},
    usage_meter=_gemini_usage_meter,
)
# embedContent and batchEmbedContents: a batch body is the one with "requests".
GEMINI_EMBEDDING = NativeDialect(
    "gemini",
    to_canonical=lambda body: gemini.gemini_embed_to_openai(body, isinstance(body, dict) and "requests" in body),
    reply_usage=_gemini_reply_usage,
    reply_to_canonical=lambda reply: gemini.gemini_embeddings_to_openai(reply, "", None),
    usage_meter=_gemini_usage_meter,
)
