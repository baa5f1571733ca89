"""The translation matrix: every ingress dialect x every upstream dialect x {JSON, stream} x feature.

Each ingress is an official SDK, unmodified, pointed at its drop-in surface of the real
gunicorn server; each upstream is the fake provider of that dialect. A cell asks for one
feature (plain text, a tool call, an image input, usage) and checks what the SDK hands the
caller AND what the upstream received. The error cells send an upstream 429 / 500 on every
attempt and expect the SDK's own exception class with that status.

A dialect is one ``Ingress`` subclass in INGRESSES and one ``Upstream`` in UPSTREAMS; every
cell is generated for each pair (OpenAI, Anthropic and Gemini today: 3 x 3 x 2 modes).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.behaviours import Combine, Reply, Status, Stream
from tests.fakes.common import count_tokens

TEXT = "The quick brown fox jumps over the lazy dog"
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4c50000000049454e44ae426082"
)).decode()
WEATHER_SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
ATTEMPTS = 3  # conftest: max_retries 2 on openai, anthropic and gemini


# -- upstreams (what the fake provider saw) ----------------------------------------------------------

@dataclass(frozen=True)
class Upstream:
    name: str
    model: str  # the model string a client sends to reach it
    path: str  # where the fake received the request (a prefix: Gemini's method follows the model)

    def image_data(self, body: dict) -> list[str]:
        raise NotImplementedError


class OpenAIUpstream(Upstream):
    def image_data(self, body):
        found = []
        for message in body["messages"]:
            for part in message["content"] if isinstance(message.get("content"), list) else ():
                if part.get("type") == "image_url":
                    found.append(part["image_url"]["url"].split("base64,", 1)[-1])
        return found


class AnthropicUpstream(Upstream):
    def image_data(self, body):
        found = []
        for message in body["messages"]:
            for block in message["content"] if isinstance(message.get("content"), list) else ():
                if block.get("type") == "image":
                    found.append(block["source"]["data"])
        return found


class GeminiUpstream(Upstream):
    def image_data(self, body):
        return [part["inlineData"]["data"] for content in body["contents"] for part in content.get("parts") or ()
                if "inlineData" in part]


UPSTREAMS = [
    OpenAIUpstream("openai", "openai/gpt-4o-mini", "/v1/chat/completions"),
    AnthropicUpstream("anthropic", "anthropic/claude-3-5-haiku-latest", "/v1/messages"),
    GeminiUpstream("gemini", "gemini/gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:"),
]


# -- ingresses (one official SDK each), answers normalised -------------------------------------------

@dataclass
class Answer:
    text: str = ""
    tool_calls: list = field(default_factory=list)  # [(name, arguments dict)]
    finish: str | None = None  # "stop" or "tool"
    input_tokens: int = 0
    output_tokens: int = 0
    usage_in_last_event: bool = False


class Ingress:
    name = ""
    errors: dict[int, type] = {}

    def client(self, gateway):
        raise NotImplementedError

    @staticmethod
    def status(error: Exception) -> int:
        return error.status_code

    def ask(self, client, model: str, *, stream: bool, tools: bool = False, image: bool = False) -> Answer:
        raise NotImplementedError


class OpenAIIngress(Ingress):
    name = "openai"
    errors = {429: openai.RateLimitError, 500: openai.InternalServerError}

    def client(self, gateway):
        return openai.OpenAI(base_url=gateway.url + "/openai", api_key="client-key", max_retries=0, timeout=30)

    def ask(self, client, model, *, stream, tools=False, image=False):
        content = [{"type": "text", "text": "Describe the weather"}]
        if image:
            content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}})
        kwargs = {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": content}]}
        if tools:
            kwargs["tools"] = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
        answer = Answer()
        if not stream:
            reply = client.chat.completions.create(**kwargs)
            message = reply.choices[0].message
            answer.text = message.content or ""
            answer.tool_calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or ()]
            answer.finish = {"tool_calls": "tool"}.get(reply.choices[0].finish_reason, reply.choices[0].finish_reason)
            answer.input_tokens, answer.output_tokens = reply.usage.prompt_tokens, reply.usage.completion_tokens
            return answer
        chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
        calls: dict[int, list] = {}
        for chunk in chunks:
            for choice in chunk.choices:
                answer.text += choice.delta.content or ""
                for call in choice.delta.tool_calls or ():
                    entry = calls.setdefault(call.index, ["", ""])
                    entry[0] += (call.function.name or "") if call.function else ""
                    entry[1] += (call.function.arguments or "") if call.function else ""
                if choice.finish_reason:
                    answer.finish = {"tool_calls": "tool"}.get(choice.finish_reason, choice.finish_reason)
        answer.tool_calls = [(name, json.loads(args)) for name, args in calls.values()]
        usage = chunks[-1].usage
        answer.usage_in_last_event = usage is not None
        if usage:
            answer.input_tokens, answer.output_tokens = usage.prompt_tokens, usage.completion_tokens
        return answer


class AnthropicIngress(Ingress):
    name = "anthropic"
    errors = {429: anthropic.RateLimitError, 500: anthropic.InternalServerError}

    def client(self, gateway):
        return anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="client-key", max_retries=0,
                                   timeout=30)

    def ask(self, client, model, *, stream, tools=False, image=False):
        content = [{"type": "text", "text": "Describe the weather"}]
        if image:
            content.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
        kwargs = {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": content}]}
        if tools:
            kwargs["tools"] = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
        answer = Answer()
        if stream:
            with client.messages.stream(**kwargs) as events:
                raw = [event.type for event in events]
                message = events.get_final_message()
            answer.usage_in_last_event = raw[-1] == "message_stop" and "message_delta" in raw
        else:
            message = client.messages.create(**kwargs)
        answer.text = "".join(b.text for b in message.content if b.type == "text")
        answer.tool_calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        answer.finish = {"end_turn": "stop", "tool_use": "tool"}.get(message.stop_reason, message.stop_reason)
        usage = message.usage
        answer.input_tokens = usage.input_tokens + (usage.cache_read_input_tokens or 0) + (
            usage.cache_creation_input_tokens or 0)
        answer.output_tokens = usage.output_tokens
        return answer


class GeminiIngress(Ingress):
    name = "gemini"
    errors = {429: genai_errors.ClientError, 500: genai_errors.ServerError}

    @staticmethod
    def status(error):
        return error.code

    def client(self, gateway):
        return genai.Client(api_key="client-key", http_options={"base_url": gateway.url + "/genai", "timeout": 30_000})

    def ask(self, client, model, *, stream, tools=False, image=False):
        parts = [types.Part(text="Describe the weather")]
        if image:
            parts.append(types.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png"))
        config = types.GenerateContentConfig(max_output_tokens=200)
        if tools:
            config.tools = [types.Tool(function_declarations=[types.FunctionDeclaration(
                name="get_weather", parameters_json_schema=WEATHER_SCHEMA)])]
        kwargs = {"model": model, "contents": [types.Content(role="user", parts=parts)], "config": config}
        replies = (list(client.models.generate_content_stream(**kwargs)) if stream
                   else [client.models.generate_content(**kwargs)])
        answer = Answer()
        for reply in replies:
            candidate = reply.candidates[0] if reply.candidates else None
            for part in (candidate.content.parts or ()) if candidate and candidate.content else ():
                if part.text and not part.thought:
                    answer.text += part.text
                if part.function_call:
                    answer.tool_calls.append((part.function_call.name, dict(part.function_call.args)))
            if candidate and candidate.finish_reason:
                # Gemini finishes a function call with STOP; the call itself says it is one.
                assert candidate.finish_reason == types.FinishReason.STOP
                answer.finish = "tool" if answer.tool_calls else "stop"
        usage = replies[-1].usage_metadata
        answer.usage_in_last_event = usage is not None and usage.candidates_token_count is not None
        if usage:
            answer.input_tokens, answer.output_tokens = usage.prompt_token_count, usage.candidates_token_count or 0
        return answer


INGRESSES = [OpenAIIngress(), AnthropicIngress(), GeminiIngress()]
MODES = ["json", "stream"]


def cells() -> list:
    return [pytest.param(ingress, upstream, mode, id=f"{ingress.name}-to-{upstream.name}-{mode}")
            for ingress in INGRESSES for upstream in UPSTREAMS for mode in MODES]


@pytest.fixture
def sdk(gateway, request):
    ingress = request.node.callspec.params["ingress"]
    client = ingress.client(gateway)
    yield client
    client.close()


def seen(fake, upstream: Upstream):
    requests = [r for r in fake.requests if r.path.startswith(upstream.path)]
    assert requests, [r.path for r in fake.requests]
    return requests[-1]


# -- the cells -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ingress,upstream,mode", cells())
def test_text(sdk, fake, ingress, upstream, mode):
    fake.plan(Combine(Reply(content=TEXT), Stream(chunks=3)))
    answer = ingress.ask(sdk, upstream.model, stream=mode == "stream")
    assert answer.text == TEXT
    assert answer.finish == "stop" and answer.tool_calls == []
    request = seen(fake, upstream)
    assert request.model == upstream.model.split("/", 1)[1]


@pytest.mark.parametrize("ingress,upstream,mode", cells())
def test_tool_call(sdk, fake, ingress, upstream, mode):
    answer = ingress.ask(sdk, upstream.model, stream=mode == "stream", tools=True)
    assert answer.tool_calls == [("get_weather", {"location": "Paris"})]
    assert answer.finish == "tool"
    request = seen(fake, upstream).body
    assert json.dumps(request["tools"]).count("get_weather") == 1


@pytest.mark.parametrize("ingress,upstream,mode", cells())
def test_image_input(sdk, fake, ingress, upstream, mode):
    fake.plan(Combine(Reply(content=TEXT), Stream(chunks=2)))
    answer = ingress.ask(sdk, upstream.model, stream=mode == "stream", image=True)
    assert answer.text == TEXT
    # The bytes arrive unchanged (google-genai writes them URL-safe base64; Gemini reads either alphabet).
    assert [base64.urlsafe_b64decode(data.replace("+", "-").replace("/", "_"))
            for data in upstream.image_data(seen(fake, upstream).body)] == [base64.b64decode(PNG)]


@pytest.mark.parametrize("ingress,upstream,mode", cells())
def test_usage(sdk, fake, ingress, upstream, mode):
    fake.plan(Combine(Reply(content=TEXT), Stream(chunks=3)))
    answer = ingress.ask(sdk, upstream.model, stream=mode == "stream")
    assert answer.output_tokens == count_tokens(TEXT)
    assert answer.input_tokens == count_tokens("Describe the weather")
    if mode == "stream":
        assert answer.usage_in_last_event


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("ingress,upstream,mode", cells())
def test_upstream_error_reaches_the_sdk_as_its_own_class(sdk, fake, ingress, upstream, mode, status):
    fake.plan(*[Status(status)] * ATTEMPTS)
    with pytest.raises(ingress.errors[status]) as raised:
        ingress.ask(sdk, upstream.model, stream=mode == "stream")
    assert ingress.status(raised.value) == status
    assert len([r for r in fake.requests if r.path.startswith(upstream.path)]) == ATTEMPTS  # retried, then reported
