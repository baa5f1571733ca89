"""The fake Gemini upstream is as strict as the real API, and misbehaves on demand like the other fakes."""
from __future__ import annotations

import json

import pytest
import requests

from tests.fakes import CutStream, FakeUpstream, MalformedChunk, Reply, Status
from tests.fakes.common import DEFAULT_TEXT

KEY = {"x-goog-api-key": "gm-good"}
GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"
HELLO = {"contents": [{"role": "user", "parts": [{"text": "Hi there"}]}]}
TOOLS = [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]}]


@pytest.fixture(scope="module")
def server():
    with FakeUpstream(api_keys={"gm-good"}) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.clear()
    yield server
    server.clear()


def post(fake, path, body, headers=KEY):
    return requests.post(fake.url + path, json=body, headers=headers, timeout=10)


def error_of(reply) -> dict:
    return reply.json()["error"]


@pytest.mark.parametrize("headers, status, name, fragment", [
    ({}, 403, "PERMISSION_DENIED", "unregistered callers"),
    ({"x-goog-api-key": "wrong"}, 400, "INVALID_ARGUMENT", "API key not valid"),
    ({"x-goog-api-key": "gm-good", "Authorization": "Bearer gm-good"}, 401, "UNAUTHENTICATED", "OAuth 2"),
])
def test_key_checks(fake, headers, status, name, fragment):
    reply = post(fake, GENERATE, HELLO, headers)
    assert reply.status_code == status
    assert error_of(reply)["status"] == name and fragment in error_of(reply)["message"]


def test_key_in_the_query_is_accepted(fake):
    assert requests.post(fake.url + GENERATE + "?key=gm-good", json=HELLO, timeout=10).status_code == 200


@pytest.mark.parametrize("body, fragment", [
    ({"contents": []}, "contents is not specified"),
    ({**HELLO, "temperature": 1}, 'Unknown name "temperature"'),
    ({"contents": [{"role": "user", "parts": []}]}, "contents.parts must not be empty"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
    ({"contents": [{"parts": [{"text": "x", "inlineData": {"mimeType": "image/png", "data": "AA=="}}]}]}, "oneof"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "!!"}}]}]}, "Base64"),
    ({**HELLO, "tools": [{"functionDeclarations": [{"name": "1bad"}]}]}, "Invalid function name"),
    ({**HELLO, "generationConfig": {"maxTokens": 5}}, 'Unknown name "maxTokens"'),
    ({"contents": [HELLO["contents"][0], {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}},
                                              {"functionResponse": {"name": "f", "response": {}}}]}]},
     "number of function response parts"),
])
def test_bad_bodies_are_invalid_argument(fake, body, fragment):
    reply = post(fake, GENERATE, body)
    assert reply.status_code == 400, reply.text
    assert error_of(reply)["status"] == "INVALID_ARGUMENT" and fragment in error_of(reply)["message"]


def test_gemini_3_wants_the_signature_it_issued_back(fake):
    path = "/v1beta/models/gemini-3-pro-preview:generateContent"
    first = post(fake, path, {**HELLO, "tools": TOOLS}).json()
    part = first["candidates"][0]["content"]["parts"][-1]
    assert part["functionCall"] == {"name": "get_weather", "args": {"location": "Paris"}}
    turns = [HELLO["contents"][0], {"role": "model", "parts": [part]},
             {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"r": 1}}}]}]
    assert post(fake, path, {"contents": turns, "tools": TOOLS}).status_code == 200
    lost = {**part}
    lost.pop("thoughtSignature")
    reply = post(fake, path, {"contents": [turns[0], {"role": "model", "parts": [lost]}, turns[2]], "tools": TOOLS})
    assert reply.status_code == 400 and "missing a thought_signature" in error_of(reply)["message"]
    forged = {**part, "thoughtSignature": "AAAA"}
    reply = post(fake, path, {"contents": [turns[0], {"role": "model", "parts": [forged]}, turns[2]], "tools": TOOLS})
    assert reply.status_code == 400 and error_of(reply)["message"] == "Corrupted thought signature."


def test_stream_needs_alt_sse_and_ends_without_a_terminator(fake):
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert post(fake, path, HELLO).status_code == 400
    reply = post(fake, path + "?alt=sse", HELLO)
    blocks = [b for b in reply.text.split("\r\n\r\n") if b]
    events = [json.loads(b[6:]) for b in blocks]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == DEFAULT_TEXT
    assert events[-1]["candidates"][0]["finishReason"] == "STOP" and events[-1]["usageMetadata"]["totalTokenCount"]
    assert all("finishReason" not in e["candidates"][0] for e in events[:-1])


def test_misbehaviours(fake):
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    fake.plan(Status(429), model="gemini-2.5-flash")
    reply = post(fake, path, HELLO)
    assert reply.status_code == 429 and error_of(reply)["status"] == "RESOURCE_EXHAUSTED"
    fake.plan(MalformedChunk(1), model="gemini-2.5-flash")
    assert "data: {not json" in post(fake, path, HELLO).text
    fake.plan(CutStream(2), model="gemini-2.5-flash")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        post(fake, path, HELLO)
    fake.plan(Reply(content="Bonjour", finish_reason="length"))
    reply = post(fake, GENERATE, HELLO).json()
    assert reply["candidates"][0]["content"]["parts"] == [{"text": "Bonjour"}]
    assert reply["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_embeddings_count_tokens_and_models(fake):
    one = post(fake, "/v1beta/models/gemini-embedding-001:embedContent",
               {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}).json()
    assert len(one["embedding"]["values"]) == 4
    bad = post(fake, "/v1beta/models/gemini-embedding-001:batchEmbedContents",
               {"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]})
    assert bad.status_code == 400 and "must match" in error_of(bad)["message"]
    count = post(fake, "/v1beta/models/gemini-2.5-flash:countTokens", HELLO).json()
    assert count["totalTokens"] == 2
    both = post(fake, "/v1beta/models/gemini-2.5-flash:countTokens",
                {**HELLO, "generateContentRequest": {"model": "models/gemini-2.5-flash", **HELLO}})
    assert both.status_code == 400
    models = requests.get(fake.url + "/v1beta/models", headers=KEY, timeout=10).json()["models"]
    assert "models/gemini-2.5-flash" in [m["name"] for m in models]
    missing = requests.get(fake.url + "/v1beta/models/gemini-0", headers=KEY, timeout=10)
    assert missing.status_code == 404 and error_of(missing)["status"] == "NOT_FOUND"
