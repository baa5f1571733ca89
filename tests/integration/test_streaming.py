"""Streaming through the real server: SSE framing, usage, Anthropic translation, flushing, disconnects, load."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

from tests.fakes.behaviours import Behaviour, Combine, Reply, Status, Stream
from tests.fakes.common import DEFAULT_TEXT

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello!"}]
WEATHER_TOOL = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                   "required": ["location"]}}}]


# -- helpers ----------------------------------------------------------------------------------

def post(gateway, path, body, **kwargs):
    return requests.post(gateway.url + path, json=body, timeout=30, **kwargs)


def sse_data(text: str) -> list[str]:
    """The payload of every `data:` event of an SSE body, in order."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if lines:
            events.append("\n".join(lines))
    return events


def stream_chunks(reply) -> list[dict]:
    """A complete stream: 200, text/event-stream, JSON chunks, then [DONE] and nothing after it."""
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream"), reply.headers
    events = sse_data(reply.text)
    assert events and events[-1] == "[DONE]" and events.count("[DONE]") == 1, events
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c], chunks
    return chunks


def chat_text(chunks) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))


def finish_reasons(chunks) -> list[str]:
    choices = [c["choices"][0] for c in chunks if c.get("choices")]
    return [choice["finish_reason"] for choice in choices if choice.get("finish_reason")]


def assert_usage(usage, completion_tokens=None) -> None:
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if completion_tokens is not None:
        assert usage["completion_tokens"] == completion_tokens


def open_stream(gateway, body: dict, timeout: float = 30):
    """POST a streaming chat request with http.client; returns (connection, response) with the body unread."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=timeout)
    conn.request("POST", CHAT, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def timed_data_lines(response: http.client.HTTPResponse):
    """(arrival time, payload) of each `data:` line, read off the socket as soon as it arrives."""
    buffer = b""
    while True:
        piece = response.read1(65536)
        if not piece:
            return
        arrived = time.monotonic()
        buffer += piece
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.startswith(b"data:"):
                yield arrived, line[5:].strip()


# -- framing, headers, usage ---------------------------------------------------------------------

def test_openai_stream_framing_headers_and_usage(gateway, fake):
    reply = post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True},
                 headers={"x-request-id": "stream-req-1"})
    chunks = stream_chunks(reply)
    assert reply.headers["x-accel-buffering"] == "no"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-request-id"] == "stream-req-1"
    assert reply.headers["x-bifrost-provider"] == "openai"
    # every line of the body is a data: line or a blank separator
    assert all(line.startswith("data: ") or line == "" for line in reply.text.split("\n")), reply.text
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chat_text(chunks) == DEFAULT_TEXT
    assert finish_reasons(chunks) == ["stop"]
    assert all(c["extra_fields"]["provider"] == "openai" for c in chunks)
    # usage: the gateway asked for it although the client did not, and it is the last chunk before [DONE]
    [seen] = fake.requests
    assert seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert chunks[-1]["usage"]
    assert_usage(chunks[-1]["usage"], completion_tokens=len(DEFAULT_TEXT.split()))


def test_request_id_is_generated_for_a_stream(gateway):
    reply = post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True})
    stream_chunks(reply)
    assert len(reply.headers["x-request-id"]) >= 32


def test_usage_is_folded_into_the_final_chunk_unless_the_client_asks_for_the_usage_chunk(gateway, fake):
    # The client asked for nothing: usage rides on the finishing chunk, and every chunk has a choice.
    chunks = stream_chunks(post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True}))
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert_usage(chunks[-1]["usage"])
    # The client asked for OpenAI's usage chunk: it gets it, last before [DONE], after the finishing chunk.
    chunks = stream_chunks(post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True,
                                                "stream_options": {"include_usage": True}}))
    *body, last = chunks
    assert last["choices"] == []
    assert_usage(last["usage"])
    assert body[-1]["choices"][0]["finish_reason"] == "stop" and not body[-1].get("usage")
    assert chat_text(chunks) == DEFAULT_TEXT


def test_client_stream_options_are_kept_and_usage_still_requested(gateway, fake):
    reply = post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True,
                                 "stream_options": {"include_obfuscation": False}})
    chunks = stream_chunks(reply)
    assert fake.requests[0].body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert_usage(chunks[-1]["usage"])


# -- Anthropic streams, translated ---------------------------------------------------------------

def test_anthropic_stream_is_translated_to_openai_chunks(gateway, fake):
    reply = post(gateway, CHAT, {"model": "anthropic/claude-haiku-4-5", "messages": HELLO, "stream": True,
                                 "max_tokens": 100})
    chunks = stream_chunks(reply)
    [seen] = fake.requests
    assert seen.path == "/v1/messages" and seen.body["stream"] is True
    assert "stream_options" not in seen.body  # Anthropic would reject the OpenAI-only field
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == len(DEFAULT_TEXT.split())  # one delta per upstream text_delta
    assert chat_text(chunks) == DEFAULT_TEXT
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert_usage(chunks[-1]["usage"], completion_tokens=len(DEFAULT_TEXT.split()))
    assert reply.headers["x-bifrost-provider"] == "anthropic"


def test_anthropic_streamed_tool_call_becomes_tool_call_deltas(gateway, fake):
    arguments = {"location": "Paris", "unit": "celsius"}
    fake.plan(Combine(Stream(chunks=4), Reply(tool_call={"name": "get_weather", "arguments": arguments})),
              model="claude-haiku-4-5")
    reply = post(gateway, CHAT, {"model": "anthropic/claude-haiku-4-5", "stream": True, "tools": WEATHER_TOOL,
                                 "messages": [{"role": "user", "content": "Weather in Paris?"}]})
    chunks = stream_chunks(reply)
    assert fake.requests[0].body["tools"][0]["name"] == "get_weather"
    deltas = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    head, *rest = deltas
    assert head["index"] == 0 and head["id"].startswith("toolu_")
    assert head["type"] == "function" and head["function"]["name"] == "get_weather"
    assert len(rest) >= 2  # the arguments arrive in pieces, as they were streamed
    for delta in rest:
        assert delta["index"] == 0 and "id" not in delta and "name" not in delta["function"]
    assembled = head["function"].get("arguments", "") + "".join(d["function"]["arguments"] for d in rest)
    assert json.loads(assembled) == arguments
    assert finish_reasons(chunks) == ["tool_calls"]
    assert_usage(chunks[-1]["usage"])


# -- text completion streams ---------------------------------------------------------------------

def test_openai_text_completion_stream(gateway, fake):
    reply = post(gateway, "/v1/completions", {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi",
                                              "stream": True})
    chunks = stream_chunks(reply)
    [seen] = fake.requests
    assert seen.path == "/v1/completions" and seen.body["stream_options"] == {"include_usage": True}
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == DEFAULT_TEXT
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] \
        == ["stop"]
    assert_usage(chunks[-1]["usage"], completion_tokens=len(DEFAULT_TEXT.split()))


def test_anthropic_text_completion_stream(gateway, fake):
    reply = post(gateway, "/v1/completions", {"model": "anthropic/claude-haiku-4-5", "prompt": "Say hi",
                                              "stream": True})
    chunks = stream_chunks(reply)
    [seen] = fake.requests
    assert seen.path == "/v1/messages" and seen.body["stream"] is True
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == DEFAULT_TEXT
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] \
        == ["stop"]
    assert_usage(chunks[-1]["usage"], completion_tokens=len(DEFAULT_TEXT.split()))


# -- failure before the first event ----------------------------------------------------------------

def test_failure_before_first_event_is_a_json_error_with_the_upstream_status(gateway, fake):
    fake.plan(Status(401, "Incorrect API key provided: sk-op***-1."), model="gpt-4o-mini")
    reply = post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True})
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["status_code"] == 401 and body["is_bifrost_error"] is False
    assert body["error"]["message"] == "Incorrect API key provided: sk-op***-1."
    assert body["extra_fields"]["provider"] == "openai"
    assert len(fake.requests) == 1  # a 401 is not retried


# -- each event is flushed as it arrives -----------------------------------------------------------

def test_events_are_flushed_one_by_one(gateway, fake):
    fake.plan(Stream(chunks=5, gap=0.3), model="m-flush")  # every upstream event 0.3 s after the one before
    conn, response = open_stream(gateway, {"model": "openai/m-flush", "messages": HELLO, "stream": True})
    try:
        assert response.status == 200
        events = list(timed_data_lines(response))
    finally:
        response.close()
        conn.close()
    payloads = [data for _, data in events]
    assert payloads[-1] == b"[DONE]", payloads
    chunks = [json.loads(data) for data in payloads[:-1]]
    # the role chunk, then each of the 5 pieces in its own event, then the finish (and usage)
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:6]] == ["Hello", " from", " the", " fake",
                                                                                " upstream."]
    assert len(events) >= 8
    gaps = [later - earlier for (earlier, _), (later, _) in zip(events, events[1:])]
    assert all(gap > 0.15 for gap in gaps), gaps


# -- a client that goes away closes the upstream stream --------------------------------------------

@dataclass(frozen=True)
class Watched(Behaviour):
    """Answer normally and report how the answer ended: "completed", or the error writing it raised."""
    outcome: list = field(default_factory=list, compare=False, hash=False)
    ended: threading.Event = field(default_factory=threading.Event, compare=False, hash=False)

    def run(self, ex) -> None:
        started = time.monotonic()
        try:
            ex.respond()
        except OSError as exc:  # BrokenPipeError / ConnectionResetError: the gateway hung up
            self.outcome.append((type(exc).__name__, time.monotonic() - started))
            raise
        else:
            self.outcome.append(("completed", time.monotonic() - started))
        finally:
            self.ended.set()


def test_client_disconnect_closes_the_upstream_stream(gateway, fake):
    watched = Watched()
    fake.plan(Combine(Stream(chunks=100, gap=0.1), watched), model="m-long")  # ~10 s if read to the end
    conn, response = open_stream(gateway, {"model": "openai/m-long", "messages": HELLO, "stream": True})
    try:
        assert response.status == 200
        lines = timed_data_lines(response)
        first_two = [next(lines)[1] for _ in range(2)]
        assert all(json.loads(data)["choices"] for data in first_two)
    finally:
        conn.sock.shutdown(socket.SHUT_RDWR)  # the client is gone, mid-stream
        response.close()
        conn.close()
    assert watched.ended.wait(5), "the upstream stream is still being written 5 s after the client left"
    [(how, took)] = watched.outcome
    assert how != "completed", f"the upstream stream ran to its end ({took:.1f} s)"
    assert len(fake.requests) == 1


# -- a finished stream leaves its pooled upstream connection clean ---------------------------------

@dataclass(frozen=True)
class LateEnd(Behaviour):
    """A complete stream whose HTTP chunked terminator ("0\\r\\n\\r\\n") follows its last event after `hold`
    seconds, as when a real upstream flushes [DONE] / message_stop and closes its body a moment later."""
    hold: float

    def run(self, ex) -> None:
        reply = ex.dialect.build(ex.request, ex.endpoint, ex.options, ex.handler.server.fake)
        ex.done = True
        ex.handler.start_stream(reply.status, reply.headers)
        for event in reply.events:
            ex.handler.write_chunk(event)
        ex.wait(self.hold)
        ex.handler.end_stream()


@pytest.mark.parametrize("provider,model", [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")])
def test_next_request_after_a_finished_stream_is_not_broken_by_its_leftovers(gateway, fake, provider, model):
    fake.plan(LateEnd(0.5), model=model)
    chunks = stream_chunks(post(gateway, CHAT, {"model": f"{provider}/{model}", "messages": HELLO, "stream": True}))
    assert chat_text(chunks) == DEFAULT_TEXT
    # Right after, the same upstream host (`slow` has no retries, so a broken connection is not hidden).
    reply = post(gateway, CHAT, {"model": "slow/m-next", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert [r.model for r in fake.requests] == [model, "m-next"]


# -- load: many concurrent streams through one worker ----------------------------------------------

class InFlight:
    """How many upstream streams the fake is writing at once, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


@dataclass(frozen=True)
class Counted(Behaviour):
    """Answer normally while counted in `in_flight`."""
    in_flight: InFlight = field(compare=False, hash=False)

    def run(self, ex) -> None:
        with self.in_flight:
            ex.respond()


def test_200_concurrent_streams_through_one_worker_complete_intact(gateway, fake):
    count, pieces = 200, 20
    in_flight = InFlight()

    def text_of(i: int) -> str:  # 20 words: one stream piece per word, different for every request
        return " ".join(f"s{i}w{j}" for j in range(pieces))

    for i in range(count):
        fake.set_default(Combine(Stream(chunks=pieces, gap=0.01), Reply(content=text_of(i)), Counted(in_flight)),
                         model=f"m-load-{i}")

    def one(i: int):
        return post(gateway, CHAT, {"model": f"openai/m-load-{i}", "messages": HELLO, "stream": True},
                    headers={"Connection": "close"})

    with ThreadPoolExecutor(count) as pool:
        replies = list(pool.map(one, range(count)))
    for i, reply in enumerate(replies):
        chunks = stream_chunks(reply)
        assert chat_text(chunks) == text_of(i), i
        content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
        assert len(content) == pieces
        assert finish_reasons(chunks) == ["stop"]
        assert_usage(chunks[-1]["usage"], completion_tokens=pieces)
    # one upstream request per stream: any more means attempts failed and were retried behind the client's back
    seen = Counter(r.model for r in fake.requests)
    assert sorted(seen) == sorted(f"m-load-{i}" for i in range(count))
    assert not {m: n for m, n in seen.items() if n > 1}, "upstream attempts that failed and were retried"
    # the single worker really served the streams side by side, not one after another
    assert in_flight.most >= 10, in_flight.most
