"""The fake upstreams check requests like the real providers and misbehave on demand."""
import http.client
import json
import threading
import time

import pytest

from tests.fakes import CutStream, FakeUpstream, MalformedChunk, Reply, Reset, Stall, Status, Stream

OPENAI = {"Authorization": "Bearer sk-good"}
ANTHROPIC = {"x-api-key": "sk-good", "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there"}]}
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi there"}]}


@pytest.fixture(scope="module")
def server():
    with FakeUpstream(api_keys={"sk-good"}) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.clear()
    yield server
    server.clear()


def call(fake, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def sse_events(raw: bytes):
    """[(event name or None, data string)] of a text/event-stream body."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        events.append((name, "\n".join(data)))
    return events


def test_wrong_or_missing_key_is_401_in_each_dialect(fake):
    status, _, body = call(fake, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer sk-bad"})
    assert status == 401
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"

    assert call(fake, "POST", "/v1/chat/completions", CHAT)[0] == 401
    status, _, body = call(fake, "POST", "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21",
                           {"messages": CHAT["messages"]}, {"api-key": "nope"})
    assert status == 401

    status, _, body = call(fake, "POST", "/v1/messages", MESSAGE, {**ANTHROPIC, "x-api-key": "sk-bad"})
    assert status == 401
    assert json.loads(body)["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert [r.api_key for r in fake.requests] == ["sk-bad", None, "nope", "sk-bad"]


def test_anthropic_rejects_what_the_real_api_rejects(fake):
    status, _, body = call(fake, "POST", "/v1/messages", {**MESSAGE, "frequency_penalty": 0.5}, ANTHROPIC)
    assert status == 400
    assert json.loads(body)["type"] == "error"
    assert json.loads(body)["error"] == {"type": "invalid_request_error",
                                         "message": "frequency_penalty: Extra inputs are not permitted"}

    status, _, body = call(fake, "POST", "/v1/messages", MESSAGE, {"x-api-key": "sk-good"})
    assert status == 400
    assert json.loads(body)["error"]["message"] == "anthropic-version: header is required"

    bad = [
        {k: v for k, v in MESSAGE.items() if k != "max_tokens"},
        {**MESSAGE, "messages": []},
        {**MESSAGE, "messages": [{"role": "system", "content": "Be brief"}, *MESSAGE["messages"]]},
        {**MESSAGE, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {**MESSAGE, "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "sunny"}]},
        ]},
    ]
    for body in bad:
        assert call(fake, "POST", "/v1/messages", body, ANTHROPIC)[0] == 400, body


def test_openai_validates_but_passes_unknown_fields(fake):
    assert call(fake, "POST", "/v1/chat/completions", {**CHAT, "messages": [{"role": "bot", "content": "x"}]},
                OPENAI)[0] == 400
    assert call(fake, "POST", "/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}},
                OPENAI)[0] == 400
    assert call(fake, "POST", "/v1/chat/completions", {**CHAT, "messages": [{"role": "tool", "content": "x"}]},
                OPENAI)[0] == 400

    status, _, body = call(fake, "POST", "/v1/chat/completions", {**CHAT, "x_custom": {"a": 1}}, OPENAI)
    assert status == 200
    reply = json.loads(body)
    assert reply["object"] == "chat.completion" and reply["model"] == "gpt-4o-mini"
    assert reply["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert reply["usage"] == {**reply["usage"], "prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert fake.requests[-1].body["x_custom"] == {"a": 1}


def test_normal_streams_parse(fake):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, raw = call(fake, "POST", "/v1/chat/completions", body, OPENAI)
    assert status == 200 and dict(headers)["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from the fake upstream."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5

    fake.plan(Stream(chunks=3))
    status, _, raw = call(fake, "POST", "/v1/messages", {**MESSAGE, "stream": True}, ANTHROPIC)
    assert status == 200
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(json.loads(data)["type"] == name for name, data in events)
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Hello from the fake upstream."
    assert json.loads(events[-2][1])["delta"]["stop_reason"] == "end_turn"


def test_tool_calls_when_tools_are_given(fake):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
    status, _, body = call(fake, "POST", "/v1/chat/completions", {**CHAT, "tools": tools}, OPENAI)
    choice = json.loads(body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                              "arguments": '{"location": "Paris"}'}

    anthropic_tools = [{"name": "get_weather", "input_schema": tools[0]["function"]["parameters"]}]
    status, _, body = call(fake, "POST", "/v1/messages", {**MESSAGE, "tools": anthropic_tools}, ANTHROPIC)
    message = json.loads(body)
    assert message["stop_reason"] == "tool_use"
    assert message["content"][0]["input"] == {"location": "Paris"}


def test_planned_status_is_consumed_once(fake):
    fake.plan(Status(500), model="gpt-4o-mini")
    fake.plan(Status(529, headers={"retry-after": "2"}))
    status, headers, body = call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)
    assert status == 500 and json.loads(body)["error"]["type"] == "server_error"
    status, headers, body = call(fake, "POST", "/v1/messages", MESSAGE, ANTHROPIC)
    assert status == 529 and dict(headers)["retry-after"] == "2"
    assert json.loads(body)["error"]["type"] == "overloaded_error"
    assert fake.pending == 0
    assert call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)[0] == 200


def test_default_behaviour_applies_until_clear(fake):
    fake.set_default(Reply(content="Always this."), api_key="sk-good")
    for _ in range(2):
        assert json.loads(call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)[2])[
            "choices"][0]["message"]["content"] == "Always this."
    fake.clear()
    assert b"Hello from the fake upstream." in call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)[2]


def test_cut_stream_ends_without_done(fake):
    fake.plan(CutStream(3), CutStream(2))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**CHAT, "stream": True}), headers=OPENAI)
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    partial = info.value.partial
    assert len(sse_events(partial)) == 3 and b"[DONE]" not in partial
    conn.close()

    with pytest.raises(http.client.IncompleteRead) as info:
        call(fake, "POST", "/v1/messages", {**MESSAGE, "stream": True}, ANTHROPIC)
    assert b"message_stop" not in info.value.partial


def test_malformed_chunk_then_rest_of_stream(fake):
    fake.plan(MalformedChunk(2))
    raw = call(fake, "POST", "/v1/chat/completions", {**CHAT, "stream": True}, OPENAI)[2]
    events = sse_events(raw)
    assert events[2] == (None, "{not json") and events[-1] == (None, "[DONE]")


def test_reset_and_stall_and_prompt_stop():
    with FakeUpstream(api_keys={"sk-good"}) as fake:
        fake.plan(Reset())
        with pytest.raises(ConnectionError):
            call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)

        fake.set_default(Stall(60))
        errors = []

        def stalled():
            try:
                call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)
            except Exception as exc:  # the fake closes the connection when it stops
                errors.append(exc)

        threads = [threading.Thread(target=stalled) for _ in range(3)]
        for t in threads:
            t.start()
        fake.wait_for_requests(4)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    for t in threads:
        t.join(5)
    assert len(errors) == 3


def test_several_tool_calls_in_one_reply(fake):
    fake.plan(Reply(tool_call=[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": "{}"}]))
    status, _, raw = call(fake, "POST", "/v1/chat/completions", CHAT, OPENAI)
    message = json.loads(raw)["choices"][0]["message"]
    assert status == 200 and [c["function"]["name"] for c in message["tool_calls"]] == ["a", "b"]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"x": 1}
    fake.plan(Reply(tool_call=[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]))
    status, _, raw = call(fake, "POST", "/v1/chat/completions", dict(CHAT, stream=True), OPENAI)
    chunks = [json.loads(data) for _, data in sse_events(raw) if data != "[DONE]"]
    indices = {d["index"] for c in chunks if c.get("choices") for d in c["choices"][0]["delta"].get("tool_calls") or ()}
    assert status == 200 and indices == {0, 1}
