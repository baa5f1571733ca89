"""Fake upstream LLM providers for the integration tests.

    from tests.fakes import FakeUpstream, Status, CutStream

    with FakeUpstream(api_keys={"sk-good"}) as fake:      # http://127.0.0.1:<port>, both dialects
        fake.plan(Status(429, headers={"retry-after": "1"}), CutStream(2), model="gpt-4o-mini")
        ...                                               # point the gateway at fake.url
        assert fake.requests[-1].body["messages"][0]["role"] == "system"

Routes: OpenAI /v1/chat/completions, /chat/completions (Perplexity), /v1/completions, /v1/embeddings,
/v1/models, Azure /openai/deployments/{deployment}/(chat/completions|completions|embeddings)?api-version=...;
Anthropic /v1/messages (+ /v1/messages/count_tokens, and /v1/models when anthropic headers are sent);
Gemini /v1beta/models/{model}:generateContent|streamGenerateContent|countTokens|embedContent|
batchEmbedContents and GET /v1beta/models(/{model}) (see gemini.py).
Requests are authenticated and validated BEFORE a planned behaviour is taken, so a rejected request
(401/400/404) never consumes a plan.
"""
from .behaviours import (Behaviour, Combine, CutStream, Delay, ErrorEvent, MalformedChunk, Reply, Reset, Stall,
                         Status, Stream)
from .server import FakeUpstream, Recorded

__all__ = [
    "FakeUpstream", "Recorded",
    "Behaviour", "Status", "Delay", "Stall", "Reset", "CutStream", "MalformedChunk", "ErrorEvent", "Stream", "Reply",
    "Combine",
]
