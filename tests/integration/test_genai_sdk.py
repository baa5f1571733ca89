"""The unmodified google-genai SDK against /genai on the real server, over Gemini, OpenAI and Anthropic upstreams.

The SDK (3.x) talks api_version v1 by default; v1beta is checked too. Its own API key must never
reach an upstream: the fake Gemini refuses an Authorization header and unknown keys, and every test
checks the recorded headers.
"""
from __future__ import annotations

import base64

import pytest
import requests
from google import genai
from google.genai import errors, types

from tests.fakes import Reply, Status
from tests.fakes.common import DEFAULT_TEXT
from tests.fakes.gemini import DIALECT as GEMINI_FAKE

SDK_KEY = "sdk-client-key-must-not-leak"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
UPSTREAMS = {
    # name: (model in the SDK call, dialect the fake saw, upstream path)
    "gemini": ("gemini-2.5-flash", "gemini", "/v1beta/models/gemini-2.5-flash:generateContent"),
    "openai": ("openai/gpt-4o-mini", "openai", "/v1/chat/completions"),
    "anthropic": ("anthropic/claude-haiku-4-5", "anthropic", "/v1/messages"),
}
WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Current weather for a city",
    parameters_json_schema={"type": "object", "properties": {"location": {"type": "string"}},
                            "required": ["location"]})


_clients: list = []  # a Client closes its HTTP client when collected, under the Models object still in use


def client_for(gateway, api_version: str | None = None, headers: dict | None = None) -> genai.Client:
    options = {"base_url": gateway.url + "/genai", "headers": headers or {}}
    if api_version:
        options["api_version"] = api_version
    client = genai.Client(api_key=SDK_KEY, http_options=options)
    _clients.append(client)
    return client


def assert_no_client_credentials(recorded) -> None:
    for request in recorded:
        assert SDK_KEY not in " ".join(request.headers.values()), request.headers
        assert "authorization" not in request.headers or request.dialect != "gemini"
        if request.dialect == "gemini":
            assert request.headers["x-goog-api-key"] == "gm-key-1"


@pytest.mark.parametrize("api_version", [None, "v1beta"], ids=["v1-default", "v1beta"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_generate_content(gateway, fake, upstream, api_version):
    model, dialect, path = UPSTREAMS[upstream]
    reply = client_for(gateway, api_version).models.generate_content(model=model, contents="Hello there")
    assert reply.text == DEFAULT_TEXT
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP
    usage = reply.usage_metadata
    assert usage.prompt_token_count == 2 and usage.candidates_token_count == 5 and usage.total_token_count == 7
    (request,) = fake.requests
    assert request.dialect == dialect and request.path == path
    assert_no_client_credentials(fake.requests)
    if upstream == "gemini":  # the reply went through whole: fields the gateway does not model survive
        assert reply.candidates[0].safety_ratings[0].category == types.HarmCategory.HARM_CATEGORY_HARASSMENT


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_generate_content_stream(gateway, fake, upstream):
    model, dialect, _ = UPSTREAMS[upstream]
    chunks = list(client_for(gateway).models.generate_content_stream(model=model, contents="Hello there"))
    assert len(chunks) >= 2
    assert "".join(c.text or "" for c in chunks) == DEFAULT_TEXT
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.prompt_token_count == 2 and last.usage_metadata.candidates_token_count == 5
    assert fake.requests[0].dialect == dialect
    if upstream == "gemini":
        assert fake.requests[0].path.endswith(":streamGenerateContent") and fake.requests[0].query == {"alt": "sse"}
    assert_no_client_credentials(fake.requests)


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_system_instruction(gateway, fake, upstream):
    model, _, _ = UPSTREAMS[upstream]
    config = types.GenerateContentConfig(system_instruction="You are a terse pirate.", temperature=0.3,
                                         max_output_tokens=64)
    reply = client_for(gateway).models.generate_content(model=model, contents="Hi", config=config)
    assert reply.text == DEFAULT_TEXT
    body = fake.requests[0].body
    if upstream == "gemini":
        assert body["systemInstruction"]["parts"] == [{"text": "You are a terse pirate."}]
        assert body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 64}
    elif upstream == "openai":
        assert body["messages"][0] == {"role": "system", "content": "You are a terse pirate."}
        assert body["temperature"] == 0.3 and body["max_tokens"] == 64
    else:
        assert body["system"] == "You are a terse pirate." and body["max_tokens"] == 64


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_inline_image(gateway, fake, upstream):
    model, _, _ = UPSTREAMS[upstream]
    contents = [types.Part.from_bytes(data=PNG, mime_type="image/png"), "What is in this image?"]
    reply = client_for(gateway).models.generate_content(model=model, contents=contents)
    assert reply.text == DEFAULT_TEXT
    body = fake.requests[0].body
    if upstream == "gemini":
        inline = body["contents"][0]["parts"][0]["inlineData"]
        assert inline.get("mimeType", inline.get("mime_type")) == "image/png"  # the SDK sends mime_type
        assert base64.urlsafe_b64decode(inline["data"]) == PNG
    elif upstream == "openai":
        url = body["messages"][0]["content"][0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1], validate=True) == PNG  # the standard alphabet
    else:
        source = body["messages"][0]["content"][0]["source"]
        assert source["type"] == "base64" and source["media_type"] == "image/png"
        assert base64.b64decode(source["data"], validate=True) == PNG


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream", ["gemini-3", "openai", "anthropic"])
def test_function_calling_round_trip(gateway, fake, upstream, stream):
    model = {"gemini-3": "gemini-3-pro-preview", "openai": "openai/gpt-4o-mini",
             "anthropic": "anthropic/claude-haiku-4-5"}[upstream]
    client = client_for(gateway)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])],
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=[question], config=config))
        call_content = next(c.candidates[0].content for c in chunks if c.function_calls)
        calls = [p.function_call for p in call_content.parts if p.function_call]
    else:
        first = client.models.generate_content(model=model, contents=[question], config=config)
        assert first.candidates[0].finish_reason == types.FinishReason.STOP  # Gemini's word for a call
        call_content = first.candidates[0].content
        calls = first.function_calls
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"location": "Paris"})]
    signature = next((p.thought_signature for p in call_content.parts if p.function_call), None)
    if upstream == "gemini-3":
        assert signature and signature in GEMINI_FAKE.issued  # what the upstream issued, as bytes

    answer = types.Part.from_function_response(name="get_weather", response={"result": "sunny, 21C"})
    second = client.models.generate_content(
        model=model, config=config,
        contents=[question, call_content, types.Content(role="user", parts=[answer])])
    assert second.text == DEFAULT_TEXT
    body = fake.requests[-1].body
    if upstream == "gemini-3":
        # the fake refuses a missing or altered signature; check it arrived as it was issued
        sent = body["contents"][1]["parts"][0]["thoughtSignature"]
        assert base64.urlsafe_b64decode(sent) == signature
        assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"
    elif upstream == "openai":
        call_id = body["messages"][1]["tool_calls"][0]["id"]
        assert body["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"}
    else:
        tool_use = body["messages"][1]["content"][0]
        result = body["messages"][2]["content"][0]
        assert tool_use["type"] == "tool_use" and result["tool_use_id"] == tool_use["id"]
        assert result["content"] == "sunny, 21C"
    assert_no_client_credentials(fake.requests)


def test_count_tokens_on_gemini(gateway, fake):
    reply = client_for(gateway).models.count_tokens(model="gemini-2.5-flash", contents="The quick brown fox")
    assert reply.total_tokens == 4
    (request,) = fake.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert request.body == {"contents": [{"parts": [{"text": "The quick brown fox"}], "role": "user"}]}


def test_count_tokens_on_anthropic_is_anthropics_own_count(gateway, fake):
    """Translated to Anthropic's /v1/messages/count_tokens (which refuses max_tokens and the like)."""
    reply = client_for(gateway).models.count_tokens(model="anthropic/claude-haiku-4-5",
                                                    contents="The quick brown fox")
    assert reply.total_tokens == 4
    (request,) = fake.requests
    assert request.path == "/v1/messages/count_tokens" and request.dialect == "anthropic"
    assert request.body == {"model": "claude-haiku-4-5",
                            "messages": [{"role": "user",
                                          "content": [{"type": "text", "text": "The quick brown fox"}]}]}
    assert_no_client_credentials(fake.requests)


def test_count_tokens_on_a_provider_without_it_is_a_google_client_error(gateway, fake):
    with pytest.raises(errors.ClientError) as info:
        client_for(gateway).models.count_tokens(model="openai/gpt-4o-mini", contents="hi")
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert "count_tokens is not supported" in info.value.message
    assert fake.requests == []


@pytest.mark.parametrize("upstream", ["gemini", "openai"])
def test_embed_content(gateway, fake, upstream):
    model = "gemini-embedding-001" if upstream == "gemini" else "openai/text-embedding-3-small"
    reply = client_for(gateway).models.embed_content(
        model=model, contents=["What is the meaning of life?", "How do I bake a cake?"],
        config=types.EmbedContentConfig(output_dimensionality=8))
    assert [len(e.values) for e in reply.embeddings] == [8, 8]
    assert reply.embeddings[0].values != reply.embeddings[1].values
    (request,) = fake.requests
    if upstream == "gemini":
        assert request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        assert [r["outputDimensionality"] for r in request.body["requests"]] == [8, 8]
    else:
        assert request.path == "/v1/embeddings"
        assert request.body["input"] == ["What is the meaning of life?", "How do I bake a cake?"]
        assert request.body["dimensions"] == 8 and request.body["model"] == "text-embedding-3-small"


def test_models_list_and_get(gateway, fake):
    client = client_for(gateway)
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names and "models/openai/gpt-4o-mini" in names
    flash = next(m for m in client.models.list() if m.name == "models/gemini-2.5-flash")
    assert flash.input_token_limit == 1048576 and "generateContent" in flash.supported_actions
    assert client.models.get(model="gemini-2.5-flash").display_name == "Gemini 2.5 Flash"
    assert client.models.get(model="openai/gpt-4o-mini").name == "models/openai/gpt-4o-mini"
    with pytest.raises(errors.ClientError) as info:
        client.models.get(model="gemini-no-such-model")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


ERROR_CASES = {429: (errors.ClientError, "RESOURCE_EXHAUSTED"), 500: (errors.ServerError, "INTERNAL")}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", list(ERROR_CASES))
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_upstream_errors_reach_the_sdk_as_its_own_classes(gateway, fake, upstream, status, stream):
    model, _, _ = UPSTREAMS[upstream]
    fake.plan(*[Status(status, f"upstream says {status}")] * 3, model=model.split("/")[-1])  # every retry fails
    exception, status_name = ERROR_CASES[status]
    client = client_for(gateway)
    with pytest.raises(exception) as info:
        if stream:
            list(client.models.generate_content_stream(model=model, contents="Hello"))
        else:
            client.models.generate_content(model=model, contents="Hello")
    assert info.value.code == status and info.value.status == status_name
    assert info.value.message == f"upstream says {status}"
    assert len(fake.requests) == 3  # max_retries 2: the gateway retried before giving up


def test_fallback_header_moves_to_another_provider(gateway, fake):
    fake.plan(*[Status(503)] * 3, model="gemini-2.5-flash")
    client = client_for(gateway, headers={"x-bf-fallbacks": "openai/gpt-4o-mini, anthropic/claude-haiku-4-5"})
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="Hello")
    assert reply.text == DEFAULT_TEXT
    assert [r.dialect for r in fake.requests] == ["gemini"] * 3 + ["openai"]
    assert reply.sdk_http_response.headers["x-bifrost-provider"] == "openai"
    assert reply.sdk_http_response.headers["x-bifrost-fallback-index"] == "1"


def test_pass_through_keeps_fields_the_gateway_does_not_know(gateway, fake):
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello there friend", "mediaResolution": {"level": "MEDIA_RESOLUTION_LOW"}}]}],
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "cachedContent": "cachedContents/abc123",
            "generationConfig": {"responseModalities": ["TEXT"], "topK": 3, "enableEnhancedCivicAnswers": True}}
    # the fake Gemini answers 401 to any Authorization header: both client credentials must stay here
    reply = requests.post(gateway.url + "/genai/v1beta/models/gemini-2.5-flash:generateContent", json=body,
                          headers={"x-goog-api-key": SDK_KEY, "Authorization": f"Bearer {SDK_KEY}"}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert fake.requests[0].body == body  # byte for byte what the client sent
    out = reply.json()
    assert out["usageMetadata"]["cachedContentTokenCount"] == 2  # the upstream's own reply, whole
    assert out["candidates"][0]["safetyRatings"]
    assert_no_client_credentials(fake.requests)


@pytest.mark.parametrize("path", ["openai/gpt-4o-mini", "openai%2Fgpt-4o-mini"], ids=["raw", "percent-encoded"])
def test_provider_in_the_path_raw_or_encoded(gateway, fake, path):
    reply = requests.post(f"{gateway.url}/genai/v1beta/models/{path}:generateContent",
                          json={"contents": [{"parts": [{"text": "Hi"}]}]}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["candidates"][0]["content"]["parts"][0]["text"] == DEFAULT_TEXT
    assert fake.requests[0].body["model"] == "gpt-4o-mini"


def test_x_model_provider_header_names_the_default_provider(gateway, fake):
    reply = requests.post(f"{gateway.url}/genai/v1/models/claude-haiku-4-5:generateContent",
                          json={"contents": [{"parts": [{"text": "Hi"}]}]},
                          headers={"x-model-provider": "anthropic"}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert fake.requests[0].dialect == "anthropic"


@pytest.mark.parametrize("model, status, fragment", [
    ("openai/gpt-4o-mini", 400, "contents is required"),       # the gateway's own check, before any upstream
    ("gemini-2.5-flash", 400, "contents is not specified"),      # Gemini's own 400, passed through
    ("nosuch/model", 400, None),
])
def test_bad_requests_get_googles_error_shape(gateway, fake, model, status, fragment):
    reply = requests.post(f"{gateway.url}/genai/v1beta/models/{model}:generateContent", json={"contents": []},
                          timeout=10)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == status and error["status"] == "INVALID_ARGUMENT"
    if fragment:
        assert fragment in error["message"]


def test_unknown_genai_routes_and_methods_are_google_404s(gateway):
    for method, path in [("post", "/genai/v1beta/models/gemini-2.5-flash:predict"),
                         ("get", "/genai/upload/v1beta/files")]:
        reply = getattr(requests, method)(gateway.url + path, timeout=10)
        assert reply.status_code == 404
        assert reply.json()["error"]["status"] == "NOT_FOUND"


def test_reply_override_reaches_the_sdk(gateway, fake):
    fake.plan(Reply(content="Bonjour", finish_reason="length"))
    reply = client_for(gateway).models.generate_content(model="openai/gpt-4o-mini", contents="Hi")
    assert reply.text == "Bonjour"
    assert reply.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_async_client(gateway, fake, upstream):
    import asyncio

    model, dialect, _ = UPSTREAMS[upstream]

    async def run():
        client = client_for(gateway).aio
        reply = await client.models.generate_content(model=model, contents="Hello there")
        chunks = [c async for c in await client.models.generate_content_stream(model=model, contents="Hello there")]
        return reply, chunks

    reply, chunks = asyncio.run(run())
    assert reply.text == DEFAULT_TEXT
    assert "".join(c.text or "" for c in chunks) == DEFAULT_TEXT
    assert chunks[-1].usage_metadata.total_token_count == 7
    assert [r.dialect for r in fake.requests] == [dialect, dialect]
