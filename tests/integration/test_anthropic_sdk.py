"""The official anthropic SDK, unmodified, against /anthropic on the real server (gunicorn + gevent).

Every behaviour runs against an Anthropic upstream (the body passes through with only the model
replaced) and an OpenAI-compatible upstream (translated both ways), sync and, for the main calls,
async. Assertions cover what the SDK hands back and what the fake upstream received.
"""
from __future__ import annotations

import asyncio
import json

import anthropic
import pytest
import requests

from tests.fakes.behaviours import Combine, Reply, Status, Stream
from tests.fakes.common import DEFAULT_TEXT, count_tokens
from tests.gateway_process import GatewayProcess, free_port
from tests.integration.conftest import gateway_config

ANTHROPIC = ("claude-3-5-haiku-latest", "claude-3-5-haiku-latest", "/v1/messages")  # no prefix: anthropic
OPENAI = ("openai/gpt-4o-mini", "gpt-4o-mini", "/v1/chat/completions")
UPSTREAMS = [pytest.param(ANTHROPIC, id="anthropic"), pytest.param(OPENAI, id="openai")]
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                                 "required": ["location"]}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
CLIENT_KEY = "sk-client-secret-never-upstream"


@pytest.fixture(scope="module")
def gw(fake):
    """The conftest providers plus two whose keys the upstream rejects (for 401)."""
    config = gateway_config(fake.url, free_port())
    config["providers"]["badant"] = {
        "keys": [{"name": "b", "value": "sk-wrong", "models": ["*"]}], "network_config": {"base_url": fake.url},
        "custom_provider_config": {"base_provider_type": "anthropic"}}
    config["providers"]["badoa"] = {
        "keys": [{"name": "b", "value": "sk-wrong", "models": ["*"]}], "network_config": {"base_url": fake.url},
        "custom_provider_config": {"base_provider_type": "openai"}}
    with GatewayProcess(config, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        yield server


@pytest.fixture
def client(gw):
    with anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def aclient(gw):
    return anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, timeout=30)


def upstream_request(fake, path):
    found = [r for r in fake.requests if r.path == path]
    assert found, [r.path for r in fake.requests]
    return found[-1]


def raw_events(gw, body, headers=None) -> tuple[requests.Response, list[tuple[str, dict]]]:
    reply = requests.post(gw.url + "/anthropic/v1/messages", json=body, timeout=30,
                          headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", **(headers or {})})
    events = []
    for block in reply.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return reply, events


# -- messages.create -------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_create_with_system_prompt(client, fake, upstream):
    model, upstream_model, path = upstream
    fake.plan(Reply(content="Bonjour."))
    message = client.messages.create(model=model, max_tokens=64, system="Answer in French.",
                                     messages=[{"role": "user", "content": "Say hello"}])
    assert isinstance(message, anthropic.types.Message)
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Bonjour."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == count_tokens("Answer in French.") + count_tokens("Say hello")
    assert message.usage.output_tokens == 1

    seen = upstream_request(fake, path)
    assert seen.model == upstream_model
    if path == ANTHROPIC[2]:
        assert seen.body["system"] == "Answer in French."
    else:
        assert seen.body["messages"][0] == {"role": "system", "content": "Answer in French."}
        assert seen.body["max_completion_tokens"] == 64


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_credentials_the_sdk_sends_never_reach_the_upstream(client, fake, upstream):
    model, _, path = upstream
    client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    seen = upstream_request(fake, path)
    assert CLIENT_KEY not in json.dumps(seen.headers)
    assert seen.api_key == ("sk-ant-1" if path == ANTHROPIC[2] else "sk-openai-1")


def test_async_create(gw, fake):
    async def run():
        async with aclient(gw) as sdk:
            return await asyncio.gather(*[
                sdk.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "Hello"}])
                for model in (ANTHROPIC[0], OPENAI[0])])
    for message in asyncio.run(run()):
        assert message.content[0].text == DEFAULT_TEXT and message.usage.output_tokens == count_tokens(DEFAULT_TEXT)


# -- streaming -------------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_messages_stream_helper(client, fake, upstream):
    model, _, _ = upstream
    text = "one two three four five"
    fake.plan(Combine(Reply(content=text), Stream(chunks=5)))
    with client.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "Count"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == text and len(pieces) == 5
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 1 and final.usage.output_tokens == 5


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_true_events(client, fake, upstream):
    model, _, _ = upstream
    events = list(client.messages.create(model=model, max_tokens=64, stream=True,
                                         messages=[{"role": "user", "content": "Hello"}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(kinds)
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == DEFAULT_TEXT
    assert events[-2].usage.output_tokens == count_tokens(DEFAULT_TEXT)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_raw_sse_usage_is_complete_and_there_is_no_done(gw, fake, upstream):
    model, _, _ = upstream
    reply, events = raw_events(gw, {"model": model, "max_tokens": 32, "stream": True,
                                    "messages": [{"role": "user", "content": "Hello there"}]})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in reply.text
    assert "ping" in [name for name, _ in events]
    for name, data in events:
        assert data["type"] == name
    start = events[0][1]["message"]["usage"]
    assert all(isinstance(start[k], int) for k in ("input_tokens", "output_tokens"))
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["usage"]["output_tokens"] == count_tokens(DEFAULT_TEXT)
    # Whatever the upstream reported at the start or the end, the SDK ends up with the input count.
    assert max(start["input_tokens"], delta["usage"].get("input_tokens") or 0) == 2
    if model == OPENAI[0]:  # OpenAI reports usage only at the end: message_delta carries it
        assert delta["usage"]["input_tokens"] == 2
    assert reply.headers["x-bifrost-provider"] == ("openai" if model == OPENAI[0] else "anthropic")
    assert "x-bifrost-overhead-ms" in reply.headers


def test_async_streams(gw, fake):
    async def run(model):
        async with aclient(gw) as sdk:
            async with sdk.messages.stream(model=model, max_tokens=32,
                                           messages=[{"role": "user", "content": "Hello"}]) as stream:
                text = "".join([piece async for piece in stream.text_stream])
            events = [e.type async for e in await sdk.messages.create(
                model=model, max_tokens=32, stream=True, messages=[{"role": "user", "content": "Hello"}])]
            return text, events
    for model in (ANTHROPIC[0], OPENAI[0]):
        text, events = asyncio.run(run(model))
        assert text == DEFAULT_TEXT and events[-1] == "message_stop"


# -- tools and images ----------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_tool_round_trip(client, fake, upstream, stream):
    model, _, path = upstream

    def ask(messages):
        if stream:
            with client.messages.stream(model=model, max_tokens=128, tools=[WEATHER_TOOL], messages=messages) as s:
                return s.get_final_message()
        return client.messages.create(model=model, max_tokens=128, tools=[WEATHER_TOOL], messages=messages)

    first = ask([QUESTION])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"location": "Paris"} and use.id

    fake.plan(Reply(content="It is sunny in Paris."))
    second = ask([QUESTION, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
    assert second.stop_reason == "end_turn" and second.content[0].text == "It is sunny in Paris."

    body = upstream_request(fake, path).body
    if path == ANTHROPIC[2]:
        assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}
    else:
        assert body["messages"][1]["tool_calls"][0]["id"] == use.id
        assert json.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"location": "Paris"}
        assert body["messages"][2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_image_by_url(client, fake, upstream):
    model, _, path = upstream
    url = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
    client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": url}}, {"type": "text", "text": "What is this?"}]}])
    content = upstream_request(fake, path).body["messages"][0]["content"]
    if path == ANTHROPIC[2]:
        assert content[0] == {"type": "image", "source": {"type": "url", "url": url}}
    else:
        assert content == [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]


# -- pass-through fidelity -------------------------------------------------------------------------

def test_anthropic_upstream_gets_the_body_as_sent(client, fake):
    """thinking, cache_control, top_k, service_tier and anthropic-beta are not the gateway's to touch."""
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    kwargs = dict(model="anthropic/claude-sonnet-4-5", max_tokens=2048, system=system,
                  thinking={"type": "enabled", "budget_tokens": 1024}, service_tier="auto",
                  metadata={"user_id": "u-1"}, messages=[{"role": "user", "content": "Hello"}])
    message = client.messages.create(**kwargs, extra_body={"top_k": 5},
                                     extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    # the reply is the upstream's own: its id, and usage fields the canonical form has no place for
    assert message.id.startswith("msg_01") and message.usage.service_tier == "standard"
    seen = upstream_request(fake, "/v1/messages")
    expected = {**kwargs, "top_k": 5, "model": "claude-sonnet-4-5"}
    assert seen.body == expected
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_unknown_fields_reach_the_anthropic_upstream(client, fake):
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model=ANTHROPIC[0], max_tokens=16, messages=[{"role": "user", "content": "hi"}],
                               extra_body={"brand_new_field": {"x": 1}})
    assert "brand_new_field: Extra inputs are not permitted" in str(raised.value)  # the upstream's own answer
    assert upstream_request(fake, "/v1/messages").body["brand_new_field"] == {"x": 1}


def test_model_provider_header_picks_the_provider(gw, fake):
    with anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key=CLIENT_KEY, max_retries=0,
                             default_headers={"x-model-provider": "openai"}) as sdk:
        message = sdk.messages.create(model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == DEFAULT_TEXT
    assert upstream_request(fake, OPENAI[2]).model == "gpt-4o-mini"


# -- count_tokens and models -----------------------------------------------------------------------

def test_count_tokens(client, fake):
    count = client.messages.count_tokens(model=ANTHROPIC[0], system="Be brief.",
                                         messages=[{"role": "user", "content": "How many tokens is this?"}])
    assert count.input_tokens == count_tokens("Be brief.") + count_tokens("How many tokens is this?")
    seen = upstream_request(fake, "/v1/messages/count_tokens")
    assert seen.model == ANTHROPIC[1] and seen.api_key == "sk-ant-1"


def test_count_tokens_on_gemini_is_geminis_own_count(client, fake):
    """Translated to a Gemini countTokens request: the count is the upstream's, not an estimate."""
    count = client.messages.count_tokens(model="gemini/gemini-2.5-flash", system="Be brief.",
                                         messages=[{"role": "user", "content": "How many tokens is this?"}])
    assert count.input_tokens == count_tokens("Be brief.") + count_tokens("How many tokens is this?")
    seen = upstream_request(fake, "/v1beta/models/gemini-2.5-flash:countTokens")
    inner = seen.body["generateContentRequest"]
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "How many tokens is this?"}]}]
    assert inner["systemInstruction"]["parts"] == [{"text": "Be brief."}]


def test_count_tokens_on_a_provider_without_it_is_a_clear_400(client, fake):
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.count_tokens(model=OPENAI[0], messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 400
    assert "count_tokens is not supported by openai provider" in str(raised.value)
    assert raised.value.body["error"]["type"] == "invalid_request_error"


def test_models_list(client, gw):
    ids = [model.id for model in client.models.list()]
    assert "anthropic/claude-sonnet-4-5" in ids and "openai/gpt-4o-mini" in ids

    async def run():
        async with aclient(gw) as sdk:
            return [model async for model in sdk.models.list()]
    models = asyncio.run(run())
    assert {m.id for m in models} == set(ids) and all(m.type == "model" and m.created_at for m in models)

    assert client.models.retrieve("claude-sonnet-4-5").id == "anthropic/claude-sonnet-4-5"
    assert client.models.retrieve("openai/gpt-4o-mini").id == "openai/gpt-4o-mini"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_400_from_the_gateway_or_the_upstream(client, fake, upstream):
    model, _, _ = upstream
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model=model, max_tokens=16, messages=[{"role": "system", "content": "no"}])
    assert raised.value.status_code == 400
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "invalid_request_error"
    assert "role" in raised.value.body["error"]["message"]


def test_400_names_the_bad_field(gw):
    reply = requests.post(gw.url + "/anthropic/v1/messages", json={"model": "claude-x",
                                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 400
    assert reply.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                       "message": "max_tokens: Field required"}}
    reply = requests.post(gw.url + "/anthropic/v1/messages", data=b"{not json")
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", ["badant/claude-3-5-haiku-latest", "badoa/gpt-4o-mini"], ids=["anthropic", "openai"])
def test_401_is_authentication_error(client, model):
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401
    assert raised.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("status,error_class,error_type", [
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
])
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_errors_sync_and_async(gw, client, fake, upstream, status, error_class, error_type):
    model, _, path = upstream
    fake.plan(*[Status(status)] * 3)
    with pytest.raises(error_class) as raised:
        client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == status and raised.value.body["error"]["type"] == error_type

    fake.plan(*[Status(status)] * 3)

    async def run():
        async with aclient(gw) as sdk:
            await sdk.messages.create(model=model, max_tokens=16, stream=True,
                                      messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(error_class) as raised:
        asyncio.run(run())
    assert raised.value.status_code == status


def test_529_is_overloaded_error(client, fake):
    fake.plan(*[Status(529)] * 3)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model=ANTHROPIC[0], max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 529 and raised.value.body["error"]["type"] == "overloaded_error"


# -- reasoning from an OpenAI-compatible upstream ------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_reported_reasoning_becomes_a_thinking_block(client, fake, stream):
    fake.plan(Reply(content="42", reasoning="Six times seven is forty two."))
    kwargs = dict(model=OPENAI[0], max_tokens=64, messages=[{"role": "user", "content": "6 x 7?"}])
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Six times seven is forty two." and message.content[1].text == "42"


def test_unknown_routes_answer_in_anthropic_shape(gw):
    for method, path in (("POST", "/anthropic/v1/complete"), ("GET", "/anthropic/v1/messages"),
                         ("GET", "/litellm/anthropic/v1/files")):
        reply = requests.request(method, gw.url + path, timeout=10)
        assert reply.status_code == 404, (path, reply.status_code)
        assert reply.json()["type"] == "error" and reply.json()["error"]["type"] == "not_found_error"


# -- the core's headers on /anthropic --------------------------------------------------------------

def test_key_pin_forwarded_headers_and_response_headers(client, fake):
    raw = client.messages.with_raw_response.create(
        model="groq/llama-3.3-70b", max_tokens=16, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-bf-api-key": "rl-b", "x-bf-eh-x-trace": "t-1", "x-request-id": "req-surfaces-1"})
    assert raw.parse().content[0].text == DEFAULT_TEXT
    assert raw.headers["x-bifrost-provider"] == "groq" and raw.headers["x-request-id"] == "req-surfaces-1"
    assert raw.headers["x-bifrost-request-type"] == "chat_completion"
    assert float(raw.headers["x-bifrost-overhead-ms"]) >= 0 and "x-bifrost-upstream-latency-ms" in raw.headers
    seen = upstream_request(fake, OPENAI[2])
    assert seen.api_key == "sk-rl-b"  # the pinned key, never the SDK's
    assert seen.headers["x-trace"] == "t-1"


# -- async: the rest of the set ----------------------------------------------------------------------

@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_async_tool_round_trip_image_and_errors(gw, fake, upstream):
    model, _, path = upstream
    bad = "badant/claude-3-5-haiku-latest" if path == ANTHROPIC[2] else "badoa/gpt-4o-mini"

    async def run():
        async with aclient(gw) as sdk:
            first = await sdk.messages.create(model=model, max_tokens=64, tools=[WEATHER_TOOL], messages=[QUESTION])
            [use] = [b for b in first.content if b.type == "tool_use"]
            second = await sdk.messages.create(model=model, max_tokens=64, tools=[WEATHER_TOOL], messages=[
                QUESTION, {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
            image = await sdk.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "text", "text": "What is it?"}]}])
            errors = []
            for kwargs in ({"model": model, "messages": [{"role": "system", "content": "x"}]},
                           {"model": bad, "messages": [{"role": "user", "content": "x"}]}):
                try:
                    await sdk.messages.create(max_tokens=16, **kwargs)
                except anthropic.APIStatusError as error:
                    errors.append(error)
            return use, second, image, errors

    use, second, image, errors = asyncio.run(run())
    assert use.input == {"location": "Paris"} and second.stop_reason == "end_turn"
    assert image.content[0].text == DEFAULT_TEXT
    assert [type(e) for e in errors] == [anthropic.BadRequestError, anthropic.AuthenticationError]
    assert [e.status_code for e in errors] == [400, 401]
