"""A known mix of requests for the metrics and log tests, and what each of them should leave behind.

JSON replies (concurrent, so both workers serve), streams, an upstream 500 that is retried,
a fallback, a 429 the client sees, and a client that disconnects mid-stream.
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from tests.fakes import Reply, Status, Stream

TEAM = {"x-bf-dim-team": "red"}
STREAM_WORDS = "aardvark xylophone quasar"
JSON_CONCURRENT = 12  # JSON requests sent at once, on new connections, so both workers serve some


@dataclass
class Sent:
    id: str
    kind: str
    status: str  # success / error
    provider: str
    model: str
    stream: bool = False
    retries: int = 0
    fallback_index: int = 0
    usage: dict | None = None
    cost: float | None = None
    output: str | None = None  # the assistant text the client received
    prompt: str = ""
    http_status: int = 200
    headers: dict = field(default_factory=dict)


def chat(url: str, model: str, text: str, *, stream: bool = False, fallbacks=(), request_id: str | None = None,
         headers: dict | None = None, extra: dict | None = None):
    body = {"model": model, "messages": [{"role": "user", "content": text}], **(extra or {})}
    if stream:
        body["stream"] = True
    if fallbacks:
        body["fallbacks"] = list(fallbacks)
    request_id = request_id or str(uuid.uuid4())
    all_headers = {"x-request-id": request_id, **TEAM, **(headers or {})}
    return request_id, requests.post(url + "/v1/chat/completions", json=body, headers=all_headers,
                                     stream=stream, timeout=30)


def read_stream(response) -> tuple[str, dict | None, float | None]:
    """The streamed text, the usage of the final chunk and its extra_fields.cost."""
    text, usage, cost = [], None, None
    for line in response.iter_lines():
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
        if chunk.get("usage"):
            usage = chunk["usage"]
            cost = chunk["extra_fields"]["cost"]
    return "".join(text), usage, cost


def run_mix(url: str, fake) -> list[Sent]:
    sent: list[Sent] = []

    def json_ok(index: int) -> Sent:
        prompt = f"hello number {index}"
        request_id, reply = chat(url, "openai/gpt-4o-mini", prompt)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return Sent(request_id, "json", "success", "openai", "gpt-4o-mini", usage=body["usage"],
                    cost=body["extra_fields"]["cost"], output=body["choices"][0]["message"]["content"],
                    prompt=prompt, headers=dict(reply.headers))

    with ThreadPoolExecutor(JSON_CONCURRENT) as pool:
        sent.extend(pool.map(json_ok, range(JSON_CONCURRENT)))

    for index, content in enumerate((STREAM_WORDS, None)):
        if content:
            fake.plan((Reply(content=content), Stream(chunks=3)), model="gpt-4o-mini")
        prompt = f"stream please {index}"
        request_id, reply = chat(url, "openai/gpt-4o-mini", prompt, stream=True)
        assert reply.status_code == 200
        text, usage, cost = read_stream(reply)
        assert usage is not None
        sent.append(Sent(request_id, "stream", "success", "openai", "gpt-4o-mini", stream=True, usage=usage,
                         cost=cost, output=text, prompt=prompt))

    fake.plan(Status(500), model="gpt-4o")
    request_id, reply = chat(url, "openai/gpt-4o", "retry me")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    sent.append(Sent(request_id, "retried", "success", "openai", "gpt-4o", retries=1, usage=body["usage"],
                     cost=body["extra_fields"]["cost"], output=body["choices"][0]["message"]["content"],
                     prompt="retry me"))

    request_id, reply = chat(url, "refused/gpt-4o-mini", "fall back", fallbacks=["openai/gpt-4o-mini"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    sent.append(Sent(request_id, "fallback", "success", "openai", "gpt-4o-mini", retries=1, fallback_index=1,
                     usage=body["usage"], cost=body["extra_fields"]["cost"],
                     output=body["choices"][0]["message"]["content"], prompt="fall back"))

    fake.plan(Status(429), model="gpt-4o")
    request_id, reply = chat(url, "perplexity/gpt-4o", "rate limited")
    assert reply.status_code == 429, reply.text
    sent.append(Sent(request_id, "429", "error", "perplexity", "gpt-4o", http_status=429, prompt="rate limited"))

    fake.plan(Stream(chunks=60, gap=0.05), model="gpt-4o-mini")
    request_id = leave_mid_stream(url, "openai/gpt-4o-mini", "i will leave")
    sent.append(Sent(request_id, "disconnect", "error", "openai", "gpt-4o-mini", stream=True, prompt="i will leave"))

    for path in ("/nope/one", "/nope/two"):
        assert requests.get(url + path, timeout=5).status_code == 404
    return sent


def leave_mid_stream(url: str, model: str, text: str) -> str:
    """Open a stream, read its first event, and close the socket with the rest unread."""
    request_id = str(uuid.uuid4())
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nx-request-id: {request_id}\r\nx-bf-dim-team: red\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        received = b""
        while b"data: " not in received:
            piece = sock.recv(4096)
            assert piece, "the stream ended before its first event"
            received += piece
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return request_id


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    """Poll until predicate() is truthy; an exception (e.g. a server still starting) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (requests.RequestException, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
