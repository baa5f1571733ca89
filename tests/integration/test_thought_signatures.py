"""Gemini 3's thought signatures across surfaces, and the OpenAI-family upstreams that must not see them.

The fake Gemini refuses a gemini-3 function call turn whose signature is missing or is not
one it issued; the fake OpenAI refuses any field it does not know inside a message, as
the real API does ("Unknown parameter"), so Gemini's ``extra_content`` must not reach it.
"""
from __future__ import annotations

import base64

import anthropic
import pytest
import requests

from tests.fakes.common import DEFAULT_TEXT
from tests.fakes.gemini import DIALECT as GEMINI_FAKE, decode_signature

GEMINI_3 = "gemini/gemini-3-pro-preview"
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                                 "required": ["location"]}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
MARK = "__thought_"  # app.dialects.gemini: the signature rides in the tool_use id after it


@pytest.fixture
def client(gateway):
    with anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="client-key", max_retries=0,
                             timeout=30) as sdk:
        yield sdk


def first_turn(client, stream: bool):
    kwargs = {"model": GEMINI_3, "max_tokens": 200, "messages": [QUESTION], "tools": [WEATHER_TOOL]}
    if stream:
        with client.messages.stream(**kwargs) as events:
            return events.get_final_message()
    return client.messages.create(**kwargs)


def second_turn(client, tool_use_id: str, name: str = "get_weather"):
    return client.messages.create(model=GEMINI_3, max_tokens=200, tools=[WEATHER_TOOL], messages=[
        QUESTION,
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use_id, "name": name,
                                           "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "sunny"}]}])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gemini_3_tool_round_trip_through_anthropic_keeps_the_signature(client, fake, stream):
    message = first_turn(client, stream)
    assert message.stop_reason == "tool_use"
    (tool_use,) = [b for b in message.content if b.type == "tool_use"]
    assert tool_use.name == "get_weather" and tool_use.input == {"location": "Paris"}
    assert MARK in tool_use.id and set(tool_use.id) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")  # Anthropic's id pattern

    reply = second_turn(client, tool_use.id)
    assert reply.content[0].text == DEFAULT_TEXT
    contents = fake.requests[-1].body["contents"]
    sent = contents[1]["parts"][0]["thoughtSignature"]
    raw = decode_signature(sent)
    assert raw in GEMINI_FAKE.issued
    assert sent == base64.b64encode(raw).decode()  # the very string the fake issued (standard base64)
    call_id = contents[1]["parts"][0]["functionCall"].get("id")
    assert call_id is None or MARK not in call_id  # the id Gemini sees is its own again
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


@pytest.mark.parametrize("damage", ["missing", "forged"])
def test_a_lost_or_forged_signature_through_anthropic_is_gemini_3s_400(client, fake, damage):
    tool_use = next(b for b in first_turn(client, False).content if b.type == "tool_use")
    head, _, signature = tool_use.id.partition(MARK)
    damaged = head if damage == "missing" else head + MARK + ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(anthropic.BadRequestError) as raised:
        second_turn(client, damaged)
    assert raised.value.status_code == 400
    assert ("thought_signature" if damage == "missing" else "Corrupted thought signature") in str(raised.value)


def test_a_signed_anthropic_history_reaches_openai_without_the_signature(client, fake):
    """The same history, now answered by an OpenAI-family upstream: short ids, no extra_content."""
    tool_use = next(b for b in first_turn(client, False).content if b.type == "tool_use")
    reply = client.messages.create(model="openai/gpt-4o-mini", max_tokens=200, tools=[WEATHER_TOOL], messages=[
        QUESTION,
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use.id, "name": "get_weather",
                                           "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}])
    assert reply.content[0].text == DEFAULT_TEXT
    messages = fake.requests[-1].body["messages"]
    head = tool_use.id.partition(MARK)[0]
    assert messages[1]["tool_calls"] == [{"id": head, "type": "function",
                                          "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]
    assert messages[2]["tool_call_id"] == head


SIGNED_HISTORY = [
    QUESTION,
    {"role": "assistant", "content": "Let me look.", "extra_content": {"google": {"thought_signature": "c2ln"}},
     "tool_calls": [{"id": "call_1", "type": "function", "extra_content": {"google": {"thought_signature": "c2ln"}},
                     "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_v1_history_with_gemini_extra_content_reaches_openai_without_it(gateway, fake, stream):
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=10, stream=stream,
                          json={"model": "openai/gpt-4o-mini", "messages": SIGNED_HISTORY, "stream": stream})
    assert reply.status_code == 200, reply.text
    reply.content  # the whole answer
    messages = fake.requests[-1].body["messages"]
    assert "extra_content" not in messages[1]
    assert messages[1]["tool_calls"] == [{"id": "call_1", "type": "function",
                                          "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]
    assert messages[1]["content"] == "Let me look." and messages[2] == SIGNED_HISTORY[2]


def test_the_fake_openai_refuses_unknown_message_fields_as_openai_does(fake):
    """Why the stripping matters: sent as it is, OpenAI's 400 names the field."""
    reply = requests.post(fake.url + "/v1/chat/completions", timeout=10,
                          headers={"Authorization": "Bearer sk-openai-1"},
                          json={"model": "gpt-4o-mini", "messages": SIGNED_HISTORY})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "unknown_parameter" and error["param"] == "messages[1].extra_content"
    assert error["message"] == "Unknown parameter: 'messages[1].extra_content'."


def test_gemini_upstream_still_gets_the_signature_from_v1(gateway, fake):
    """The stripping is for OpenAI-family upstreams only: the same body to Gemini keeps it."""
    requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                  json={"model": "gemini/gemini-2.5-flash", "messages": SIGNED_HISTORY})
    contents = fake.requests[-1].body["contents"]
    assert contents[1]["parts"][-1]["thoughtSignature"] == "c2ln"
