"""The core failure matrix repeated on /genai streams (:streamGenerateContent?alt=sse).

Before the first byte a failure is retried, falls back (x-bf-fallbacks), or becomes Google's JSON
error with the right status; after it the stream ends with an {"error": ...} event, never a clean
end, and a complete stream carries usage in its final event. Upstreams: Gemini (passed through),
OpenAI-compatible and Anthropic (translated). conftest.py: openai / anthropic / groq / gemini retry
twice; `refused` points at a closed port; `slow` has a 1 s timeout and no retries.
"""
from __future__ import annotations

import json

import pytest
import requests
from google import genai
from google.genai import errors

from tests.fakes.behaviours import Behaviour, CutStream, Delay, MalformedChunk, Reset, Stall, Status
from tests.fakes.common import DEFAULT_TEXT, Response

FALLBACK = "gemini/gemini-2.5-flash"


def stream(gateway, model: str, fallbacks: list[str] | None = None, timeout: float = 30):
    headers = {"x-bf-fallbacks": ",".join(fallbacks)} if fallbacks else {}
    return requests.post(f"{gateway.url}/genai/v1beta/models/{model}:streamGenerateContent?alt=sse",
                         json={"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]},
                         headers=headers, timeout=timeout)


def events(reply) -> list[dict]:
    assert reply.headers["content-type"].startswith("text/event-stream"), reply.headers
    blocks = reply.text.replace("\r\n", "\n").split("\n\n")
    return [json.loads(b[6:]) for b in blocks if b.startswith("data: ")]


def text_of(items: list[dict]) -> str:
    return "".join(p.get("text", "") for e in items for c in e.get("candidates") or []
                   for p in (c.get("content") or {}).get("parts") or [])


def assert_complete(reply, provider: str, fallback_index: int | None = None) -> None:
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-bifrost-provider"] == provider
    assert reply.headers.get("x-bifrost-fallback-index") == (str(fallback_index) if fallback_index else None)
    items = events(reply)
    assert not [e for e in items if "error" in e], items
    assert text_of(items) == DEFAULT_TEXT
    last = items[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["candidatesTokenCount"] == 5 and last["usageMetadata"]["promptTokenCount"] == 1


RETRY_CASES = {
    # name: (provider/model, failure planned once)
    "gemini_500": ("gemini/gemini-2.5-flash", Status(500)),
    "gemini_503": ("gemini/gemini-2.5-flash", Status(503)),
    "gemini_reset": ("gemini/gemini-2.5-flash", Reset()),
    "gemini_cut_before_first": ("gemini/gemini-2.5-flash", CutStream(0)),
    "gemini_malformed_first": ("gemini/gemini-2.5-flash", MalformedChunk(0)),
    "openai_500": ("openai/gpt-4o-mini", Status(500)),
    "groq_429": ("groq/m-genai-429", Status(429)),
    "anthropic_500": ("anthropic/claude-haiku-4-5", Status(500)),
    "anthropic_malformed_first": ("anthropic/claude-haiku-4-5", MalformedChunk(0)),
}


@pytest.mark.parametrize("case", list(RETRY_CASES))
def test_failure_before_the_first_byte_is_retried(gateway, fake, case):
    target, failure = RETRY_CASES[case]
    provider, model = target.split("/", 1)
    fake.plan(failure, model=model)
    assert_complete(stream(gateway, target), provider)
    assert [r.model for r in fake.requests] == [model, model]
    if case == "groq_429":
        assert [r.api_key for r in fake.requests] == ["sk-rl-a", "sk-rl-b"]  # the rate-limited key set aside


FALLBACK_CASES = {
    # name: (primary, failures for the primary, attempts on the primary)
    "gemini_500": ("gemini/gemini-3-pro-preview", [Status(500)] * 3, 3),
    "gemini_429": ("gemini/gemini-3-pro-preview", [Status(429)] * 3, 3),
    "openai_503": ("openai/m-genai-fb", [Status(503)] * 3, 3),
    "refused": ("refused/m-genai-fb", [], 0),
    "timeout": ("slow/m-genai-fb", [Delay(1.6)], 1),
    "stall": ("slow/m-genai-fb", [Stall(8)], 1),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_failing_primary_falls_back_through_the_header(gateway, fake, case):
    primary, failures, attempts = FALLBACK_CASES[case]
    model = primary.split("/", 1)[1]
    fake.plan(*failures, model=model)
    assert_complete(stream(gateway, primary, [FALLBACK], timeout=5), "gemini", fallback_index=1)
    assert [r.model for r in fake.requests] == [model] * attempts + ["gemini-2.5-flash"]
    assert fake.pending == 0


@pytest.mark.parametrize("primary, status", [("gemini/gemini-2.5-flash", 503), ("openai/m-genai-all", 503),
                                             ("gemini/gemini-2.5-flash", 429)])
def test_every_target_failing_is_googles_json_error_with_the_primary_status(gateway, fake, primary, status):
    model = primary.split("/", 1)[1]
    fake.plan(*[Status(status, "primary is down")] * 3, model=model)
    fake.plan(Status(404, "no such fallback"), model="claude-gone")
    reply = stream(gateway, primary, ["anthropic/claude-gone"])
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["code"] == status and error["message"] == "primary is down"
    assert error["status"] == {503: "UNAVAILABLE", 429: "RESOURCE_EXHAUSTED"}[status]


CUT_CASES = {
    # name: (provider/model, failure, events that arrive before the break)
    "gemini_cut": ("gemini/gemini-2.5-flash", CutStream(2)),
    "gemini_cut_rst": ("gemini/gemini-2.5-flash", CutStream(2, reset=True)),
    "gemini_malformed": ("gemini/gemini-2.5-flash", MalformedChunk(2)),
    "gemini_malformed_end": ("gemini/gemini-2.5-flash", MalformedChunk(2, resume=False)),
    "openai_cut": ("openai/gpt-4o-mini", CutStream(3)),
    "openai_malformed": ("openai/gpt-4o-mini", MalformedChunk(3)),
    "anthropic_cut": ("anthropic/claude-haiku-4-5", CutStream(4)),
}


@pytest.mark.parametrize("case", list(CUT_CASES))
def test_stream_broken_after_the_first_byte_ends_with_an_error_event(gateway, fake, case):
    target, failure = CUT_CASES[case]
    provider, model = target.split("/", 1)
    fake.plan(failure, model=model)
    reply = stream(gateway, target, [FALLBACK])
    assert reply.status_code == 200
    assert reply.headers["x-bifrost-provider"] == provider
    *items, last = events(reply)
    text = text_of(items)
    assert items and text and DEFAULT_TEXT.startswith(text) and text != DEFAULT_TEXT
    assert not any(c.get("finishReason") for e in items for c in e.get("candidates") or [])  # never a clean end
    assert set(last) == {"error"} and last["error"]["code"] == 502 and last["error"]["status"] == "UNAVAILABLE"
    assert last["error"]["message"]
    assert [r.model for r in fake.requests] == [model]  # no retry, no fallback once bytes went out


def test_the_sdk_raises_its_server_error_on_a_cut_stream_after_some_text(gateway, fake):
    fake.plan(CutStream(2), model="gemini-2.5-flash")
    client = genai.Client(api_key="sdk-key", http_options={"base_url": gateway.url + "/genai"})
    seen = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hello!"):
            seen.append(chunk.text)
    assert seen and info.value.code == 502
    client.close()


def test_gemini_error_event_mid_stream_is_relayed(gateway, fake):
    """Gemini itself may end a stream with an error event; the client gets it, not a clean end."""
    class ErrorAfterFirst(Behaviour):
        def run(self, ex):
            normal = ex.dialect.build(ex.request, ex.endpoint, {}, None)
            error = b'data: {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}\r\n\r\n'
            ex._send(Response(200, events=[normal.events[0], error]))

    fake.plan(ErrorAfterFirst(), ErrorAfterFirst(), model="gemini-2.5-flash")  # one for /genai, one for /v1
    reply = stream(gateway, "gemini-2.5-flash")
    *_, last = events(reply)
    assert last["error"] == {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}
    unified = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "gemini/gemini-2.5-flash", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    assert "[DONE]" not in unified.text and '"overloaded"' in unified.text


# -- a Gemini-only body: passed through to Gemini, untranslatable for the others --------------------

SEARCH_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}], "tools": [{"googleSearch": {}}]}


def generate(gateway, model: str, fallbacks: list[str] | None = None):
    headers = {"x-bf-fallbacks": ",".join(fallbacks)} if fallbacks else {}
    return requests.post(f"{gateway.url}/genai/v1beta/models/{model}:generateContent", json=SEARCH_BODY,
                         headers=headers, timeout=30)


def test_a_gemini_only_tool_passes_through_to_gemini(gateway, fake):
    reply = generate(gateway, "gemini-2.5-flash", ["openai/gpt-4o-mini"])
    assert reply.status_code == 200, reply.text
    assert fake.requests[-1].body["tools"] == [{"googleSearch": {}}]


def test_a_gemini_only_tool_cannot_be_translated_and_the_primarys_error_wins(gateway, fake):
    """Gemini fails every attempt; the OpenAI fallback cannot express googleSearch, so it is never
    called, and the client gets the primary's own 500."""
    fake.plan(*[Status(500)] * 3)
    reply = generate(gateway, "gemini-2.5-flash", ["openai/gpt-4o-mini"])
    assert reply.status_code == 500 and reply.json()["error"]["status"] == "INTERNAL"
    assert {r.dialect for r in fake.requests} == {"gemini"} and len(fake.requests) == 3


def test_a_gemini_only_tool_to_another_provider_is_a_400_naming_it(gateway, fake):
    reply = generate(gateway, "openai/gpt-4o-mini")
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert error["message"] == "tools[0]: only functionDeclarations tools can be sent to this provider" and fake.requests == []
