"""The failure matrix against the real server: retries, fallbacks, errors before and after the first byte.

Issue text: "for each of 500, 503, 429, connection refused, timeout and stall before the first byte, the
request succeeds through retry or fallback; a stream cut after the first byte ends with an error event,
never with [DONE]."  Every case runs as a plain JSON request and as a stream.

Provider set-up (conftest.py): openai / anthropic / groq retry twice with 10 ms backoff and a 3 s timeout;
groq has keys rl-a (weight 1) and rl-b (weight 0); `refused` points at a closed port; `slow` has a 1 s
timeout and no retries.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import pytest
import requests

from tests.fakes.behaviours import Behaviour, CutStream, Delay, MalformedChunk, Reset, Stall, Status, Stream
from tests.fakes.common import DEFAULT_TEXT
from tests.gateway_process import GatewayProcess

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello!"}]
FALLBACK = "openai/gpt-4o-mini"
MODES = ["json", "stream"]


# -- helpers ----------------------------------------------------------------------------------

def chat(gateway, model, stream, timeout=30, **extra):
    body = {"model": model, "messages": HELLO, **extra}
    if stream:
        body["stream"] = True
    return requests.post(gateway.url + CHAT, json=body, timeout=timeout)


def sse_data(reply) -> list[str]:
    """The payload of every `data:` event of an SSE body, in order."""
    assert reply.headers["content-type"].startswith("text/event-stream"), reply.headers
    events = []
    for block in reply.text.replace("\r\n", "\n").split("\n\n"):
        lines = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if lines:
            events.append("\n".join(lines))
    return events


def assert_answered(reply, stream: bool, provider: str, fallback_index: int | None = None) -> None:
    """A complete, successful answer with DEFAULT_TEXT, served by `provider` at `fallback_index`."""
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-bifrost-provider"] == provider
    if fallback_index:
        assert reply.headers.get("x-bifrost-fallback-index") == str(fallback_index)
    else:
        assert "x-bifrost-fallback-index" not in reply.headers
    if not stream:
        body = reply.json()
        assert body["choices"][0]["message"]["content"] == DEFAULT_TEXT
        assert body["extra_fields"]["provider"] == provider
        assert body["extra_fields"].get("fallback_index") == fallback_index
        return
    events = sse_data(reply)
    assert events[-1] == "[DONE]", events
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c], chunks
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    assert text == DEFAULT_TEXT
    assert chunks[-1].get("usage") and chunks[-1]["usage"]["completion_tokens"] > 0
    for chunk in chunks:
        assert chunk["extra_fields"]["provider"] == provider
        assert chunk["extra_fields"].get("fallback_index") == fallback_index


def assert_error(reply, status: int, message: str | None = None) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body = reply.json()
    assert body["status_code"] == status
    if message is not None:
        assert body["error"]["message"] == message, body
    return body


# -- retries on the same provider ---------------------------------------------------------------

RETRY_CASES = {
    # name: (provider, failure planned once)
    "500": ("openai", Status(500, "boom 500")),
    "503": ("openai", Status(503, "overloaded 503")),
    "429": ("groq", Status(429, "slow down")),
    "reset": ("openai", Reset()),            # connection dropped before any response
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(RETRY_CASES))
def test_transient_failure_is_retried_on_the_same_provider(gateway, fake, case, mode):
    provider, failure = RETRY_CASES[case]
    model = f"m-retry-{case}"
    fake.plan(failure, model=model)
    reply = chat(gateway, f"{provider}/{model}", mode == "stream")
    assert_answered(reply, mode == "stream", provider)
    assert [r.model for r in fake.requests] == [model, model]
    assert fake.pending == 0
    if case == "429":
        # the rate-limited key is set aside: the retry uses the other (weight 0) key
        assert [r.api_key for r in fake.requests] == ["sk-rl-a", "sk-rl-b"]


def test_retry_stops_after_max_retries(gateway, fake):
    """max_retries 2 means three attempts, then the upstream's error (no fallback configured)."""
    fake.plan(Status(503, "down 1"), Status(503, "down 2"), Status(503, "down 3"), Status(503, "down 4"),
              model="m-retry-max")
    assert_error(chat(gateway, "openai/m-retry-max", False), 503, "down 3")
    assert len(fake.requests) == 3 and fake.pending == 1


# -- fallbacks to another provider --------------------------------------------------------------

FALLBACK_CASES = {
    # name: (primary provider, primary model, failures planned for the primary, attempts on the primary)
    "500": ("anthropic", "m-fb-500", [Status(500)] * 3, 3),
    "503": ("openai", "m-fb-503", [Status(503)] * 3, 3),
    "429": ("groq", "m-fb-429", [Status(429)] * 3, 3),
    "refused": ("refused", "m-fb-refused", [], 0),
    "timeout": ("slow", "m-fb-timeout", [Delay(1.6)], 1),     # answers, but after the 1 s timeout
    "stall": ("slow", "m-fb-stall", [Stall(8)], 1),            # says nothing for longer than the client waits
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_failing_primary_falls_back(gateway, fake, case, mode):
    provider, model, failures, attempts = FALLBACK_CASES[case]
    fake.plan(*failures, model=model)
    # the client gives up after 5 s: only the gateway's own 1 s timeout can rescue the stalled case
    reply = chat(gateway, f"{provider}/{model}", mode == "stream", timeout=5, fallbacks=[FALLBACK])
    assert_answered(reply, mode == "stream", "openai", fallback_index=1)
    assert [r.model for r in fake.requests] == [model] * attempts + ["gpt-4o-mini"]
    assert fake.pending == 0


@pytest.mark.parametrize("stall", ["before_headers", "after_headers"])
def test_stream_stalled_before_first_event_falls_back(gateway, fake, stall):
    """A stream that says nothing for longer than the timeout, with or without its headers, falls back."""
    behaviour = Stall(8) if stall == "before_headers" else Stream(first_delay=8)
    fake.plan(behaviour, model="m-stall-stream")
    # the client gives up after 5 s, long before the stalled upstream would: only the 1 s timeout can rescue it
    reply = chat(gateway, "slow/m-stall-stream", True, timeout=5, fallbacks=[FALLBACK])
    assert_answered(reply, True, "openai", fallback_index=1)
    assert [r.model for r in fake.requests] == ["m-stall-stream", "gpt-4o-mini"]


@pytest.mark.parametrize("mode", MODES)
def test_every_target_failing_returns_the_primary_error(gateway, fake, mode):
    fake.plan(*[Status(503, "primary is overloaded")] * 3, model="m-all-fail")
    fake.plan(Status(404, "no such fallback model"), model="m-all-fail-fb")
    reply = chat(gateway, "openai/m-all-fail", mode == "stream",
                 fallbacks=["anthropic/m-all-fail-fb", "refused/m-all-fail"])
    body = assert_error(reply, 503, "primary is overloaded")
    assert body["is_bifrost_error"] is False
    assert body["extra_fields"]["provider"] == "openai"
    assert body["extra_fields"]["model_requested"] == "m-all-fail"
    assert [r.model for r in fake.requests] == ["m-all-fail"] * 3 + ["m-all-fail-fb"]


@pytest.mark.parametrize("mode", MODES)
def test_non_retryable_error_is_not_retried_but_falls_back(gateway, fake, mode):
    fake.plan(Status(400, "Invalid value for 'temperature'"), model="m-bad-request")
    reply = chat(gateway, "openai/m-bad-request", mode == "stream", fallbacks=["anthropic/claude-haiku-4-5"])
    assert_answered(reply, mode == "stream", "anthropic", fallback_index=1)
    assert [r.model for r in fake.requests] == ["m-bad-request", "claude-haiku-4-5"]


@pytest.mark.parametrize("mode", MODES)
def test_non_retryable_error_without_fallbacks_is_returned_after_one_attempt(gateway, fake, mode):
    fake.plan(Status(400, "Invalid value for 'temperature'"), model="m-bad-request")
    body = assert_error(chat(gateway, "openai/m-bad-request", mode == "stream"), 400,
                        "Invalid value for 'temperature'")
    assert body["is_bifrost_error"] is False
    assert len(fake.requests) == 1


# -- streams that fail at their first event -------------------------------------------------------

FIRST_EVENT_CASES = {
    # name: (primary, failure, attempts on the primary, fallbacks, who answers, fallback index)
    "malformed_first_retried": ("openai", MalformedChunk(0), 2, [], "openai", None),
    "malformed_first_falls_back": ("slow", MalformedChunk(0), 1, [FALLBACK], "openai", 1),
    "anthropic_malformed_first_retried": ("anthropic", MalformedChunk(0), 2, [], "anthropic", None),
    "cut_before_first_retried": ("openai", CutStream(0), 2, [], "openai", None),
    "cut_before_first_falls_back": ("slow", CutStream(0, reset=True), 1, [FALLBACK], "openai", 1),
}


@pytest.mark.parametrize("case", list(FIRST_EVENT_CASES))
def test_stream_failing_at_its_first_event_is_retried_or_falls_back(gateway, fake, case):
    provider, failure, attempts, fallbacks, answered_by, index = FIRST_EVENT_CASES[case]
    model = f"m-first-{case}"
    fake.plan(failure, model=model)
    reply = chat(gateway, f"{provider}/{model}", True, fallbacks=fallbacks)
    assert_answered(reply, True, answered_by, fallback_index=index)
    primary = [r for r in fake.requests if r.model == model]
    assert len(primary) == attempts
    assert fake.pending == 0


# -- streams that fail after the first byte ------------------------------------------------------

CUT_CASES = {
    # name: (provider, model, failure)
    "openai_cut": ("openai", "m-cut", CutStream(after_chunks=2)),
    "openai_cut_rst": ("openai", "m-cut", CutStream(after_chunks=2, reset=True)),
    "openai_malformed": ("openai", "m-cut", MalformedChunk(after_chunks=2, resume=True)),
    "openai_malformed_end": ("openai", "m-cut", MalformedChunk(after_chunks=2, resume=False)),
    "anthropic_cut": ("anthropic", "claude-cut", CutStream(after_chunks=4)),
    "anthropic_malformed": ("anthropic", "claude-cut", MalformedChunk(after_chunks=4)),
}


@pytest.mark.parametrize("case", list(CUT_CASES))
def test_stream_broken_after_first_byte_ends_with_error_event_not_done(gateway, fake, case):
    provider, model, failure = CUT_CASES[case]
    fake.plan(failure, model=model)
    reply = chat(gateway, f"{provider}/{model}", True, fallbacks=[FALLBACK])
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-bifrost-provider"] == provider
    events = sse_data(reply)
    assert "[DONE]" not in events, events
    *chunks, last = [json.loads(e) for e in events]
    # some real data came through first
    assert chunks and all("choices" in c for c in chunks), events
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks)
    assert text and DEFAULT_TEXT.startswith(text) and text != DEFAULT_TEXT
    # then an explicit error event
    assert "choices" not in last, last
    assert last["is_bifrost_error"] is True
    assert isinstance(last["status_code"], int) and last["status_code"] >= 500
    assert isinstance(last["error"]["message"], str) and last["error"]["message"]
    assert last["extra_fields"]["provider"] == provider
    # after the first byte there is no retry and no fallback: the client already has part of an answer
    assert [r.model for r in fake.requests] == [model]


# -- drop_excess_requests ------------------------------------------------------------------------

@dataclass(frozen=True)
class Busy(Behaviour):
    """Hold each request for `seconds`, then answer normally; `spans` notes (start, about to answer)."""
    seconds: float
    spans: list = field(default_factory=list, compare=False, hash=False)

    def run(self, ex) -> None:
        started = time.monotonic()
        ex.wait(self.seconds)
        self.spans.append((started, time.monotonic()))
        ex.respond()


def limited_config(fake_url: str, drop: bool) -> dict:
    return {
        "client": {"drop_excess_requests": drop},
        "providers": {
            "openai": {
                "keys": [{"name": "oa", "value": "sk-openai-1", "models": ["*"]}],
                "network_config": {"base_url": fake_url, "default_request_timeout_in_seconds": 10},
                "concurrency_and_buffer_size": {"concurrency": 1, "buffer_size": 0},
            },
        },
    }


@pytest.mark.parametrize("drop", [True, False], ids=["drop", "wait"])
def test_drop_excess_requests(fake, drop):
    busy = Busy(1.0)
    fake.set_default(busy, model="m-busy")
    body = {"model": "openai/m-busy", "messages": HELLO}
    # Connection: close, so no idle keep-alive connection holds up the gateway's graceful stop.
    post = partial(requests.post, json=body, timeout=30, headers={"Connection": "close"})
    with GatewayProcess(limited_config(fake.url, drop)) as gw:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, gw.url + CHAT)
            fake.wait_for_requests(1, timeout=10)  # the first request holds the only slot
            second = pool.submit(post, gw.url + CHAT)
            first, second = first.result(), second.result()
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT
    if drop:
        error = assert_error(second, 503)
        assert error["type"] == "request_dropped"
        assert error["is_bifrost_error"] is True
        assert len(fake.requests) == 1  # the dropped request never reached the upstream
    else:
        assert second.status_code == 200, second.text
        assert second.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT
        assert len(fake.requests) == 2
        # the second request waited for the slot: it reached the upstream only once the first was answered
        (_, first_answered), (second_started, _) = sorted(busy.spans)
        assert second_started >= first_answered
