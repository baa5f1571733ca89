"""app.dialects.gemini: payloads shaped like Google's Gemini API docs, both directions, and round trips."""
from __future__ import annotations

import base64
import json

import pytest

from app.dialects import gemini as g
from app.errors import GatewayError

SIG_A = "CiwBjz1rX0fTvl1rCZl0mHn9sL2x+/aE3Q=="  # an opaque, standard-base64 signature (kept byte for byte)
SIG_B = "Ej4KPAGPPWtfYW5vdGhlcl9zaWduYXR1cmVfLV8="

# -- Gemini replies -> canonical ---------------------------------------------------------------

DOCS_TEXT_REPLY = {  # generateContent, "Explain how AI works in a few words"
    "candidates": [{
        "content": {"parts": [{"text": "AI learns patterns from data to make predictions."}], "role": "model"},
        "finishReason": "STOP", "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}],
    }],
    "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 9, "totalTokenCount": 437,
                      "thoughtsTokenCount": 420, "cachedContentTokenCount": 2,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}]},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "j2ZxaN6pLcmR1dkP8KHx-QM",
}

DOCS_FUNCTION_CALL_REPLY = {  # function calling docs: get_current_temperature for London, Gemini 3 signature
    "candidates": [{
        "content": {"role": "model", "parts": [
            {"text": "Let me check.", "thought": True},
            {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}},
             "thoughtSignature": SIG_A},
        ]},
        "finishReason": "STOP", "index": 0,
    }],
    "usageMetadata": {"promptTokenCount": 74, "candidatesTokenCount": 18, "totalTokenCount": 120,
                      "thoughtsTokenCount": 28},
    "modelVersion": "gemini-3-pro-preview",
}


def test_text_reply_to_chat_keeps_text_usage_cached_and_thinking_tokens():
    chat = g.gemini_response_to_chat(DOCS_TEXT_REPLY, "gemini-2.5-flash", created=1)
    assert chat["id"] == "j2ZxaN6pLcmR1dkP8KHx-QM"
    assert chat["object"] == "chat.completion" and chat["model"] == "gemini-2.5-flash"
    choice = chat["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "AI learns patterns from data to make predictions."}
    assert choice["finish_reason"] == "stop"
    assert chat["usage"] == {"prompt_tokens": 8, "completion_tokens": 429, "total_tokens": 437,
                             "prompt_tokens_details": {"cached_tokens": 2},
                             "completion_tokens_details": {"reasoning_tokens": 420}}


def test_function_call_reply_finishes_with_tool_calls_and_carries_the_signature():
    chat = g.gemini_response_to_chat(DOCS_FUNCTION_CALL_REPLY, "gemini-3-pro-preview")
    choice = chat["choices"][0]
    assert choice["finish_reason"] == "tool_calls"  # Gemini said STOP
    message = choice["message"]
    assert message["content"] is None and message["reasoning"] == "Let me check."
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_current_temperature", "arguments": '{"location":"London"}'}
    assert call["extra_content"] == {"google": {"thought_signature": SIG_A}}


@pytest.mark.parametrize("reason, expected", [
    ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"),
    ("SOMETHING_NEW", "stop"),
])
def test_finish_reasons(reason, expected):
    reply = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    assert g.gemini_response_to_chat(reply, "m")["choices"][0]["finish_reason"] == expected


def test_blocked_prompt_has_no_candidates_and_becomes_content_filter():
    reply = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
             "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}
    chat = g.gemini_response_to_chat(reply, "m")
    assert chat["choices"][0]["finish_reason"] == "content_filter"
    assert chat["usage"]["prompt_tokens"] == 5 and chat["usage"]["completion_tokens"] == 0


# -- Gemini stream -> canonical chunks ----------------------------------------------------------

def test_stream_events_become_chunks_with_usage_in_the_last():
    conv = g.GeminiStreamToChat("gemini-2.5-flash")
    first = conv.feed({"candidates": [{"content": {"parts": [{"text": "Hello"}], "role": "model"}, "index": 0}],
                       "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}, "responseId": "r1"})
    assert first[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello"}
    assert "usage" not in first[0] and not conv.done
    last = conv.feed({"candidates": [{"content": {"parts": [{"text": " world"}], "role": "model"},
                                      "finishReason": "STOP", "index": 0}],
                      "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}})
    assert conv.done
    assert last[-1]["choices"][0] == {"index": 0, "delta": {"content": " world"}, "logprobs": None,
                                      "finish_reason": "stop"}
    assert last[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert {c["id"] for c in first + last} == {"r1"}


def test_stream_function_call_is_one_whole_tool_call_with_signature():
    conv = g.GeminiStreamToChat("gemini-3-pro-preview")
    chunks = conv.feed(DOCS_FUNCTION_CALL_REPLY)
    deltas = [c["choices"][0] for c in chunks]
    call = deltas[-1]["delta"]["tool_calls"][0]
    assert call["index"] == 0 and call["function"]["arguments"] == '{"location":"London"}'
    assert call["extra_content"]["google"]["thought_signature"] == SIG_A
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_stream_error_event_raises_with_google_status():
    conv = g.GeminiStreamToChat("m")
    with pytest.raises(GatewayError) as info:
        conv.feed({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}})
    assert info.value.http_status == 429 and info.value.retryable and info.value.rotate_key
    assert info.value.error_type == "RESOURCE_EXHAUSTED"


# -- canonical requests -> Gemini ---------------------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_current_temperature", "description": "Gets the current temperature for a given location.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"],
                   "additionalProperties": False}}}


def test_chat_request_to_gemini_roles_system_media_tools_and_config():
    req = {
        "messages": [
            {"role": "system", "content": "You are a cat."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Weather in London?"},
        ],
        "tools": [WEATHER_TOOL], "tool_choice": "required",
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "stop": "END", "seed": 7, "n": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    }
    body = g.chat_request_to_gemini(req, "gemini-2.5-flash")
    assert body["systemInstruction"] == {"parts": [{"text": "You are a cat."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
        ]},
        {"role": "model", "parts": [{"text": "A cat."}]},
        {"role": "user", "parts": [{"text": "Weather in London?"}]},
    ]
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_current_temperature"
    assert declaration["parametersJsonSchema"] == WEATHER_TOOL["function"]["parameters"]  # JSON Schema kept whole
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"], "seed": 7,
        "candidateCount": 1, "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}


def test_tool_turns_keep_signature_byte_identical_and_group_responses():
    req = {"messages": [
        {"role": "user", "content": "Check flight AA100 and book a taxi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "fc1", "type": "function", "function": {"name": "check_flight", "arguments": '{"flight":"AA100"}'},
             "extra_content": {"google": {"thought_signature": SIG_A}}},
            {"id": "fc2", "type": "function", "function": {"name": "book_taxi", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "fc1", "content": '{"status":"delayed"}'},
        {"role": "tool", "tool_call_id": "fc2", "content": "booked"},
    ]}
    contents = g.chat_request_to_gemini(req)["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "check_flight", "args": {"flight": "AA100"}, "id": "fc1"}, "thoughtSignature": SIG_A},
        {"functionCall": {"name": "book_taxi", "args": {}, "id": "fc2"}},
    ]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "check_flight", "response": {"status": "delayed"}, "id": "fc1"}},
        {"functionResponse": {"name": "book_taxi", "response": {"result": "booked"}, "id": "fc2"}},
    ]}


def test_reasoning_effort_maps_to_thinking_config():
    req = {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"}
    assert g.chat_request_to_gemini(req, "gemini-2.5-pro")["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024}}
    assert g.chat_request_to_gemini(req, "gemini-3-pro-preview")["generationConfig"] == {"thinkingConfig": {"thinkingLevel": "low"}}


@pytest.mark.parametrize("req, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]},
     "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval"}]}, "tools[0].type"),
])
def test_bad_canonical_requests_name_the_field(req, param):
    with pytest.raises(GatewayError) as info:
        g.chat_request_to_gemini(req)
    assert info.value.http_status == 400 and info.value.param == param


# -- Gemini requests -> canonical (the /genai surface) ----------------------------------------

DOCS_FUNCTION_TURNS = {  # the thought-signature docs' sequential calls, as the SDK sends them
    "systemInstruction": {"parts": [{"text": "You are a travel agent."}]},
    "contents": [
        {"role": "user", "parts": [{"text": "Check flight status for AA100 and book a taxi if delayed"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "check_flight", "args": {"flight": "AA100"}},
                                     "thoughtSignature": SIG_A}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "check_flight",
                                                         "response": {"status": "delayed"}}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "book_taxi", "args": {"time": "10 AM"}},
                                     "thoughtSignature": SIG_B}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "book_taxi", "response": {"result": "booked"}}}]},
    ],
    "tools": [{"functionDeclarations": [
        {"name": "check_flight", "description": "Gets flight status",
         "parameters": {"type": "OBJECT", "properties": {"flight": {"type": "STRING", "nullable": True}},
                        "required": ["flight"], "propertyOrdering": ["flight"]}},
        {"name": "book_taxi", "parametersJsonSchema": {"type": "object", "properties": {"time": {"type": "string"}}}},
    ]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["book_taxi"]}},
    "generationConfig": {"temperature": 0.5, "topK": 40, "maxOutputTokens": 256, "stopSequences": ["x"],
                         "responseMimeType": "application/json"},
}


def test_gemini_request_to_chat_pairs_calls_and_responses():
    chat = g.gemini_request_to_chat(DOCS_FUNCTION_TURNS)
    messages = chat["messages"]
    assert messages[0] == {"role": "system", "content": "You are a travel agent."}
    assert messages[1] == {"role": "user", "content": "Check flight status for AA100 and book a taxi if delayed"}
    assert messages[2]["tool_calls"] == [{"id": "call_1_0", "type": "function",
                                          "function": {"name": "check_flight", "arguments": '{"flight":"AA100"}'}}]
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1_0", "content": '{"status":"delayed"}'}
    assert messages[4]["tool_calls"][0]["id"] == "call_3_0"
    assert messages[5] == {"role": "tool", "tool_call_id": "call_3_0", "content": "booked"}
    assert chat["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"flight": {"type": ["string", "null"]}}, "required": ["flight"]}
    assert chat["tools"][1]["function"]["parameters"]["properties"]["time"] == {"type": "string"}
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "book_taxi"}}
    assert chat["temperature"] == 0.5 and chat["max_tokens"] == 256 and chat["stop"] == ["x"]
    assert chat["response_format"] == {"type": "json_object"}
    assert "top_k" not in chat  # OpenAI has no top_k; strict upstreams would reject it


def test_gemini_inline_media_becomes_canonical_parts():
    body = {"contents": [{"role": "user", "parts": [
        {"text": "Describe"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
        {"inline_data": {"mime_type": "audio/wav", "data": "UklG"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}}]}]}
    (message,) = g.gemini_request_to_chat(body)["messages"]
    assert message["content"] == [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


@pytest.mark.parametrize("body, param", [
    ({}, "contents"),
    ({"contents": [{"role": "user"}]}, "contents[0].parts"),
    ({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}, "tools[0]"),
    ({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}, "contents[0].parts[0]"),
])
def test_bad_gemini_requests_name_the_field(body, param):
    with pytest.raises(GatewayError) as info:
        g.gemini_request_to_chat(body)
    assert info.value.http_status == 400 and info.value.param == param


# -- canonical replies and streams -> Gemini ---------------------------------------------------

def test_chat_reply_to_gemini():
    reply = {"id": "chatcmpl-1", "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls",
             "message": {"role": "assistant", "content": "Checking.", "tool_calls": [
                 {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                       "completion_tokens_details": {"reasoning_tokens": 2}}}
    out = g.chat_response_to_gemini(reply)
    assert out["candidates"] == [{"content": {"role": "model", "parts": [
        {"text": "Checking."}, {"functionCall": {"name": "f", "args": {"a": 1}, "id": "call_1"}}]},
        "index": 0, "finishReason": "STOP"}]
    assert out["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 12,
                                    "thoughtsTokenCount": 2}
    assert out["modelVersion"] == "gpt-4o-mini" and out["responseId"] == "chatcmpl-1"


def test_chat_stream_to_gemini_assembles_tool_calls_and_ends_with_usage():
    conv = g.ChatStreamToGemini("gpt-4o-mini")
    events = []
    for chunk in [
        {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_9", "function": {"name": "get", "arguments": '{"ci'}}]}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ]:
        events += conv.feed(chunk)
    assert [e["candidates"][0]["content"]["parts"] for e in events] == [[{"text": "Hi"}]]
    (last,) = conv.finish()
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get", "args": {"city": "Paris"}, "id": "call_9"}}]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}
    assert last["responseId"] == "c1"


# -- round trips -------------------------------------------------------------------------------

def test_round_trip_canonical_gemini_canonical_keeps_every_shared_field():
    canonical = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1_0", "type": "function", "function": {"name": "get_current_temperature",
                                                                 "arguments": '{"location":"London"}'}}]},
        {"role": "tool", "tool_call_id": "call_1_0", "content": '{"temperature":"12C"}'},
    ], "tools": [WEATHER_TOOL], "tool_choice": "auto", "temperature": 0.3, "top_p": 0.8, "max_tokens": 50,
        "stop": ["\n\n"], "seed": 1, "presence_penalty": 0.1, "frequency_penalty": 0.2}
    back = g.gemini_request_to_chat(g.chat_request_to_gemini(canonical, "gemini-2.5-flash"))
    assert back["messages"] == canonical["messages"]
    assert back["tools"] == canonical["tools"]
    for key in ("tool_choice", "temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty",
                "frequency_penalty"):
        assert back[key] == canonical[key], key


def test_round_trip_gemini_reply_through_canonical_keeps_the_signature_byte_identical():
    back = g.chat_response_to_gemini(g.gemini_response_to_chat(DOCS_FUNCTION_CALL_REPLY, "gemini-3-pro-preview"))
    parts = back["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "Let me check.", "thought": True}
    assert parts[1]["functionCall"]["name"] == "get_current_temperature"
    assert parts[1]["functionCall"]["args"] == {"location": "London"}
    assert parts[1]["thoughtSignature"] == SIG_A
    assert back["usageMetadata"] == {"promptTokenCount": 74, "candidatesTokenCount": 18, "totalTokenCount": 120,
                                     "thoughtsTokenCount": 28}
    # and into the next request: the tool call (with its extra_content) goes back as Gemini sent it
    message = g.gemini_response_to_chat(DOCS_FUNCTION_CALL_REPLY, "gemini-3-pro-preview")["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    body = g.chat_request_to_gemini({"messages": [{"role": "user", "content": "Temp in London?"}, message,
                                                  {"role": "tool", "tool_call_id": call_id, "content": "12C"}]})
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == SIG_A


def test_round_trip_text_signature_rides_on_the_message():
    reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Done.", "thoughtSignature": SIG_B}]},
                             "finishReason": "STOP"}]}
    message = g.gemini_response_to_chat(reply, "gemini-3-pro-preview")["choices"][0]["message"]
    assert message["extra_content"] == {"google": {"thought_signature": SIG_B}}
    body = g.chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}, message,
                                                  {"role": "user", "content": "y"}]})
    assert body["contents"][1] == {"role": "model", "parts": [{"text": "Done.", "thoughtSignature": SIG_B}]}


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "prompt_tokens_details": {"cached_tokens": 3},
     "completion_tokens_details": {"reasoning_tokens": 5}},
])
def test_usage_round_trip(usage):
    assert g.usage_to_chat(g.usage_from_chat(usage)) == usage


# -- errors, embeddings, token counts, models ---------------------------------------------------

@pytest.mark.parametrize("status, name", [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"),
                                          (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"),
                                          (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE"),
                                          (504, "DEADLINE_EXCEEDED"), (529, "INTERNAL"), (418, "INVALID_ARGUMENT")])
def test_error_body_in_googles_shape(status, name):
    assert g.error_body(status, "boom") == {"error": {"code": status, "message": "boom", "status": name}}


def test_error_body_keeps_an_upstream_status_name_and_parses_googles_errors():
    assert g.error_body(400, "x", "FAILED_PRECONDITION")["error"]["status"] == "FAILED_PRECONDITION"
    assert g.error_body(400, "x", "invalid_request_error")["error"]["status"] == "INVALID_ARGUMENT"
    docs_error = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                            "status": "INVALID_ARGUMENT",
                            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                         "reason": "API_KEY_INVALID"}]}}
    assert g.error_from_gemini(docs_error) == ("API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
    assert g.error_from_gemini("<html>")[1] is None


def test_embeddings_both_ways_and_base64():
    body = g.embedding_request_to_gemini({"input": ["What is the meaning of life?", "b"], "dimensions": 3},
                                         "gemini-embedding-001")
    assert body == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "What is the meaning of life?"}]},
         "outputDimensionality": 3},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3}]}
    reply = {"embeddings": [{"values": [0.5, -0.25, 1.0]}, {"values": [0.0, 0.125, -1.0]}]}
    floats = g.gemini_embeddings_to_openai(reply, "gemini-embedding-001", "float")
    assert floats["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.0, 0.125, -1.0]}
    assert floats["usage"] == {"prompt_tokens": 0, "total_tokens": 0} and floats["object"] == "list"
    encoded = g.gemini_embeddings_to_openai(reply, "gemini-embedding-001", "base64")["data"][0]["embedding"]
    assert len(base64.b64decode(encoded)) == 12 and g.decode_base64(encoded) == [0.5, -0.25, 1.0]
    # the /genai direction
    assert g.gemini_embed_to_openai({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8}, False) == {
        "input": ["hi"], "encoding_format": "float", "dimensions": 8}
    assert g.openai_embeddings_to_gemini(floats, batch=True) == reply
    assert g.openai_embeddings_to_gemini({"data": [{"index": 0, "embedding": encoded}]}, batch=False) == {
        "embedding": {"values": [0.5, -0.25, 1.0]}}
    with pytest.raises(GatewayError):
        g.embedding_request_to_gemini({"input": [1, 2, 3]}, "m")


def test_count_tokens_and_models():
    chat = g.count_request_to_chat({"contents": [{"role": "user", "parts": [{"text": "The quick brown fox"}]}]})
    assert chat["messages"] == [{"role": "user", "content": "The quick brown fox"}]
    body = g.count_request_to_gemini({"contents": [{"parts": [{"text": "x"}]}]}, "gemini-2.5-flash")
    assert body == {"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": [{"parts": [{"text": "x"}]}]}}
    assert g.count_reply_to_gemini({"input_tokens": 4}) == {"totalTokens": 4}
    docs_model = {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
                  "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                  "supportedGenerationMethods": ["generateContent", "countTokens"]}
    entry = g.gemini_model_to_openai(docs_model)
    assert entry["id"] == "gemini-2.5-flash" and entry["input_token_limit"] == 1048576
    assert g.openai_model_to_gemini(entry, "gemini-2.5-flash") == {
        k: v for k, v in docs_model.items() if k != "description"}
    assert g.openai_model_to_gemini({"id": "gpt-4o-mini"}, "openai/gpt-4o-mini")["name"] == "models/openai/gpt-4o-mini"
    assert json.dumps(g.openapi_to_json_schema({"type": "ARRAY", "items": {"type": "INTEGER"}})) == \
        '{"type": "array", "items": {"type": "integer"}}'


def test_stream_usage_arriving_after_the_finish_is_a_usage_only_chunk():
    conv = g.GeminiStreamToChat("m")
    conv.feed({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}]})
    (chunk,) = conv.feed({"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}})
    assert chunk["choices"] == [] and chunk["usage"]["total_tokens"] == 2


def test_a_signature_can_ride_in_the_tool_call_id_for_surfaces_without_extra_fields():
    call_id = g.id_with_signature("toolu_01", SIG_A)
    assert all(c.isalnum() or c in "_-" for c in call_id)  # fits Anthropic's tool_use id pattern
    assert g.split_id_signature(call_id) == ("toolu_01", SIG_A)
    assert g.split_id_signature("call_plain") == ("call_plain", None)
    body = g.chat_request_to_gemini({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]})
    assert body["contents"][1]["parts"][0] == {"functionCall": {"name": "get_weather", "args": {}, "id": "toolu_01"},
                                               "thoughtSignature": SIG_A}
    assert body["contents"][2]["parts"][0]["functionResponse"]["id"] == "toolu_01"
