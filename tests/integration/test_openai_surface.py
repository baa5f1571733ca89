"""The openai SDK, unmodified, at /openai (with and without /v1), AzureOpenAI at /openai, and the
framework prefixes (/litellm, /langchain, /pydanticai) with their OpenAI and Anthropic routes.

Against the real server and the fake upstreams; each test checks the SDK's answer and the request
the upstream received.
"""
from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests
from openai.types.chat import ChatCompletion

from tests.fakes.behaviours import Combine, CutStream, ErrorEvent, Reply, Status, Stream
from tests.fakes.common import DEFAULT_TEXT, count_tokens

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                                          "required": ["location"]}}}
HELLO = [{"role": "user", "content": "Hello!"}]
BASES = ["/openai", "/openai/v1", "/litellm", "/litellm/v1", "/langchain/v1", "/pydanticai"]


def sdk(gateway, base="/openai", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + base, api_key="sk-client-secret", max_retries=0, timeout=30, **kwargs)


@pytest.mark.parametrize("base", BASES)
def test_chat_on_every_openai_base(gateway, fake, base):
    """A model without a provider prefix is openai's; the SDK's key stays with the client."""
    with sdk(gateway, base) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert isinstance(reply, ChatCompletion) and reply.choices[0].message.content == DEFAULT_TEXT
    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions" and seen.model == "gpt-4o-mini"
    assert seen.api_key == "sk-openai-1" and "sk-client-secret" not in json.dumps(seen.headers)


@pytest.mark.parametrize("model,path,upstream_model", [
    ("anthropic/claude-haiku-4-5", "/v1/messages", "claude-haiku-4-5"),
    ("openrouter-like/gpt-4o-mini", "/v1/chat/completions", "openrouter-like/gpt-4o-mini"),
], ids=["known-prefix-translated", "unknown-prefix-is-model-name"])
def test_provider_prefix(gateway, fake, model, path, upstream_model):
    with sdk(gateway) as client:
        reply = client.chat.completions.create(model=model, messages=HELLO)
    assert reply.choices[0].message.content == DEFAULT_TEXT
    assert fake.requests[-1].path == path and fake.requests[-1].model == upstream_model


def test_model_provider_header(gateway, fake):
    with sdk(gateway, default_headers={"x-model-provider": "anthropic"}) as client:
        reply = client.chat.completions.create(model="claude-haiku-4-5", messages=HELLO)
    assert reply.model_extra["extra_fields"]["provider"] == "anthropic"
    assert fake.requests[-1].path == "/v1/messages"


def test_stream_with_usage_and_overhead_headers(gateway, fake):
    text = "a b c d"
    fake.plan(Combine(Reply(content=text), Stream(chunks=4)))
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True})
        chunks = list(raw.parse())
    assert raw.headers["x-bifrost-provider"] == "openai" and "x-bifrost-overhead-ms" in raw.headers
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == count_tokens(text)


def test_tools(gateway, fake):
    with sdk(gateway, "/openai/v1") as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    [call] = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"location": "Paris"}


@pytest.mark.parametrize("base", ["/openai", "/openai/v1", "/pydanticai"])
def test_models_list(gateway, base):
    with sdk(gateway, base) as client:
        ids = [m.id for m in client.models.list()]
    assert "openai/gpt-4o-mini" in ids and "anthropic/claude-haiku-4-5" in ids


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("model,path", [
    ("text-embedding-3-small", "/v1/embeddings"),
    ("gemini/gemini-embedding-001", "/v1beta/models/gemini-embedding-001:batchEmbedContents"),
], ids=["default-openai", "gemini"])
def test_embeddings_on_every_openai_base(gateway, fake, base, model, path):
    """A model without a provider prefix is openai's here too; the SDK's default base64 is decoded by it."""
    with sdk(gateway, base) as client:
        reply = client.embeddings.create(model=model, input="Hello there", dimensions=4)
    assert len(reply.data) == 1 and len(reply.data[0].embedding) == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens
    [seen] = fake.requests
    assert seen.path == path and "sk-client-secret" not in json.dumps(seen.headers)


def test_embeddings_bad_input_names_the_field(gateway, fake):
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="text-embedding-3-small", input=[])
    assert raised.value.body["param"] == "input" and fake.requests == []


def test_text_completion(gateway, fake):
    with sdk(gateway) as client:
        reply = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert reply.choices[0].text == DEFAULT_TEXT
    assert fake.requests[-1].path == "/v1/completions"
    for path in ("/openai/v1/text/completions", "/openai/text/completions", "/langchain/completions"):
        reply = requests.post(gateway.url + path, json={"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"})
        assert reply.status_code == 200 and reply.json()["choices"][0]["text"] == DEFAULT_TEXT, path


def test_fallbacks_in_the_body_and_in_the_header(gateway, fake):
    fake.plan(*[Status(500)] * 3, model="m-down")
    with sdk(gateway) as client:
        reply = client.chat.completions.create(model="m-down", messages=HELLO,
                                               extra_body={"fallbacks": ["anthropic/claude-haiku-4-5"]})
    assert reply.model_extra["extra_fields"]["provider"] == "anthropic"
    fake.clear()
    fake.plan(*[Status(500)] * 3, model="m-down")
    with sdk(gateway, default_headers={"x-bf-fallbacks": "anthropic/claude-haiku-4-5"}) as client:
        raw = client.chat.completions.with_raw_response.create(model="m-down", messages=HELLO)
    assert raw.headers["x-bifrost-fallback-index"] == "1" and raw.parse().choices[0].message.content == DEFAULT_TEXT


def test_errors_are_bifrost_errors_with_the_status(gateway, fake):
    fake.plan(*[Status(429)] * 3)
    with sdk(gateway) as client:
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert raised.value.status_code == 429 and raised.value.body["message"]


@pytest.mark.parametrize("failure", [CutStream(4), ErrorEvent(4)], ids=["cut", "error_event"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "anthropic/claude-haiku-4-5"], ids=["openai", "anthropic"])
def test_stream_failing_after_the_first_byte_ends_with_an_error_and_no_done(gateway, fake, model, failure):
    fake.plan((Stream(chunks=6), failure))
    reply = requests.post(gateway.url + "/openai/v1/chat/completions", timeout=30,
                          json={"model": model, "messages": HELLO, "stream": True})
    assert reply.status_code == 200
    frames = [block[6:] for block in reply.text.split("\n\n") if block.startswith("data: ")]
    assert frames[-1] != "[DONE]" and "[DONE]" not in frames
    last = json.loads(frames[-1])
    assert last["error"]["message"] and last["status_code"] >= 500
    assert len(fake.requests) == 1


# -- AzureOpenAI ---------------------------------------------------------------------------------

def azure(gateway) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=gateway.url, api_key="azure-client-key", api_version="2024-10-21",
                              max_retries=0, timeout=30)


@pytest.mark.parametrize("deployment,path,provider", [
    ("gpt-4o-mini", "/v1/chat/completions", "openai"),
    ("azure/gpt-4o", "/openai/deployments/gpt-4o-prod/chat/completions", "azure"),
    ("anthropic/claude-haiku-4-5", "/v1/messages", "anthropic"),
], ids=["plain", "azure", "anthropic"])
def test_azure_client_deployment_is_read_like_a_model(gateway, fake, deployment, path, provider):
    with azure(gateway) as client:
        reply = client.chat.completions.create(model=deployment, messages=HELLO)
    assert reply.choices[0].message.content == DEFAULT_TEXT
    assert reply.model_extra["extra_fields"]["provider"] == provider
    seen = fake.requests[-1]
    assert seen.path == path and "azure-client-key" not in json.dumps(seen.headers)


def test_azure_client_stream_and_completions(gateway, fake):
    with azure(gateway) as client:
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
        text = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi").choices[0].text
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert text == DEFAULT_TEXT and fake.requests[-1].path == "/v1/completions"


@pytest.mark.parametrize("deployment,path", [
    ("text-embedding-3-small", "/v1/embeddings"),
    ("azure/text-embedding-3-small", "/openai/deployments/text-embedding-3-small-eu/embeddings"),
    ("gemini/gemini-embedding-001", "/v1beta/models/gemini-embedding-001:batchEmbedContents"),
], ids=["plain", "azure", "gemini"])
def test_azure_client_embeddings(gateway, fake, deployment, path):
    with azure(gateway) as client:
        reply = client.embeddings.create(model=deployment, input=["one", "two"], dimensions=8)
    assert [len(d.embedding) for d in reply.data] == [8, 8] and [d.index for d in reply.data] == [0, 1]
    seen = fake.requests[-1]
    assert seen.path == path and "azure-client-key" not in json.dumps(seen.headers)


def test_azure_unknown_operation_is_404(gateway):
    reply = requests.post(gateway.url + "/openai/deployments/gpt-4o/audio/whatever?api-version=1", json={})
    assert reply.status_code == 404


# -- framework prefixes: the Anthropic routes --------------------------------------------------------

@pytest.mark.parametrize("prefix", ["litellm", "langchain", "pydanticai"])
def test_framework_prefix_anthropic_routes(gateway, fake, prefix):
    with anthropic.Anthropic(base_url=f"{gateway.url}/{prefix}/anthropic", api_key="c", max_retries=0) as client:
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
        translated = client.messages.create(model="openai/gpt-4o-mini", max_tokens=16, messages=HELLO)
        ids = [m.id for m in client.models.list()]
        with pytest.raises(anthropic.RateLimitError):
            fake.plan(*[Status(429)] * 3)
            client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=HELLO)
    assert message.content[0].text == DEFAULT_TEXT and translated.content[0].text == DEFAULT_TEXT
    assert "openai/gpt-4o-mini" in ids
