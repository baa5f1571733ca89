"""The core's failure matrix on /anthropic: retries, fallbacks across provider families, stream failures.

Before the first byte a failure retries, falls back, or becomes Anthropic's JSON error with the
upstream's status; after it, an ``event: error`` and never a ``message_stop``. Each case runs
against the Anthropic upstream (pass-through) and the OpenAI upstream (translated).
Provider set-up in conftest.py: openai and anthropic retry twice with 10 ms backoff.
"""
from __future__ import annotations

import json

import anthropic
import pytest
import requests

from tests.fakes.behaviours import CutStream, ErrorEvent, MalformedChunk, Reset, Status, Stream
from tests.fakes.common import DEFAULT_TEXT

UPSTREAMS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
OTHER = {"anthropic": "openai/gpt-4o-mini", "openai": "anthropic/claude-haiku-4-5"}
MODES = ["json", "stream"]


def ask(gateway, model: str, stream: bool, fallbacks: str | None = None, **extra) -> requests.Response:
    headers = {"x-api-key": "client", "anthropic-version": "2023-06-01"}
    if fallbacks:
        headers["x-bf-fallbacks"] = fallbacks
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello!"}], **extra}
    if stream:
        body["stream"] = True
    return requests.post(gateway.url + "/anthropic/v1/messages", json=body, headers=headers, timeout=30)


def events(reply) -> list[tuple[str, dict]]:
    assert reply.headers["content-type"].startswith("text/event-stream"), reply.text
    out = []
    for block in reply.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def assert_answered(reply, stream: bool, provider: str, fallback_index: int | None = None) -> None:
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-bifrost-provider"] == provider
    assert reply.headers.get("x-bifrost-fallback-index") == (str(fallback_index) if fallback_index else None)
    if not stream:
        assert reply.json()["content"][0]["text"] == DEFAULT_TEXT
        return
    seen = events(reply)
    assert [name for name, _ in seen][-2:] == ["message_delta", "message_stop"]
    assert "".join(d["delta"].get("text", "") for n, d in seen if n == "content_block_delta") == DEFAULT_TEXT
    assert seen[-2][1]["usage"]["output_tokens"] > 0


def assert_cut(reply) -> dict:
    """A stream that broke after its first byte: an error event last, no message_stop."""
    assert reply.status_code == 200
    seen = events(reply)
    names = [name for name, _ in seen]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    error = seen[-1][1]
    assert error["type"] == "error" and error["error"]["type"] == "api_error" and error["error"]["message"]
    return error


def model_of(upstream: str, name: str) -> str:
    return f"{upstream}/{name}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failure", [Status(500), Reset()], ids=["500", "reset"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_transient_failure_is_retried(gateway, fake, upstream, failure, mode):
    fake.plan(failure, model="m-retry")
    reply = ask(gateway, model_of(upstream, "m-retry"), mode == "stream")
    assert_answered(reply, mode == "stream", upstream)
    assert [r.model for r in fake.requests] == ["m-retry", "m-retry"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_fallback_crosses_provider_families(gateway, fake, upstream, mode):
    """The primary's family decides nothing: each attempt is passed through or translated on its own."""
    fake.plan(*[Status(500)] * 3, model="m-fb")
    reply = ask(gateway, model_of(upstream, "m-fb"), mode == "stream", fallbacks=OTHER[upstream], top_k=3)
    fallback_provider = OTHER[upstream].split("/")[0]
    assert_answered(reply, mode == "stream", fallback_provider, fallback_index=1)
    paths = [r.path for r in fake.requests]
    assert paths == [UPSTREAMS[upstream]] * 3 + [UPSTREAMS[fallback_provider]]
    last = fake.requests[-1].body
    if fallback_provider == "anthropic":
        assert last["top_k"] == 3  # passed through as sent
    else:
        assert "top_k" not in last and last["messages"] == [{"role": "user", "content": "Hello!"}]  # translated


def test_fallbacks_in_the_body_are_accepted_and_not_forwarded(gateway, fake):
    fake.plan(*[Status(503)] * 3, model="m-body-fb")
    reply = requests.post(gateway.url + "/anthropic/v1/messages", timeout=30, json={
        "model": "anthropic/m-body-fb", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}],
        "fallbacks": ["anthropic/claude-haiku-4-5"]})
    assert_answered(reply, False, "anthropic", fallback_index=1)
    assert all("fallbacks" not in r.body for r in fake.requests)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_every_attempt_failing_is_anthropic_json_with_the_status(gateway, fake, upstream, mode):
    fake.plan(*[Status(503, "primary is overloaded")] * 3, model="m-all-fail")
    reply = ask(gateway, model_of(upstream, "m-all-fail"), mode == "stream")
    assert reply.status_code == 503 and reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["type"] == "error" and body["error"]["message"] == "primary is overloaded"
    assert body["error"]["type"] in ("api_error", "overloaded_error")


@pytest.mark.parametrize("failure", [CutStream(0), MalformedChunk(0), ErrorEvent(0)],
                         ids=["cut", "malformed", "error_event"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_stream_failing_at_its_first_event_is_retried(gateway, fake, upstream, failure):
    fake.plan(failure, model="m-first")
    reply = ask(gateway, model_of(upstream, "m-first"), True)
    assert_answered(reply, True, upstream)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("failure", [CutStream(4), CutStream(4, reset=True), MalformedChunk(4, resume=True)],
                         ids=["cut", "reset", "malformed"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_stream_failing_after_the_first_byte_ends_with_an_error_event(gateway, fake, upstream, failure):
    fake.plan((Stream(chunks=6), failure), model="m-late")
    assert_cut(ask(gateway, model_of(upstream, "m-late"), True))
    assert len(fake.requests) == 1  # too late to retry: the client has the first events


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_sdk_raises_on_a_stream_cut_after_the_first_byte(gateway, fake, upstream):
    fake.plan((Stream(chunks=6), CutStream(4)), model="m-late-sdk")
    with anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="client", max_retries=0) as sdk:
        with pytest.raises(anthropic.APIStatusError) as raised:
            with sdk.messages.stream(model=model_of(upstream, "m-late-sdk"), max_tokens=64,
                                     messages=[{"role": "user", "content": "Hello!"}]) as stream:
                for _ in stream:
                    pass
    assert raised.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("upstream,error_type,message", [
    ("anthropic", "overloaded_error", "Overloaded"),
    ("openai", "api_error", "The server had an error while processing your request."),
])
def test_upstream_error_event_after_the_first_byte_is_relayed_as_an_error_event(gateway, fake, upstream, error_type,
                                                                                  message):
    fake.plan((Stream(chunks=6), ErrorEvent(4)), model="m-error-event")
    reply = ask(gateway, model_of(upstream, "m-error-event"), True)
    seen = events(reply)
    names = [name for name, _ in seen]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    assert seen[-1][1] == {"type": "error", "error": {"type": error_type, "message": message}}
    assert len(fake.requests) == 1
