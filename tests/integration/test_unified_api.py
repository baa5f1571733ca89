"""The unified API against the real server: routing, pass-through, translation, errors."""
from __future__ import annotations

import requests

from tests.fakes.behaviours import Delay, Status

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello!"}]


def post(gateway, path, body, **kwargs):
    return requests.post(gateway.url + path, json=body, timeout=30, **kwargs)


def test_openai_pass_through_keeps_unknown_fields_and_merges_params(gateway, fake):
    reply = post(gateway, CHAT, {
        "model": "openai/gpt-4o-mini", "messages": HELLO, "params": {"temperature": 0.7, "max_tokens": 1000},
        "fallbacks": ["anthropic/claude-3-5-haiku-latest"], "top_p": 0.5, "vendor_extension": {"keep": [1, 2]},
    }, headers={"x-request-id": "req-42", "x-bf-eh-x-trace": "t-1"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["extra_fields"]["provider"] == "openai" and body["extra_fields"]["model_requested"] == "gpt-4o-mini"
    assert reply.headers["x-request-id"] == "req-42"
    assert reply.headers["x-bifrost-provider"] == "openai"
    assert float(reply.headers["x-bifrost-overhead-ms"]) >= 0
    assert "x-bifrost-fallback-index" not in reply.headers

    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-openai-1"
    assert seen.headers["x-org"] == "acme"  # network_config.extra_headers
    assert seen.headers["x-trace"] == "t-1"  # x-bf-eh-* forwarded without its prefix
    assert seen.body == {
        "model": "gpt-4o-mini", "messages": HELLO, "temperature": 0.7, "max_tokens": 1000,
        "top_p": 0.5, "vendor_extension": {"keep": [1, 2]},
    }


def test_request_id_is_generated_when_absent(gateway):
    reply = requests.get(gateway.url + "/health", timeout=5)
    assert reply.status_code == 200 and reply.json()["status"] == "ok"
    assert len(reply.headers["x-request-id"]) >= 32


def test_content_str_tool_conversation_reaches_openai_in_its_own_shape(gateway, fake):
    reply = post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": [
        {"role": "user", "content": "Read the README.md file"},
        {"role": "assistant", "tool_calls": [{"id": "call_123", "type": "function",
                                               "function": {"name": "read_file", "arguments": "{\"path\": \"README.md\"}"}}]},
        {"role": "tool", "content": {"content_str": "# Bifrost\n\nBifrost is..."}, "tool_call_id": "call_123"},
        {"role": "user", "content": "Summarize the main features"},
    ]})
    assert reply.status_code == 200, reply.text
    assert fake.requests[0].body["messages"][2]["content"] == "# Bifrost\n\nBifrost is..."


def test_anthropic_translation_both_ways(gateway, fake):
    reply = post(gateway, CHAT, {"model": "anthropic/claude-3-5-haiku-latest", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What's in this image?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
    ], "max_tokens": 50, "stop": "END", "temperature": 0.3, "frequency_penalty": 0.1})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    [seen] = fake.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "sk-ant-1" and seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "Be brief."
    assert seen.body["max_tokens"] == 50 and seen.body["stop_sequences"] == ["END"]
    assert seen.body["messages"][0]["content"][1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert "frequency_penalty" not in seen.body


def test_anthropic_tool_call_round_trip(gateway, fake):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
    first = post(gateway, CHAT, {"model": "anthropic/claude-3-5-haiku-latest", "tools": tools,
                                 "messages": [{"role": "user", "content": "Weather in Paris?"}]})
    assert first.status_code == 200, first.text
    message = first.json()["choices"][0]["message"]
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    second = post(gateway, CHAT, {"model": "anthropic/claude-3-5-haiku-latest", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"}, message,
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
    ]})
    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["finish_reason"] == "stop"
    result = fake.requests[-1].body["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call["id"]


def test_text_completions_on_both_paths_and_both_body_forms(gateway, fake):
    spec = post(gateway, "/v1/text/completions", {"model": "openai/gpt-4o-mini", "text": "The future of AI is",
                                                  "params": {"temperature": 0.8, "max_tokens": 150}})
    legacy = post(gateway, "/v1/completions", {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi"})
    for reply in (spec, legacy):
        assert reply.status_code == 200, reply.text
        assert reply.json()["object"] == "text_completion" and reply.json()["choices"][0]["text"]
    assert [r.path for r in fake.requests] == ["/v1/completions", "/v1/completions"]
    assert fake.requests[0].body["prompt"] == "The future of AI is" and "text" not in fake.requests[0].body
    assert fake.requests[0].body["max_tokens"] == 150


def test_text_completion_through_anthropic_uses_chat(gateway, fake):
    reply = post(gateway, "/v1/text/completions", {"model": "anthropic/claude-3-5-haiku-latest", "text": "Once upon"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["object"] == "text_completion" and reply.json()["choices"][0]["text"]
    assert fake.requests[0].body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Once upon"}]}] \
        or fake.requests[0].body["messages"] == [{"role": "user", "content": "Once upon"}]


def test_azure_deployment_url_and_key_header(gateway, fake):
    reply = post(gateway, CHAT, {"model": "azure/gpt-4o", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    [seen] = fake.requests
    assert seen.path == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert seen.query.get("api-version") in ("2024-10-21", ["2024-10-21"])
    assert seen.headers["api-key"] == "az-key" and "authorization" not in seen.headers


def test_provider_specific_paths(gateway, fake):
    assert post(gateway, CHAT, {"model": "perplexity/sonar", "messages": HELLO}).status_code == 200
    assert post(gateway, CHAT, {"model": "groq/llama-3.3-70b-versatile", "messages": HELLO}).status_code == 200
    assert [r.path for r in fake.requests] == ["/chat/completions", "/v1/chat/completions"]


def test_models_lists_every_configured_provider(gateway):
    reply = requests.get(gateway.url + "/v1/models", timeout=10)
    assert reply.status_code == 200, reply.text
    ids = {m["id"] for m in reply.json()["data"]}
    assert any(i.startswith("openai/") for i in ids) and any(i.startswith("anthropic/") for i in ids)
    only = requests.get(gateway.url + "/v1/models?provider=openai", timeout=10).json()["data"]
    assert only and all(m["id"].startswith("openai/") for m in only)


# -- errors -----------------------------------------------------------------------------------

def assert_bifrost_error(reply, status, *, message=None, is_bifrost_error=None):
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["status_code"] == status and isinstance(body["error"]["message"], str)
    assert "Traceback" not in reply.text
    if message:
        assert message in body["error"]["message"], body
    if is_bifrost_error is not None:
        assert body["is_bifrost_error"] is is_bifrost_error
    return body


def test_unknown_route_is_a_404_error(gateway):
    assert_bifrost_error(requests.get(gateway.url + "/v1/nothing", timeout=5), 404, message="Route not found: /v1/nothing")


def test_wrong_method_is_a_405_error(gateway):
    assert_bifrost_error(requests.get(gateway.url + CHAT, timeout=5), 405)


def test_bad_json_missing_model_and_bad_provider(gateway):
    bad = requests.post(gateway.url + CHAT, data=b'{"model": ', headers={"content-type": "application/json"}, timeout=5)
    assert_bifrost_error(bad, 400, message="Invalid request format")
    assert_bifrost_error(post(gateway, CHAT, {"messages": HELLO}), 400, message="model is required")
    body = assert_bifrost_error(post(gateway, CHAT, {"model": "nonexistent/x", "messages": HELLO}), 400,
                                message="Invalid provider: nonexistent")
    assert body["error"]["code"] == "invalid_provider"
    body = assert_bifrost_error(post(gateway, CHAT, {"model": "gpt-4o", "messages": HELLO}), 400)
    assert body["error"]["code"] == "missing_provider"
    body = assert_bifrost_error(post(gateway, CHAT, {"model": "mistral/mistral-large", "messages": HELLO}), 400,
                                message="provider mistral is not configured")
    assert body["extra_fields"] == {"provider": "mistral", "model_requested": "mistral-large", "request_type": "chat_completion"}


def test_upstream_error_status_and_message_are_carried_over(gateway, fake):
    fake.plan(Status(400, "Invalid value for 'temperature'"), model="gpt-4o-mini")
    body = assert_bifrost_error(post(gateway, CHAT, {"model": "openai/gpt-4o-mini", "messages": HELLO}), 400,
                                message="Invalid value for 'temperature'", is_bifrost_error=False)
    assert body["extra_fields"]["provider"] == "openai"
    assert len(fake.requests) == 1  # a 400 is not retried


def test_upstream_timeout_is_a_504(gateway, fake):
    fake.set_default(Delay(2.5), model="m-timeout")
    body = assert_bifrost_error(post(gateway, CHAT, {"model": "slow/m-timeout", "messages": HELLO}), 504)
    assert body["type"] == "request_timed_out"


def test_unsupported_operation(gateway):
    body = assert_bifrost_error(post(gateway, "/v1/completions", {"model": "chatonly/m", "prompt": "x"}), 400)
    assert body["error"]["code"] == "unsupported_operation"


def test_key_pinning_by_name(gateway, fake):
    assert post(gateway, CHAT, {"model": "groq/m", "messages": HELLO}, headers={"x-bf-api-key": "rl-b"}).status_code == 200
    assert fake.requests[0].api_key == "sk-rl-b"
    assert_bifrost_error(post(gateway, CHAT, {"model": "groq/m", "messages": HELLO}, headers={"x-bf-api-key": "nope"}), 400,
                         message="no key found with name nope")
