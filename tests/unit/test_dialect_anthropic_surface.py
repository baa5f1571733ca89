"""Unit tests for the directions the /anthropic surface adds to app.dialects.anthropic.

Anthropic request -> canonical (payloads from the Messages API reference and the tool use,
vision and stop-sequence guides), canonical reply -> Message, canonical chunks -> Anthropic
events (checked with the anthropic SDK's own stream accumulator), errors, and round trips:
each direction followed by its reverse keeps every field both sides have.
"""
from __future__ import annotations

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event

from app.dialects.anthropic import (
    AnthropicStreamToChat,
    ChatStreamToAnthropic,
    UsageMeter,
    anthropic_response_to_chat,
    anthropic_usage,
    chat_request_to_anthropic,
    chat_response_to_message,
    chat_usage,
    error_body,
    error_type_for,
    messages_request_to_chat,
)
from app.errors import GatewayError
from tests.unit.test_dialect_anthropic import BASIC_STREAM, THINKING_STREAM, TOOL_STREAM, parse_sse

MODEL = "claude-sonnet-4-5"
GET_WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
        "required": ["location"],
    },
}
IMAGE_DATA = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def sdk_accumulate(events: list[tuple[str, dict]]):
    """The anthropic SDK's own reassembly of a message from its events."""
    snapshot, buffers = None, {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def translate_stream(chunks: list[dict]) -> list[tuple[str, dict]]:
    converter = ChatStreamToAnthropic(MODEL)
    events = []
    for chunk in chunks:
        events.extend(converter.feed(chunk))
    return events + converter.finish()


def chunk(delta=None, finish=None, usage=None, choices=True) -> dict:
    out = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage:
        out["usage"] = usage
    return out


# -- Anthropic request -> canonical ----------------------------------------------------------------

def test_basic_request():
    body = {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, world"}]}
    assert messages_request_to_chat(body) == {
        "messages": [{"role": "user", "content": "Hello, world"}], "max_completion_tokens": 1024}


def test_system_multi_turn_and_parameters():
    body = {
        "model": MODEL, "max_tokens": 512, "temperature": 0.2, "top_p": 0.9, "top_k": 40,
        "system": [{"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["\n\nHuman:", "END"], "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
        "thinking": {"type": "enabled", "budget_tokens": 2000}, "service_tier": "auto", "stream": True,
        "messages": [
            {"role": "user", "content": "Hello there."},
            {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
            {"role": "user", "content": "Can you explain LLMs in plain English?"},
        ],
    }
    assert messages_request_to_chat(body) == {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello there."},
            {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
            {"role": "user", "content": "Can you explain LLMs in plain English?"},
        ],
        "max_completion_tokens": 512, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\nHuman:", "END"],
        "user": "13803d75-b4b5-4c3e-b2a2-6f21399b021b", "stream": True,
    }


def test_several_system_blocks_are_joined():
    body = {"max_tokens": 1, "system": [{"type": "text", "text": "A."}, {"type": "text", "text": "B."}],
            "messages": [{"role": "user", "content": "x"}]}
    assert messages_request_to_chat(body)["messages"][0] == {"role": "system", "content": "A.\n\nB."}


def test_vision_request_base64_and_url():
    body = {"max_tokens": 1024, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_DATA}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/ant.jpg"}},
        {"type": "text", "text": "Describe these images."},
    ]}]}
    assert messages_request_to_chat(body)["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE_DATA}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/ant.jpg"}},
        {"type": "text", "text": "Describe these images."},
    ]}]


def test_tool_use_conversation():
    """The tool use guide's weather exchange: tools, a tool_use turn, then its tool_result."""
    body = {
        "max_tokens": 1024, "tools": [GET_WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll check the weather."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"location": "San Francisco, CA"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {"type": "text", "text": "And tomorrow?"}]},
        ],
    }
    out = messages_request_to_chat(body)
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": GET_WEATHER["description"], "parameters": GET_WEATHER["input_schema"]}}]
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False
    assert out["messages"][1:] == [
        {"role": "assistant", "content": "I'll check the weather.", "tool_calls": [
            {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_tool_result_with_blocks_and_error_flag():
    body = {"max_tokens": 1, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                      "content": [{"type": "text", "text": "ConnectionError: the weather service "
                                                                           "API is not available (HTTP 500)"}]}]}]}
    tool = messages_request_to_chat(body)["messages"][1]
    assert tool == {"role": "tool", "tool_call_id": "t1",
                    "content": "Error: ConnectionError: the weather service API is not available (HTTP 500)"}


@pytest.mark.parametrize("choice,expected", [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice(choice, expected):
    body = {"max_tokens": 1, "tools": [GET_WEATHER], "tool_choice": choice,
            "messages": [{"role": "user", "content": "x"}]}
    assert messages_request_to_chat(body)["tool_choice"] == expected


def test_thinking_blocks_of_earlier_turns_are_dropped():
    body = {"max_tokens": 1, "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                          {"type": "redacted_thinking", "data": "xyz"},
                                          {"type": "text", "text": "answer"}]},
        {"role": "user", "content": "y"}]}
    assert messages_request_to_chat(body)["messages"][1] == {"role": "assistant", "content": "answer"}


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0"}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}, "tools.0"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages.0.content.0.source"),
])
def test_untranslatable_input_is_a_400_naming_the_field(body, param):
    with pytest.raises(GatewayError) as raised:
        messages_request_to_chat({"max_tokens": 1, **body})
    assert raised.value.http_status == 400 and raised.value.param == param


# -- canonical reply -> Anthropic Message ----------------------------------------------------------

def test_chat_completion_becomes_a_message():
    """OpenAI's documented chat completion, with cached prompt tokens."""
    reply = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I assist you today?",
                                             "refusal": None, "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0}},
    }
    assert chat_response_to_message(reply) == {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "type": "message", "role": "assistant",
        "model": "gpt-4.1-2025-04-14", "content": [{"type": "text", "text": "Hello! How can I assist you today?"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4,
                  "output_tokens": 10},
    }


def test_tool_calls_and_reasoning_become_blocks():
    reply = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "reasoning_content": "The user wants weather.",
        "tool_calls": [{"id": "call_abc123", "type": "function", "function": {
            "name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}}]}}],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}}
    message = chat_response_to_message(reply)
    assert message["content"] == [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": ""},
        {"type": "tool_use", "id": "call_abc123", "name": "get_current_weather", "input": {"location": "Boston, MA"}}]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize("finish,stop", [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
                                         ("content_filter", "refusal"), (None, "end_turn")])
def test_stop_reasons(finish, stop):
    reply = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    assert chat_response_to_message(reply)["stop_reason"] == stop


def test_usage_both_ways_keeps_cache_reads_and_writes():
    anthropic = {"input_tokens": 21, "cache_creation_input_tokens": 188086, "cache_read_input_tokens": 7,
                 "output_tokens": 393}
    canonical = chat_usage(anthropic)
    assert canonical["prompt_tokens"] == 21 + 188086 + 7
    assert anthropic_usage(canonical) == anthropic


# -- canonical chunks -> Anthropic events ------------------------------------------------------------

def test_text_stream_with_usage_at_the_end():
    """OpenAI's documented stream shape: role chunk, content chunks, finish chunk, usage-only chunk."""
    events = translate_stream([
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}), chunk({"content": "!"}),
        chunk({}, "stop"), chunk(usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
                                 choices=False)])
    names = [name for name, _ in events]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    for name, data in events:
        assert data["type"] == name
    start_usage = events[0][1]["message"]["usage"]
    assert start_usage == {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                           "output_tokens": 0}
    assert events[-2][1]["usage"]["input_tokens"] == 9  # known only at the end, so carried here
    message = sdk_accumulate(events)
    assert message.content[0].text == "Hello!" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 2)


def test_tool_call_stream():
    events = translate_stream([
        chunk({"role": "assistant", "content": "Let me check."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({}, "tool_calls", usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}),
    ])
    message = sdk_accumulate(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].id == "call_1" and message.content[1].input == {"location": "Paris"}
    assert message.content[2].name == "get_time" and message.content[2].input == {}
    assert message.stop_reason == "tool_use"


def test_reasoning_becomes_a_thinking_block():
    events = translate_stream([chunk({"reasoning": "Let me think"}), chunk({"reasoning": " more."}),
                               chunk({"content": "42"}), chunk({}, "stop")])
    message = sdk_accumulate(events)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think more." and message.content[1].text == "42"


def test_empty_stream_still_has_a_complete_envelope():
    names = [name for name, _ in translate_stream([])]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]


def test_usage_meter_on_a_documented_stream():
    meter = UsageMeter()
    seen = [meter(data) for _, data in parse_sse(TOOL_STREAM)]
    assert [u for u in seen if u][-1] == chat_usage({"input_tokens": 472, "output_tokens": 89})


# -- round trips ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream_text", [BASIC_STREAM, TOOL_STREAM, THINKING_STREAM], ids=["basic", "tool", "thinking"])
def test_anthropic_events_to_chunks_and_back(stream_text):
    events = parse_sse(stream_text)
    for name, data in events:  # the documented thinking stream leaves usage out; the SDK needs it
        if name == "message_delta":
            data.setdefault("usage", {"output_tokens": 0})
        if name == "message_start":
            data["message"].setdefault("usage", {"input_tokens": 0, "output_tokens": 0})
    original = sdk_accumulate(events)
    converter = AnthropicStreamToChat(MODEL)
    chunks = [c for name, data in events for c in converter.feed(name, data)]
    again = sdk_accumulate(translate_stream(chunks))
    assert again.stop_reason == original.stop_reason
    assert [b.type for b in again.content] == [b.type for b in original.content]
    for before, after in zip(original.content, again.content):
        if before.type == "text":
            assert after.text == before.text
        elif before.type == "tool_use":
            assert (after.id, after.name, after.input) == (before.id, before.name, before.input)
        elif before.type == "thinking":
            assert after.thinking == before.thinking  # the signature cannot survive another provider
    assert again.usage.output_tokens == original.usage.output_tokens
    assert again.usage.input_tokens == original.usage.input_tokens


def test_anthropic_request_to_canonical_and_back():
    body = {
        "max_tokens": 300, "temperature": 0.5, "top_p": 0.8, "stop_sequences": ["END"],
        "system": "Be brief.", "metadata": {"user_id": "u1"}, "tools": [GET_WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_DATA}},
                {"type": "text", "text": "Weather where this photo was taken?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    }
    back = chat_request_to_anthropic(messages_request_to_chat(body), MODEL)
    assert back == {**body, "model": MODEL}


def test_canonical_request_to_anthropic_and_back():
    canonical = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"location":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "max_completion_tokens": 100, "temperature": 0.1, "top_p": 0.5, "stop": ["END"], "user": "u1",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                    "parameters": GET_WEATHER["input_schema"]}}],
        "tool_choice": "required",
    }
    assert messages_request_to_chat(chat_request_to_anthropic(canonical, MODEL)) == canonical


def test_message_to_canonical_and_back():
    message = {"id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": MODEL,
               "content": [{"type": "text", "text": "I'll check."},
                           {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "SF"}}],
               "stop_reason": "tool_use", "stop_sequence": None,
               "usage": {"input_tokens": 10, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5,
                         "output_tokens": 20}}
    assert chat_response_to_message(anthropic_response_to_chat(message)) == message


# -- errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status,upstream_type,expected", [
    (400, None, "invalid_request_error"), (401, "invalid_request_error", "authentication_error"),
    (403, None, "permission_error"), (404, "model_not_found", "not_found_error"), (413, None, "request_too_large"),
    (429, "rate_limit_exceeded", "rate_limit_error"), (500, "server_error", "api_error"), (502, None, "api_error"),
    (503, "overloaded_error", "overloaded_error"), (504, "timeout", "timeout_error"),
    (529, "overloaded_error", "overloaded_error"), (529, None, "overloaded_error"),
])
def test_error_types_follow_the_status(status, upstream_type, expected):
    assert error_type_for(status, upstream_type) == expected


def test_error_body_shape():
    error = GatewayError("Number of requests has exceeded your rate limit", 429, error_type="rate_limit_error")
    assert error_body(error) == {"type": "error", "error": {
        "type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}}
    assert json.loads(json.dumps(error_body(GatewayError("x")))) == {
        "type": "error", "error": {"type": "invalid_request_error", "message": "x"}}
