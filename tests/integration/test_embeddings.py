"""POST /v1/embeddings with the unmodified openai SDK over OpenAI-compatible, Azure and Gemini upstreams.

The SDK asks for base64 unless told otherwise and decodes it itself, so both encodings are exercised.
"""
from __future__ import annotations

import base64
import struct

import pytest
import requests
from openai import OpenAI

from tests.fakes.behaviours import Status
from tests.fakes.gemini import embedding_values as gemini_values
from tests.fakes.openai import embedding_values as openai_values

TEXTS = ["What is the meaning of life?", "How do I bake a cake?"]
UPSTREAMS = {
    # name: (model for the gateway, upstream path, expected vector for a text and a dimension)
    "openai": ("openai/text-embedding-3-small", "/v1/embeddings", openai_values),
    "azure": ("azure/text-embedding-3-small", "/openai/deployments/text-embedding-3-small-eu/embeddings", openai_values),
    "gemini": ("gemini/gemini-embedding-001", "/v1beta/models/gemini-embedding-001:batchEmbedContents",
               gemini_values),
}


@pytest.fixture
def client(gateway):
    with OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0, timeout=30) as sdk:
        yield sdk


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


@pytest.mark.parametrize("encoding", ["float", "base64", None], ids=["float", "base64", "sdk-default"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_embeddings_through_the_openai_sdk(client, fake, upstream, encoding):
    model, path, values = UPSTREAMS[upstream]
    kwargs = {"encoding_format": encoding} if encoding else {}
    reply = client.embeddings.create(model=model, input=TEXTS, dimensions=16, **kwargs)
    assert [d.index for d in reply.data] == [0, 1]
    for item, text in zip(reply.data, TEXTS):
        vector = item.embedding
        if encoding == "base64":  # asked for by name, the SDK hands the string over as it came
            raw = base64.b64decode(vector)
            vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        assert close(vector, values(text, 16)), upstream
    assert reply.usage.prompt_tokens >= 0 and reply.usage.total_tokens == reply.usage.prompt_tokens
    (request,) = fake.requests
    assert request.path == path
    if upstream == "gemini":
        assert request.headers["x-goog-api-key"] == "gm-key-1"
        assert [r["outputDimensionality"] for r in request.body["requests"]] == [16, 16]
        assert [r["content"]["parts"][0]["text"] for r in request.body["requests"]] == TEXTS
    else:
        assert request.body["input"] == TEXTS and request.body["dimensions"] == 16
        assert request.body.get("encoding_format") == (encoding or "base64")
        assert reply.usage.prompt_tokens == 12


def test_a_single_string_and_base64_bytes_by_hand(gateway, fake):
    reply = requests.post(gateway.url + "/v1/embeddings", timeout=10, json={
        "model": "gemini/gemini-embedding-001", "input": "hello", "encoding_format": "base64"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "gemini-embedding-001"
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(raw) == 768 * 4  # Gemini's default size, as little-endian float32s
    assert close(list(struct.unpack("<768f", raw)), gemini_values("hello", 768))
    assert body["extra_fields"]["provider"] == "gemini" and body["extra_fields"]["request_type"] == "embedding"
    assert reply.headers["x-bifrost-request-type"] == "embedding"


@pytest.mark.parametrize("body, param", [
    ({"model": "openai/text-embedding-3-small"}, "input"),
    ({"model": "openai/text-embedding-3-small", "input": ""}, "input"),
    ({"model": "openai/text-embedding-3-small", "input": [1, "a"]}, "input"),
    ({"model": "openai/text-embedding-3-small", "input": "a", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "openai/text-embedding-3-small", "input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a"}, "model"),
    ({"model": "gemini/gemini-embedding-001", "input": [[1, 2, 3]]}, "input"),   # Gemini embeds text only
])
def test_bad_embedding_requests_name_the_field(gateway, fake, body, param):
    reply = requests.post(gateway.url + "/v1/embeddings", json=body, timeout=10)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    assert fake.requests == []


def test_token_arrays_reach_openai_compatible_upstreams(gateway, fake):
    reply = requests.post(gateway.url + "/v1/embeddings", timeout=10, json={
        "model": "openai/text-embedding-3-small", "input": [[1, 2, 3], [4, 5]], "encoding_format": "float"})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["data"]) == 2 and reply.json()["usage"]["prompt_tokens"] == 5


def test_embedding_falls_back_to_another_provider(gateway, fake):
    fake.plan(*[Status(503)] * 3, model="text-embedding-3-small")
    reply = requests.post(gateway.url + "/v1/embeddings", timeout=10, json={
        "model": "openai/text-embedding-3-small", "input": "hi", "encoding_format": "float",
        "fallbacks": ["gemini/gemini-embedding-001"]})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-bifrost-provider"] == "gemini" and reply.headers["x-bifrost-fallback-index"] == "1"
    assert len(reply.json()["data"][0]["embedding"]) == 768


def test_a_provider_without_embeddings_says_so(gateway, fake):
    reply = requests.post(gateway.url + "/v1/embeddings", timeout=10,
                          json={"model": "anthropic/claude-haiku-4-5", "input": "hi"})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "unsupported_operation"
