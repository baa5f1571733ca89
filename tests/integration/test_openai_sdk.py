"""The official openai Python SDK, unmodified, as a client of the gateway's unified API.

Every test runs the SDK against the real server (gunicorn + gevent) in front of the fake upstream,
once with an OpenAI-compatible upstream (pass-through) and once with the Anthropic upstream
(translated both ways), and checks both what the SDK hands the caller and what the upstream got.
"""
from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.fakes.behaviours import Combine, CutStream, Reply, Status, Stream
from tests.fakes.common import DEFAULT_TEXT, count_tokens

# model as the client names it, model as the upstream sees it, upstream path
OPENAI = ("openai/gpt-4o-mini", "gpt-4o-mini", "/v1/chat/completions")
ANTHROPIC = ("anthropic/claude-3-5-haiku-latest", "claude-3-5-haiku-latest", "/v1/messages")
UPSTREAMS = [pytest.param(OPENAI, id="openai"), pytest.param(ANTHROPIC, id="anthropic")]

# gateway_config in conftest.py: max_retries 2 for openai and anthropic, so 3 attempts per target
ATTEMPTS = 3

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
WEATHER_QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture
def client(gateway):
    with OpenAI(base_url=gateway.url + "/v1", api_key="anything", max_retries=0, timeout=30) as sdk:
        yield sdk


def upstream_requests(fake, path):
    return [r for r in fake.requests if r.path == path]


def assert_usage(usage, completion_tokens=None):
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if completion_tokens is not None:
        assert usage.completion_tokens == completion_tokens


# -- chat ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_chat_typed_response(client, fake, upstream):
    model, upstream_model, path = upstream
    text = "Paris is the capital of France."
    fake.plan(Reply(content=text))
    reply = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ], max_tokens=100)

    assert isinstance(reply, ChatCompletion)
    assert reply.object == "chat.completion" and reply.id
    [choice] = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == text
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    assert_usage(reply.usage, completion_tokens=count_tokens(text))
    assert reply.model_extra["extra_fields"]["provider"] == model.split("/")[0]

    [seen] = fake.requests
    assert seen.path == path and seen.model == upstream_model
    assert seen.body["max_tokens"] == 100


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_chat_stream_reassembles_content_and_ends_with_usage(client, fake, upstream):
    model, upstream_model, path = upstream
    text = "Once upon a time there was a gateway"
    fake.plan(Combine(Reply(content=text), Stream(chunks=4)))
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell a story"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)

    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == text
    assert len(pieces) == 4                       # streamed piece by piece, not buffered into one
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    # usage is given once, on the last chunk (OpenAI-style upstreams: a chunk with no choices; the
    # Anthropic translation puts it on the finish_reason chunk, as Bifrost does)
    assert [i for i, c in enumerate(chunks) if c.usage] == [len(chunks) - 1]
    assert_usage(chunks[-1].usage, completion_tokens=count_tokens(text))

    [seen] = fake.requests
    assert seen.path == path and seen.body["stream"] is True
    if path == OPENAI[2]:
        assert seen.body["stream_options"]["include_usage"] is True


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_without_include_usage_keeps_a_choice_in_every_chunk(client, fake, upstream):
    """OpenAI sends a chunk with empty `choices` only when the client asked for
    stream_options.include_usage; the SDK's canonical loop `chunk.choices[0].delta.content`
    relies on that.  The gateway asks the upstream for usage for its own accounting, and must
    not hand the client a chunk it did not ask for."""
    model, _, _ = upstream
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}],
                                            stream=True)
    chunks = list(stream)
    assert [len(c.choices) for c in chunks] == [1] * len(chunks), "a chunk without choices that was not asked for"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == DEFAULT_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"


# -- tools --------------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_tool_call_then_tool_result_round_trip(client, fake, upstream):
    model, _, path = upstream
    first = client.chat.completions.create(model=model, messages=[WEATHER_QUESTION], tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    message = first.choices[0].message
    [call] = message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert_usage(first.usage)

    fake.plan(Reply(content="It is 18C and sunny in Paris."))
    second = client.chat.completions.create(model=model, tools=[WEATHER_TOOL], messages=[
        WEATHER_QUESTION,
        message,                                  # the SDK's own message object, as users append it
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "It is 18C and sunny in Paris."
    assert not second.choices[0].message.tool_calls

    seen = upstream_requests(fake, path)
    assert len(seen) == 2
    turn = seen[1].body["messages"]
    if path == ANTHROPIC[2]:
        assert [m["role"] for m in turn] == ["user", "assistant", "user"]
        [tool_use] = [b for b in turn[1]["content"] if b["type"] == "tool_use"]
        assert tool_use["id"] == call.id and tool_use["name"] == "get_weather"
        assert tool_use["input"] == {"location": "Paris"}
        [result] = turn[2]["content"]
        assert result["type"] == "tool_result" and result["tool_use_id"] == call.id
        result_text = result["content"] if isinstance(result["content"], str) else result["content"][0]["text"]
        assert result_text == "18C and sunny"
    else:
        assert [m["role"] for m in turn] == ["user", "assistant", "tool"]
        assert turn[1]["tool_calls"][0]["id"] == call.id
        assert turn[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.function.arguments}
        assert turn[2] == {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_tool_call_streaming_deltas_assemble(client, fake, upstream):
    model, _, _ = upstream
    arguments = {"location": "Paris", "unit": "celsius"}
    fake.plan(Combine(Reply(tool_call={"name": "get_weather", "arguments": arguments}), Stream(chunks=5)))
    stream = client.chat.completions.create(model=model, messages=[WEATHER_QUESTION], tools=[WEATHER_TOOL],
                                            stream=True, stream_options={"include_usage": True})
    calls: dict[int, dict] = {}
    argument_deltas = 0
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            if delta.id:
                assert call["id"] is None, "a tool call's id is sent once"
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                argument_deltas += 1

    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == arguments
    assert argument_deltas > 1                    # the arguments arrived in pieces
    assert finish == "tool_calls"
    assert_usage(usage)


# -- text completions ---------------------------------------------------------------------------

TEXT_UPSTREAMS = [
    pytest.param(("openai/gpt-3.5-turbo-instruct", "gpt-3.5-turbo-instruct", "/v1/completions"), id="openai"),
    # Anthropic has no text completions: the gateway asks its chat API with the prompt as the user turn
    pytest.param(ANTHROPIC, id="anthropic"),
]


def prompt_seen(body):
    if "prompt" in body:
        return body["prompt"]
    [turn] = body["messages"]
    return turn["content"] if isinstance(turn["content"], str) else turn["content"][0]["text"]


@pytest.mark.parametrize("upstream", TEXT_UPSTREAMS)
def test_text_completion(client, fake, upstream):
    model, upstream_model, path = upstream
    fake.plan(Reply(content="a gateway in front of every model."))
    reply = client.completions.create(model=model, prompt="The future of AI is", max_tokens=20)
    assert isinstance(reply, Completion)
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "a gateway in front of every model."
    assert reply.choices[0].finish_reason == "stop"
    assert_usage(reply.usage, completion_tokens=7)
    [seen] = fake.requests
    assert seen.path == path and seen.model == upstream_model
    assert prompt_seen(seen.body) == "The future of AI is"
    assert seen.body["max_tokens"] == 20


@pytest.mark.parametrize("upstream", TEXT_UPSTREAMS)
def test_text_completion_stream(client, fake, upstream):
    model, _, path = upstream
    fake.plan(Combine(Reply(content="one two three four five six"), Stream(chunks=3)))
    stream = client.completions.create(model=model, prompt="Count", stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks and all(isinstance(c, Completion) for c in chunks)
    assert all(c.object == "text_completion" for c in chunks)
    pieces = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert "".join(pieces) == "one two three four five six"
    assert len(pieces) == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert [i for i, c in enumerate(chunks) if c.usage] == [len(chunks) - 1]
    assert_usage(chunks[-1].usage, completion_tokens=6)
    [seen] = fake.requests
    assert seen.path == path and seen.body["stream"] is True
    assert prompt_seen(seen.body) == "Count"


# -- fallbacks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("primary,fallback", [
    pytest.param(OPENAI, ANTHROPIC, id="openai-to-anthropic"),
    pytest.param(ANTHROPIC, OPENAI, id="anthropic-to-openai"),
])
def test_fallbacks_in_extra_body(client, fake, primary, fallback):
    fake.set_default(Status(500, "primary is down"), model=primary[1])
    fake.plan(Reply(content="answered by the fallback"), model=fallback[1])
    raw = client.chat.completions.with_raw_response.create(
        model=primary[0], messages=[{"role": "user", "content": "Hello!"}], extra_body={"fallbacks": [fallback[0]]})
    reply = raw.parse()

    assert reply.choices[0].message.content == "answered by the fallback"
    assert reply.model_extra["extra_fields"]["provider"] == fallback[0].split("/")[0]
    assert raw.headers["x-bifrost-fallback-index"] == "1"
    assert raw.headers["x-bifrost-provider"] == fallback[0].split("/")[0]
    assert [r.path for r in fake.requests] == [primary[2]] * ATTEMPTS + [fallback[2]]
    assert "fallbacks" not in fake.requests[-1].body      # a routing field, not sent upstream


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_fallbacks_in_extra_body_while_streaming(client, fake, upstream):
    model, upstream_model, path = upstream
    other = ANTHROPIC if upstream is OPENAI else OPENAI
    fake.set_default(Status(503, "primary unavailable"), model=upstream_model)
    fake.plan(Reply(content="streamed by the fallback"), model=other[1])
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}],
                                            stream=True, extra_body={"fallbacks": [other[0]]})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed by the fallback"
    assert [r.path for r in fake.requests] == [path] * ATTEMPTS + [other[2]]


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("status,exception,retried", [
    pytest.param(400, openai.BadRequestError, False, id="400"),
    pytest.param(401, openai.AuthenticationError, False, id="401"),
    pytest.param(403, openai.PermissionDeniedError, False, id="403"),
    pytest.param(404, openai.NotFoundError, False, id="404"),
    pytest.param(429, openai.RateLimitError, True, id="429"),
    pytest.param(500, openai.InternalServerError, True, id="500"),
])
def test_upstream_error_becomes_the_sdk_exception(client, fake, upstream, status, exception, retried):
    model, upstream_model, _ = upstream
    message = f"upstream says no ({status}): check 'temperature'"
    fake.set_default(Status(status, message), model=upstream_model)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}])
    error = caught.value
    assert error.status_code == status
    assert message in error.message
    assert isinstance(error.body, dict) and error.body["message"] == message
    assert len(fake.requests) == (ATTEMPTS if retried else 1)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_error_before_first_byte_of_a_stream_is_raised_by_create(client, fake, upstream):
    model, upstream_model, _ = upstream
    fake.plan(Status(400, "messages: bad stream request"), model=upstream_model)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}], stream=True)
    assert caught.value.status_code == 400
    assert "messages: bad stream request" in caught.value.message


@pytest.mark.parametrize("reset", [pytest.param(False, id="fin"), pytest.param(True, id="rst")])
@pytest.mark.parametrize("upstream,cut_after,before_cut", [
    # openai events: role chunk, "Once", " upon", ... -> 3 events carry "Once upon"
    pytest.param(OPENAI, 3, "Once upon", id="openai"),
    # anthropic events: message_start, content_block_start, ping, "Once", " upon", ... -> 5 carry "Once upon"
    pytest.param(ANTHROPIC, 5, "Once upon", id="anthropic"),
])
def test_mid_stream_failure_raises_while_iterating(client, fake, upstream, cut_after, before_cut, reset):
    """The gateway turns a cut upstream stream into a `data: {"error": ...}` event; the SDK's
    Stream.__stream__ (openai/_streaming.py) raises APIError for a data event with an "error" key."""
    model, _, _ = upstream
    fake.plan(Combine(Reply(content="Once upon a time in a land far away"), CutStream(cut_after, reset=reset)))
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell a story"}],
                                            stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    error = caught.value
    assert not isinstance(error, openai.APIStatusError)   # raised from the stream, the status was 200
    assert "".join(received) == before_cut                # what came before the cut reached the caller
    assert isinstance(error.body, dict) and error.body["message"] == error.message
    assert error.type == "upstream_stream_error" and "upstream stream" in error.message
    assert len(fake.requests) == 1                        # no retry once the client has bytes
