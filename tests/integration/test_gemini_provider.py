"""Gemini as a provider of the unified API, through the unmodified openai SDK and plain HTTP.

The fake Gemini is strict about the key header, paths and body shapes, and (for gemini-3 models)
refuses a tool turn whose functionCall lost the thoughtSignature it issued.
"""
from __future__ import annotations

import json

import pytest
import requests
from openai import OpenAI

from tests.fakes.behaviours import CutStream, MalformedChunk, Status
from tests.fakes.common import DEFAULT_TEXT
from tests.fakes.gemini import DIALECT as GEMINI_FAKE, decode_signature

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture
def client(gateway):
    with OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0, timeout=30) as sdk:
        yield sdk


def test_chat_completion(client, fake):
    reply = client.chat.completions.create(
        model="gemini/gemini-2.5-flash", temperature=0.2, max_tokens=40,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}])
    assert reply.choices[0].message.content == DEFAULT_TEXT
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (4, 5, 9)
    (request,) = fake.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.headers["x-goog-api-key"] == "gm-key-1" and "authorization" not in request.headers
    assert request.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 40},
    }


def test_chat_stream_has_usage_in_its_final_chunk(client, fake):
    chunks = list(client.chat.completions.create(
        model="gemini/gemini-3-pro-preview", messages=[{"role": "user", "content": "Hello there"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert usage.completion_tokens == 5 + 4 and usage.completion_tokens_details.reasoning_tokens == 4
    assert fake.requests[0].query == {"alt": "sse"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_round_trip_keeps_the_thought_signature(client, fake, stream):
    model = "gemini/gemini-3-pro-preview"
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=[QUESTION], tools=[WEATHER_TOOL],
                                                     stream=True))
        deltas = [c.choices[0] for c in chunks if c.choices]
        assert deltas[-1].finish_reason == "tool_calls"
        (call,) = [tc for d in deltas for tc in (d.delta.tool_calls or [])]
        assistant = {"role": "assistant", "content": None, "tool_calls": [{
            "id": call.id, "type": "function", "extra_content": call.model_extra["extra_content"],
            "function": {"name": call.function.name, "arguments": call.function.arguments}}]}
    else:
        first = client.chat.completions.create(model=model, messages=[QUESTION], tools=[WEATHER_TOOL])
        assert first.choices[0].finish_reason == "tool_calls"  # Gemini said STOP
        call = first.choices[0].message.tool_calls[0]
        assistant = first.choices[0].message.model_dump(exclude_none=True)  # what an OpenAI SDK app sends back
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"location": "Paris"}
    signature = call.model_extra["extra_content"]["google"]["thought_signature"]
    assert decode_signature(signature) in GEMINI_FAKE.issued

    second = client.chat.completions.create(model=model, tools=[WEATHER_TOOL], messages=[
        QUESTION, assistant, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert second.choices[0].message.content == DEFAULT_TEXT
    contents = fake.requests[-1].body["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == signature  # byte-identical
    assert contents[2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"result": "sunny"},
                                                           "id": call.id}


def test_a_lost_signature_is_gemini_3s_own_400(client, fake):
    messages = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    reply = requests.post(client.base_url.__str__() + "chat/completions", timeout=10,
                          json={"model": "gemini/gemini-3-pro-preview", "messages": messages})
    assert reply.status_code == 400
    body = reply.json()
    assert "thought_signature" in body["error"]["message"] and body["error"]["type"] == "INVALID_ARGUMENT"


def test_text_completion_through_chat(gateway, fake):
    reply = requests.post(gateway.url + "/v1/completions", timeout=10,
                          json={"model": "gemini/gemini-2.5-flash", "prompt": "Say hello"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] == DEFAULT_TEXT
    assert fake.requests[0].path.endswith(":generateContent")


def test_models_are_listed_with_the_provider_prefix(client, fake):
    ids = {m.id for m in client.models.list()}
    assert {"gemini/gemini-2.5-flash", "gemini/gemini-embedding-001"} <= ids
    gemini_calls = [r for r in fake.requests if r.dialect == "gemini"]
    assert gemini_calls[0].path == "/v1beta/models" and gemini_calls[0].query["pageSize"] == "1000"


def sse_data(reply) -> list[str]:
    return [line[6:] for line in reply.text.split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize("failure", [CutStream(2), CutStream(2, reset=True), MalformedChunk(2)],
                         ids=["cut", "reset", "malformed"])
def test_gemini_stream_broken_after_first_byte_ends_in_an_error_event(gateway, fake, failure):
    fake.plan(failure, model="gemini-2.5-flash")
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "gemini/gemini-2.5-flash", "messages": [QUESTION], "stream": True,
        "fallbacks": ["openai/gpt-4o-mini"]})
    assert reply.status_code == 200
    events = sse_data(reply)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["is_bifrost_error"] is True and last["status_code"] == 502
    assert len(fake.requests) == 1  # no retry and no fallback after the first byte


@pytest.mark.parametrize("failure", [Status(500), CutStream(0), MalformedChunk(0)], ids=["500", "cut", "malformed"])
def test_gemini_stream_failing_before_its_first_event_is_retried(gateway, fake, failure):
    fake.plan(failure, model="gemini-2.5-flash")
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "gemini/gemini-2.5-flash", "messages": [QUESTION], "stream": True})
    events = sse_data(reply)
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == DEFAULT_TEXT
    assert len(fake.requests) == 2


def test_upstream_key_errors_are_reported(gateway, fake):
    """A 429 rotates keys and retries; all retries failing returns Gemini's own message and status."""
    fake.plan(*[Status(429)] * 3, model="gemini-2.5-flash")
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "gemini/gemini-2.5-flash", "messages": [QUESTION]})
    assert reply.status_code == 429
    assert reply.json()["error"] == {"message": "Resource has been exhausted (e.g. check quota).",
                                     "type": "RESOURCE_EXHAUSTED"}


def test_image_input_becomes_inline_data(client, fake):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    reply = client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert reply.choices[0].message.content == DEFAULT_TEXT
    assert reply.usage.prompt_tokens == 3 + 2 * 258  # the fake counts each image as 258 tokens, as Gemini does
    parts = fake.requests[0].body["contents"][0]["parts"]
    assert parts == [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": png}},
                     {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}}]
