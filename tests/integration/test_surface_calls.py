"""What plugins see of a drop-in surface request: call.surface, call.body, call.usage, call.passthrough.

The app runs in-process (Flask's test client) in front of the fake upstreams, with a recording plugin
installed through the plugin interface, so each Call can be inspected after its after-hook ran.
"""
from __future__ import annotations

import pytest

from app import create_app
from app.config import parse_config
from app.gateway import EXTENSION
from app.plugins import Plugin, Plugins
from tests.fakes.behaviours import Status
from tests.fakes.common import DEFAULT_TEXT, count_tokens

HELLO = [{"role": "user", "content": "Hello there"}]
ANTHROPIC_HEADERS = {"x-api-key": "client", "anthropic-version": "2023-06-01"}


class Recorder(Plugin):
    name = "recorder"

    def __init__(self):
        self.before_bodies: list = []
        self.calls: list = []

    def before(self, call):
        self.before_bodies.append(call.body)

    def after(self, call):
        self.calls.append(call)


@pytest.fixture
def app_and_recorder(fake):
    config = parse_config({"providers": {
        "openai": {"keys": [{"name": "o", "value": "sk-openai-1", "models": ["*"]}],
                   "network_config": {"base_url": fake.url, "max_retries": 1, "retry_backoff_initial": 1,
                                      "retry_backoff_max": 2}},
        "anthropic": {"keys": [{"name": "a", "value": "sk-ant-1", "models": ["*"]}],
                      "network_config": {"base_url": fake.url, "max_retries": 1, "retry_backoff_initial": 1,
                                         "retry_backoff_max": 2}},
        "gemini": {"keys": [{"name": "g", "value": "gm-key-1", "models": ["*"]}],
                   "network_config": {"base_url": fake.url, "max_retries": 1, "retry_backoff_initial": 1,
                                      "retry_backoff_max": 2}},
    }})
    app = create_app(config)
    recorder = Recorder()
    app.extensions[EXTENSION].plugins = Plugins([recorder])
    return app, recorder


def post(app, body, headers=ANTHROPIC_HEADERS):
    with app.test_client() as client:
        reply = client.post("/anthropic/v1/messages", json=body, headers=headers)
        reply.get_data()  # runs the stream to its end
        return reply


def canonical_usage(prompt, completion):
    return prompt, completion, prompt + completion


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model,passthrough", [("claude-haiku-4-5", True), ("openai/gpt-4o-mini", False)],
                         ids=["anthropic", "openai"])
def test_plugins_see_canonical_body_and_usage(app_and_recorder, fake, model, passthrough, stream):
    app, recorder = app_and_recorder
    body = {"model": model, "max_tokens": 50, "system": "Be brief.", "messages": HELLO}
    if stream:
        body["stream"] = True
    reply = post(app, body)
    assert reply.status_code == 200, reply.get_data(as_text=True)

    [before] = recorder.before_bodies
    assert before["messages"] == [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hello there"}]
    assert before["max_completion_tokens"] == 50
    [call] = recorder.calls
    assert call.surface == "anthropic" and call.passthrough is passthrough and call.error is None
    assert call.native.body["system"] == "Be brief."
    prompt = count_tokens("Be brief.") + count_tokens("Hello there")
    usage = call.usage
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == \
        canonical_usage(prompt, count_tokens(DEFAULT_TEXT))
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    if not stream:
        assert call.reply["object"] == "chat.completion"
        assert call.reply["choices"][0]["message"]["content"] == DEFAULT_TEXT


def test_a_fallback_of_another_family_is_translated_and_the_call_says_so(app_and_recorder, fake):
    app, recorder = app_and_recorder
    fake.plan(Status(500), Status(500), model="claude-haiku-4-5")
    reply = post(app, {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": HELLO, "stream": True},
                 headers={**ANTHROPIC_HEADERS, "x-bf-fallbacks": "openai/gpt-4o-mini"})
    assert reply.status_code == 200 and b"event: message_stop" in reply.get_data()
    [call] = recorder.calls
    assert [(a.provider, a.fallback_index, a.error is not None) for a in call.attempts] == [
        ("anthropic", 0, True), ("anthropic", 0, True), ("openai", 1, False)]
    assert call.passthrough is False and call.served.provider == "openai"
    assert call.usage["completion_tokens"] == count_tokens(DEFAULT_TEXT)


def test_openai_surface_call(app_and_recorder, fake):
    app, recorder = app_and_recorder
    with app.test_client() as client:
        reply = client.post("/openai/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO})
    assert reply.status_code == 200
    [call] = recorder.calls
    assert call.surface == "openai" and call.native is None and call.passthrough is False
    assert call.usage["completion_tokens"] == count_tokens(DEFAULT_TEXT)


GEMINI_BODY = {"systemInstruction": {"parts": [{"text": "Be brief."}]},
               "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model,passthrough", [("gemini-2.5-flash", True), ("openai/gpt-4o-mini", False)],
                         ids=["gemini", "openai"])
def test_genai_surface_call(app_and_recorder, fake, model, passthrough, stream):
    """/genai on the same mechanism as /anthropic: a NativeRequest, decided per attempt."""
    app, recorder = app_and_recorder
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    with app.test_client() as client:
        reply = client.post(f"/genai/v1beta/models/{model}:{method}", json=GEMINI_BODY)
        reply.get_data()
    assert reply.status_code == 200, reply.get_data(as_text=True)
    [before] = recorder.before_bodies
    assert before["messages"] == [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hello there"}]
    [call] = recorder.calls
    assert call.surface == "genai" and call.passthrough is passthrough and call.error is None
    assert call.native.body == GEMINI_BODY
    assert call.usage["completion_tokens"] == count_tokens(DEFAULT_TEXT)
    assert call.usage["prompt_tokens"] == count_tokens("Be brief.") + count_tokens("Hello there")
    if not stream:
        assert call.reply["choices"][0]["message"]["content"] == DEFAULT_TEXT


@pytest.mark.parametrize("method,body,request_type", [
    ("countTokens", {"contents": GEMINI_BODY["contents"]}, "count_tokens"),
    ("embedContent", {"content": {"parts": [{"text": "Hello there"}]}}, "embedding"),
    ("batchEmbedContents", {"requests": [{"model": "models/gemini-embedding-001",
                                          "content": {"parts": [{"text": "Hello there"}]}}]}, "embedding"),
])
def test_genai_other_methods_pass_through_to_gemini(app_and_recorder, fake, method, body, request_type):
    app, recorder = app_and_recorder
    model = "gemini-embedding-001" if request_type == "embedding" else "gemini-2.5-flash"
    with app.test_client() as client:
        reply = client.post(f"/genai/v1beta/models/{model}:{method}", json=body)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert fake.requests[-1].path == f"/v1beta/models/{model}:{method}"
    [call] = recorder.calls
    assert call.request_type == request_type and call.passthrough is True and call.surface == "genai"
    assert isinstance(call.reply, dict) and call.body is not None  # canonical for the plugins


@pytest.mark.parametrize("model,passthrough,path", [
    ("claude-haiku-4-5", True, "/v1/messages/count_tokens"),
    ("gemini/gemini-2.5-flash", False, "/v1beta/models/gemini-2.5-flash:countTokens"),
], ids=["anthropic", "gemini"])
def test_anthropic_count_tokens_call(app_and_recorder, fake, model, passthrough, path):
    """Passed through or translated, plugins read the same canonical count."""
    app, recorder = app_and_recorder
    with app.test_client() as client:
        reply = client.post("/anthropic/v1/messages/count_tokens", headers=ANTHROPIC_HEADERS,
                            json={"model": model, "messages": HELLO})
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.get_json() == {"input_tokens": count_tokens("Hello there")}
    assert fake.requests[-1].path == path
    [call] = recorder.calls
    assert call.request_type == "count_tokens" and call.passthrough is passthrough
    assert call.reply == {"input_tokens": count_tokens("Hello there")}
    assert call.body["messages"] == HELLO
