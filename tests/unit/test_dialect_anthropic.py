"""Unit tests for app.dialects.anthropic.

Payloads are rewritten from the examples in Anthropic's Messages API reference,
its streaming guide (basic, tool use, extended thinking and web search streams),
the tool use, vision, extended thinking and prompt caching guides, and its error
reference. The SSE fixtures keep the documented wire lines as they are, hence the
E501 exemptions on them.
"""
from __future__ import annotations

import json

import pytest

from app.dialects.anthropic import (
    AnthropicStreamToChat,
    anthropic_response_to_chat,
    chat_request_to_anthropic,
    error_from_anthropic,
)
from app.errors import GatewayError

MODEL = "claude-sonnet-4-20250514"

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": WEATHER_PARAMETERS,
    },
}


def convert(**fields):
    req = {"model": "anthropic/" + MODEL, "messages": [{"role": "user", "content": "Hello, world"}]}
    req.update(fields)
    return chat_request_to_anthropic(req, MODEL)


def bad_param(**fields) -> str:
    with pytest.raises(GatewayError) as info:
        convert(**fields)
    assert info.value.http_status == 400
    assert info.value.error_type == "invalid_request_error"
    return info.value.param


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """Split a raw SSE body into (event, data) pairs, as the provider adapter will."""
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.strip().splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def run_stream(text: str, model: str = MODEL) -> tuple[AnthropicStreamToChat, list[dict]]:
    conv = AnthropicStreamToChat(model)
    chunks = []
    for event, data in parse_sse(text):
        chunks.extend(conv.feed(event, data))
    return conv, chunks


def accumulate(chunks: list[dict]) -> dict:
    """Rebuild the whole message from chunks the way OpenAI clients do."""
    out: dict = {"content": "", "reasoning": "", "tool_calls": {}, "finish_reason": None, "usage": None}
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        choice = chunk["choices"][0]
        delta = choice["delta"]
        out["content"] += delta.get("content") or ""
        out["reasoning"] += delta.get("reasoning") or ""
        for call in delta.get("tool_calls") or []:
            slot = out["tool_calls"].setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            slot["id"] = call.get("id") or slot["id"]
            slot["name"] = call.get("function", {}).get("name") or slot["name"]
            slot["arguments"] += call.get("function", {}).get("arguments") or ""
        if choice["finish_reason"]:
            out["finish_reason"] = choice["finish_reason"]
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
    return out


# -- request: messages -------------------------------------------------------


def test_minimal_request():
    body = convert()
    assert body == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello, world"}]}],
    }


def test_system_and_developer_messages_become_top_level_system():
    body = convert(messages=[
        {"role": "system", "content": "Today's date is 2024-06-01."},
        {"role": "user", "content": "Hello there."},
    ])
    assert body["system"] == "Today's date is 2024-06-01."
    assert [m["role"] for m in body["messages"]] == ["user"]

    body = convert(messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "developer", "content": [{"type": "text", "text": "Today's date is 2024-06-01."}]},
        {"role": "user", "content": "Hello there."},
    ])
    assert body["system"] == [
        {"type": "text", "text": "You are a helpful assistant."},
        {"type": "text", "text": "Today's date is 2024-06-01."},
    ]


def test_system_cache_control_keeps_block_form():
    marker = {"type": "ephemeral"}
    body = convert(messages=[
        {"role": "system", "content": [{"type": "text", "text": "A long book.", "cache_control": marker}]},
        {"role": "user", "content": "Analyze the major themes."},
    ])
    assert body["system"] == [{"type": "text", "text": "A long book.", "cache_control": marker}]


def test_multi_turn_conversation_keeps_alternation():
    turns = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
        {"role": "user", "content": "Can you explain LLMs in plain English?"},
    ]
    body = convert(messages=turns)
    assert body["messages"] == [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in turns
    ]


def test_consecutive_same_role_messages_are_merged():
    body = convert(messages=[
        {"role": "user", "content": "What's the Greek name for Sun?"},
        {"role": "user", "content": [{"type": "text", "text": "(A) Sol (B) Helios (C) Sun"}]},
        {"role": "assistant", "content": "The best answer is ("},
        {"role": "assistant", "content": "B)"},
    ])
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "What's the Greek name for Sun?"},
            {"type": "text", "text": "(A) Sol (B) Helios (C) Sun"},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "The best answer is ("},
            {"type": "text", "text": "B)"},
        ]},
    ]


def test_empty_text_is_dropped_and_empty_messages_skipped():
    # Anthropic rejects empty and whitespace-only text blocks.
    body = convert(messages=[
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": [{"type": "text", "text": "  "}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": None},
    ])
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_only_system_messages_is_rejected():
    assert bad_param(messages=[{"role": "system", "content": "Be brief."}]) == "messages"
    assert bad_param(messages=[]) == "messages"


def test_unknown_role_is_rejected():
    param = bad_param(messages=[{"role": "user", "content": "x"}, {"role": "function", "name": "f", "content": "1"}])
    assert param == "messages[1].role"


# -- request: images ---------------------------------------------------------


def test_base64_data_url_image():
    data = "/9j/4AAQSkZJRg=="
    body = convert(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}", "detail": "high"}},
        {"type": "text", "text": "Describe this image."},
    ]}])
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": data}},
        {"type": "text", "text": "Describe this image."},
    ]


def test_http_url_image():
    url = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
    body = convert(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert body["messages"][0]["content"] == [{"type": "image", "source": {"type": "url", "url": url}}]


@pytest.mark.parametrize("url", [
    "data:image/bmp;base64,Qk0=",  # Anthropic takes jpeg, png, gif and webp only
    "data:image/png,rawbytes",  # not base64
    "ftp://example.com/a.png",
])
def test_inexpressible_images_are_rejected(url):
    param = bad_param(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]}])
    assert param == "messages[0].content[1].image_url.url"


def test_unsupported_part_type_is_rejected():
    param = bad_param(messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ]}])
    assert param == "messages[0].content[0].type"


def test_image_in_system_message_is_rejected():
    param = bad_param(messages=[
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://a.example/x.png"}}]},
        {"role": "user", "content": "Hi"},
    ])
    assert param == "messages[0].content[0].type"


# -- request: tool calls and results -----------------------------------------


def tool_conversation() -> list[dict]:
    return [
        {"role": "user", "content": "What's the S&P 500 at today?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
            "type": "function",
            "function": {"name": "get_stock_price", "arguments": '{"ticker": "^GSPC"}'},
        }]},
        {"role": "tool", "tool_call_id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "content": "259.75 USD"},
    ]


def test_tool_calls_become_tool_use_and_tool_messages_tool_result():
    body = convert(messages=tool_conversation())
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What's the S&P 500 at today?"}]},
        {"role": "assistant", "content": [{
            "type": "tool_use",
            "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
            "name": "get_stock_price",
            "input": {"ticker": "^GSPC"},
        }]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "content": "259.75 USD"},
        ]},
    ]


def test_assistant_text_comes_before_its_tool_use():
    body = convert(messages=[
        {"role": "user", "content": "What is the weather like in San Francisco?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [{
            "id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }]},
    ])
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Let me check."},
        # "" is what some clients send for a call without arguments.
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {}},
    ]


def test_parallel_tool_results_are_grouped_into_one_user_turn():
    body = convert(messages=[
        {"role": "user", "content": "Weather in SF and NYC?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location": "San Francisco, CA"}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location": "New York, NY"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "15 degrees"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "65 degrees"}]},
    ])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "65 degrees"}]},
    ]


def test_tool_results_stay_before_user_text_in_a_merged_turn():
    # Anthropic requires tool_result blocks first in the user turn.
    messages = tool_conversation()
    messages.insert(2, {"role": "user", "content": "Be quick."})
    body = convert(messages=messages)
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "content": "259.75 USD"},
        {"type": "text", "text": "Be quick."},
    ]


def test_empty_tool_result_has_no_content():
    messages = tool_conversation()
    messages[2]["content"] = ""
    body = convert(messages=messages)
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV"},
    ]


@pytest.mark.parametrize("arguments", ['{"ticker": "^GSPC"', "[1, 2]", "not json"])
def test_bad_tool_arguments_are_rejected_naming_the_field(arguments):
    messages = tool_conversation()
    messages[1]["tool_calls"][0]["function"]["arguments"] = arguments
    assert bad_param(messages=messages) == "messages[1].tool_calls[0].function.arguments"


def test_tool_message_without_call_id_is_rejected():
    messages = tool_conversation()
    del messages[2]["tool_call_id"]
    assert bad_param(messages=messages) == "messages[2].tool_call_id"


# -- request: parameters -----------------------------------------------------


def test_max_tokens_precedence():
    assert convert(max_tokens=512)["max_tokens"] == 512
    assert convert(max_tokens=512, max_completion_tokens=1024)["max_tokens"] == 1024
    assert convert(max_tokens=None)["max_tokens"] == 4096
    body = chat_request_to_anthropic({"messages": [{"role": "user", "content": "Hi"}]}, MODEL, default_max_tokens=99)
    assert body["max_tokens"] == 99


def test_sampling_parameters_are_copied():
    body = convert(temperature=0.7, top_p=0.9, top_k=5)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.9, 5)
    assert "top_k" not in convert(temperature=0)
    assert convert(temperature=0)["temperature"] == 0


def test_stop_becomes_stop_sequences():
    assert convert(stop="\n\nHuman:")["stop_sequences"] == ["\n\nHuman:"]
    assert convert(stop=["END", "STOP"])["stop_sequences"] == ["END", "STOP"]
    assert "stop_sequences" not in convert(stop=None)
    assert "stop_sequences" not in convert(stop=[])
    assert bad_param(stop=[1]) == "stop"


def test_openai_only_fields_are_dropped():
    body = convert(
        n=1, logprobs=True, top_logprobs=2, frequency_penalty=0.5, presence_penalty=0.5, seed=7,
        response_format={"type": "json_object"}, stream_options={"include_usage": True},
        logit_bias={"50256": -100}, store=True, metadata={"k": "v"}, service_tier="auto",
        reasoning_effort="low", fallbacks=["openai/gpt-4o"],
    )
    assert set(body) == {"model", "max_tokens", "messages"}


def test_user_becomes_metadata_user_id_and_stream_is_copied():
    body = convert(user="13803d75-b4b5-4c3e-b2a2-6f21399b021b", stream=True)
    assert body["metadata"] == {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"}
    assert body["stream"] is True
    assert convert(stream=False)["stream"] is False


def test_function_tools_become_anthropic_tools():
    body = convert(tools=[
        WEATHER_TOOL,
        {"type": "function", "function": {"name": "get_time"}},
    ])
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": WEATHER_PARAMETERS,
        },
        # Anthropic requires an object schema even for a tool without parameters.
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in body


def test_non_function_tool_is_rejected():
    assert bad_param(tools=[{"type": "custom", "custom": {"name": "x"}}]) == "tools[0].type"


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice, expected):
    assert convert(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


@pytest.mark.parametrize("choice, expected", [
    (None, {"type": "auto", "disable_parallel_tool_use": True}),
    ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", {"type": "any", "disable_parallel_tool_use": True}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
    # Anthropic's "none" choice has no such field.
    ("none", {"type": "none"}),
])
def test_parallel_tool_calls_false(choice, expected):
    body = convert(tools=[WEATHER_TOOL], tool_choice=choice, parallel_tool_calls=False)
    assert body["tool_choice"] == expected


def test_parallel_tool_calls_true_adds_nothing():
    assert "tool_choice" not in convert(tools=[WEATHER_TOOL], parallel_tool_calls=True)


def test_tool_choice_without_tools_is_dropped():
    assert "tool_choice" not in convert(tool_choice="none")


def test_bad_tool_choice_is_rejected():
    assert bad_param(tools=[WEATHER_TOOL], tool_choice="sometimes") == "tool_choice"
    assert bad_param(tools=[WEATHER_TOOL], tool_choice={"type": "function"}) == "tool_choice.function.name"


def test_request_body_is_json_serialisable():
    body = convert(messages=tool_conversation(), tools=[WEATHER_TOOL], tool_choice="auto", stream=True)
    assert json.loads(json.dumps(body)) == body


# -- response ----------------------------------------------------------------


def test_text_response():
    resp = {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "model": MODEL,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 2095, "output_tokens": 503},
    }
    assert anthropic_response_to_chat(resp, created=1717000000) == {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 1717000000,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hi! My name is Claude."},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598},
    }


def test_created_defaults_to_now():
    resp = {"id": "msg_1", "content": [], "model": MODEL, "stop_reason": "end_turn"}
    out = anthropic_response_to_chat(resp)
    assert isinstance(out["created"], int) and out["created"] > 1_700_000_000
    assert out["choices"][0]["message"]["content"] is None


def test_tool_use_response():
    resp = {
        "id": "msg_01Aq9w938a90dw8q",
        "model": "claude-3-7-sonnet-20250219",
        "stop_reason": "tool_use",
        "role": "assistant",
        "content": [
            {"type": "text", "text": "<thinking>I need to call the get_weather function, and the user wants SF, "
                                     "which is likely San Francisco, CA.</thinking>"},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "San Francisco, CA", "unit": "celsius"}},
        ],
        "usage": {"input_tokens": 472, "output_tokens": 89},
    }
    out = anthropic_response_to_chat(resp, created=1)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"].startswith("<thinking>I need to call")
    assert choice["message"]["tool_calls"] == [{
        "id": "toolu_01A09q90qw90lq917835lq9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
    }]


def test_tool_only_response_has_null_content():
    resp = {
        "id": "msg_1", "model": MODEL, "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "name": "get_stock_price",
                     "input": {"ticker": "^GSPC"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    message = anthropic_response_to_chat(resp, created=1)["choices"][0]["message"]
    assert message["content"] is None
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"ticker": "^GSPC"}


def test_thinking_response():
    resp = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
        "content": [
            {"type": "thinking", "thinking": "Let me analyze this step by step...",
             "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
            {"type": "text", "text": "Based on my analysis..."},
        ],
        "usage": {"input_tokens": 50, "output_tokens": 100},
    }
    message = anthropic_response_to_chat(resp, created=1)["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Based on my analysis...",
        "reasoning": "Let me analyze this step by step...",
    }


def test_cache_usage():
    def usage(write, read):
        resp = {"id": "msg_1", "model": MODEL, "stop_reason": "end_turn", "content": [],
                "usage": {"input_tokens": 21, "cache_creation_input_tokens": write,
                          "cache_read_input_tokens": read, "output_tokens": 393}}
        return anthropic_response_to_chat(resp, created=1)["usage"]

    # First call writes the cache, the second reads it.
    assert usage(188086, 0) == {
        "prompt_tokens": 188107, "completion_tokens": 393, "total_tokens": 188500,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 188086},
    }
    assert usage(0, 188086) == {
        "prompt_tokens": 188107, "completion_tokens": 393, "total_tokens": 188500,
        "prompt_tokens_details": {"cached_tokens": 188086, "cache_creation_tokens": 0},
    }
    # The API reference allows null cache counts.
    assert "prompt_tokens_details" not in usage(None, None)


@pytest.mark.parametrize("stop_reason, finish_reason", [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("pause_turn", "stop"),
    ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("some_future_reason", "stop"),
])
def test_finish_reason_mapping(stop_reason, finish_reason):
    resp = {"id": "msg_1", "model": MODEL, "content": [], "stop_reason": stop_reason}
    assert anthropic_response_to_chat(resp, created=1)["choices"][0]["finish_reason"] == finish_reason


def test_response_parses_with_openai_sdk():
    types = pytest.importorskip("openai.types.chat")
    resp = {
        "id": "msg_01Aq9w938a90dw8q", "model": MODEL, "stop_reason": "tool_use", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "San Francisco, CA"}},
        ],
        "usage": {"input_tokens": 21, "cache_read_input_tokens": 100, "output_tokens": 9},
    }
    parsed = types.ChatCompletion.model_validate(anthropic_response_to_chat(resp, created=1))
    assert parsed.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert parsed.usage.prompt_tokens_details.cached_tokens == 100


# -- round trip --------------------------------------------------------------


@pytest.mark.parametrize("arguments", [
    '{"location": "San Francisco, CA", "unit": "fahrenheit"}',
    '{"query": "caf\\u00e9 \\u2615", "filters": {"open": true, "rating": [4.5, null]}, "n": 3}',
    "{}",
])
def test_tool_call_arguments_survive_a_round_trip(arguments):
    call = {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}
    body = convert(messages=[
        {"role": "user", "content": "What is the weather like in San Francisco?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "72F"},
    ])
    tool_use = body["messages"][1]["content"][0]
    # Anthropic echoes a tool_use block in the same shape in its reply.
    resp = {"id": "msg_1", "model": MODEL, "stop_reason": "tool_use", "content": [tool_use],
            "usage": {"input_tokens": 1, "output_tokens": 1}}
    back = anthropic_response_to_chat(resp, created=1)["choices"][0]["message"]["tool_calls"][0]
    assert back["id"] == call["id"]
    assert back["function"]["name"] == "get_weather"
    assert json.loads(back["function"]["arguments"]) == json.loads(arguments)


# -- stream ------------------------------------------------------------------

# Anthropic's documented basic stream.
BASIC_STREAM = """
event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-1-20250805", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}
"""  # noqa: E501

# Anthropic's documented stream with text followed by a tool_use block.
TOOL_STREAM = """
event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'s"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" weather"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" for"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Francisco"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" CA"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":":"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"unit\\": \\"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"""  # noqa: E501

# Anthropic's documented extended thinking stream (its message_start has no usage).
THINKING_STREAM = """
event: message_start
data: {"type": "message_start", "message": {"id": "msg_01...", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-1-20250805", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me solve this step by step:\\n\\n1. First break down 27 * 453"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n2. 453 = 400 + 50 + 3"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}
"""  # noqa: E501

# Condensed from Anthropic's documented web search stream: a server tool's input
# also streams as input_json_delta, and message_delta carries the final input count.
WEB_SEARCH_STREAM = """
event: message_start
data: {"type":"message_start","message":{"id":"msg_01G...","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":2679,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":3}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I'll check the current weather in New York City for you."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_014hJH82Qum7Td6UV8gDXThB","name":"web_search","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"query\\": \\"weather NYC today\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1 }

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"web_search_tool_result","tool_use_id":"srvtoolu_014hJH82Qum7Td6UV8gDXThB","content":[{"type":"web_search_result","title":"Weather in New York City","url":"https://world-weather.info/forecast/usa/new_york/may-2025/","encrypted_content":"Ev0DCioIAxgCIiQ3NmU4ZmI4OC1k...","page_age":null}]}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":" It is sunny."}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10682,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":510,"server_tool_use":{"web_search_requests":1}}}

event: message_stop
data: {"type":"message_stop"}
"""  # noqa: E501


def test_basic_stream():
    conv, chunks = run_stream(BASIC_STREAM)
    assert conv.done
    assert all(c["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hello", "!"]
    # ping, content_block_stop and message_stop yield nothing; message_delta yields one chunk.
    assert len(chunks) == 4
    last = chunks[-1]
    assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert last["usage"] == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}


def test_tool_use_stream():
    conv, chunks = run_stream(TOOL_STREAM)
    assert conv.done
    result = accumulate(chunks)
    assert result["content"] == "Okay, let's check the weather for San Francisco, CA:"
    assert result["finish_reason"] == "tool_calls"
    assert result["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
    assert list(result["tool_calls"]) == [0]
    call = result["tool_calls"][0]
    assert (call["id"], call["name"]) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    assert json.loads(call["arguments"]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}

    # The first tool chunk announces the call; later ones carry only arguments.
    tool_chunks = [c for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert tool_chunks[0]["choices"][0]["delta"]["tool_calls"] == [{
        "index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }]
    assert tool_chunks[1]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "function": {"arguments": '{"location":'}},
    ]


def test_stream_chunks_parse_with_openai_sdk():
    types = pytest.importorskip("openai.types.chat")
    _, chunks = run_stream(TOOL_STREAM)
    for chunk in chunks:
        types.ChatCompletionChunk.model_validate(chunk)


def test_tool_indexes_count_tool_use_blocks_only():
    conv = AnthropicStreamToChat(MODEL)
    conv.feed("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 9}}})
    for index, name in ((1, "get_weather"), (2, "get_time")):
        conv.feed("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}})
    (chunk,) = conv.feed("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {
        "type": "input_json_delta", "partial_json": "{}"}})
    assert chunk["choices"][0]["delta"]["tool_calls"] == [{"index": 1, "function": {"arguments": "{}"}}]


def test_thinking_stream():
    conv, chunks = run_stream(THINKING_STREAM)
    result = accumulate(chunks)
    assert result["reasoning"] == (
        "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3"
    )
    assert result["content"] == "27 * 453 = 12,231"
    assert result["finish_reason"] == "stop"
    # No usage anywhere in this documented stream: counts stay at zero.
    assert result["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert not any("signature" in json.dumps(c) for c in chunks)


def test_server_tool_stream_uses_final_usage_and_hides_server_tools():
    _, chunks = run_stream(WEB_SEARCH_STREAM)
    result = accumulate(chunks)
    assert result["tool_calls"] == {}
    assert result["content"] == "I'll check the current weather in New York City for you. It is sunny."
    assert result["usage"] == {
        "prompt_tokens": 10682, "completion_tokens": 510, "total_tokens": 11192,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 0},
    }


def test_stream_cache_usage_from_message_start():
    conv = AnthropicStreamToChat(MODEL)
    conv.feed("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "model": MODEL, "usage": {
            "input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 188086,
            "output_tokens": 1}}})
    (chunk,) = conv.feed("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                           "usage": {"output_tokens": 393}})
    assert chunk["choices"][0]["finish_reason"] == "length"
    assert chunk["usage"] == {
        "prompt_tokens": 188107, "completion_tokens": 393, "total_tokens": 188500,
        "prompt_tokens_details": {"cached_tokens": 188086, "cache_creation_tokens": 0},
    }


def test_stream_model_and_created():
    conv = AnthropicStreamToChat("fallback-model")
    (chunk,) = conv.feed("message_start", {"type": "message_start", "message": {"id": "msg_1"}})
    assert chunk["model"] == "fallback-model"
    assert isinstance(chunk["created"], int)
    (chunk,) = conv.feed("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": MODEL}})
    assert chunk["model"] == MODEL


def test_unknown_events_and_deltas_are_ignored():
    conv = AnthropicStreamToChat(MODEL)
    assert conv.feed("some_new_event", {"type": "some_new_event", "x": 1}) == []
    assert conv.feed("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
        "type": "citations_delta", "citation": {}}}) == []
    assert conv.feed("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
        "type": "redacted_thinking", "data": "abc"}}) == []
    assert not conv.done


def test_event_name_falls_back_to_data_type():
    conv = AnthropicStreamToChat(MODEL)
    assert conv.feed("", {"type": "message_stop"}) == []
    assert conv.done


@pytest.mark.parametrize("error_type, status, retryable, rotate_key", [
    ("overloaded_error", 503, True, False),
    ("api_error", 500, True, False),
    ("rate_limit_error", 429, False, True),
    ("invalid_request_error", 400, False, False),
    ("authentication_error", 401, False, False),
    ("timeout_error", 504, True, False),
    ("brand_new_error", 400, False, False),
])
def test_stream_error_event(error_type, status, retryable, rotate_key):
    conv = AnthropicStreamToChat(MODEL)
    conv.feed("message_start", {"type": "message_start", "message": {"id": "msg_1"}})
    with pytest.raises(GatewayError) as info:
        conv.feed("error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    err = info.value
    assert (err.message, err.error_type) == ("Overloaded", error_type)
    assert (err.http_status, err.retryable, err.rotate_key) == (status, retryable, rotate_key)
    assert not err.is_bifrost_error


def test_error_event_in_the_middle_of_a_documented_stream():
    events = parse_sse(TOOL_STREAM)
    events.insert(5, ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    conv = AnthropicStreamToChat(MODEL)
    seen = []
    with pytest.raises(GatewayError):
        for event, data in events:
            seen.extend(conv.feed(event, data))
    assert accumulate(seen)["content"] == "Okay,"
    assert not conv.done


# -- errors ------------------------------------------------------------------


def test_error_from_documented_body():
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "Invalid request"},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    assert error_from_anthropic(400, body) == ("Invalid request", "invalid_request_error")
    assert error_from_anthropic(400, json.dumps(body).encode()) == ("Invalid request", "invalid_request_error")
    raw = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    assert error_from_anthropic(529, raw) == ("Overloaded", "overloaded_error")


def test_error_from_other_bodies_falls_back_to_text():
    html = b"<html><body>502 Bad Gateway</body></html>"
    assert error_from_anthropic(502, html) == (html.decode(), None)
    message, error_type = error_from_anthropic(500, b"x" * 2000)
    assert (len(message), error_type) == (500, None)
    assert error_from_anthropic(500, {"detail": "nope"}) == ('{"detail":"nope"}', None)
    assert error_from_anthropic(503, b"\xff\xfe oops")[0].endswith("oops")
    message, error_type = error_from_anthropic(504, b"")
    assert "504" in message and error_type is None
