"""Gemini thought signatures through the Anthropic reverse directions, and their removal for OpenAI upstreams.

Pure functions: canonical reply / chunks -> Anthropic puts the signature in the tool_use id;
an Anthropic request with such an id -> canonical splits it back into the id and extra_content;
chat_request_to_gemini then sends the signature byte for byte. ``without_google_extras`` is
what an OpenAI-family upstream gets.
"""
from __future__ import annotations

from app.dialects import gemini
from app.dialects.anthropic import ChatStreamToAnthropic, chat_response_to_message, messages_request_to_chat
from app.errors import name_for_status
from app.providers.openai import without_google_extras

SIG = "Ab+/cd=="  # standard base64 with padding and both non-alphanumeric characters
SIGNED_CALL = {"id": "call_1", "type": "function", "extra_content": {"google": {"thought_signature": SIG}},
               "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}


def anthropic_turns(tool_use_id: str) -> dict:
    return {"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use_id, "name": "get_weather",
                                           "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "sunny"}]}]}


def test_a_reply_tool_call_signature_rides_in_the_tool_use_id_and_comes_back_byte_identical():
    reply = {"id": "x", "model": "gemini-3", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [SIGNED_CALL]}}], "usage": {}}
    (block,) = chat_response_to_message(reply)["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("call_1__thought_")
    assert all(c.isalnum() or c in "_-" for c in block["id"])

    canonical = messages_request_to_chat(anthropic_turns(block["id"]))
    call = canonical["messages"][1]["tool_calls"][0]
    assert call["id"] == "call_1" and gemini.signature_of(call) == SIG
    assert canonical["messages"][2]["tool_call_id"] == "call_1"
    body = gemini.chat_request_to_gemini(canonical, "gemini-3-pro-preview")
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == SIG
    assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_a_streamed_tool_call_signature_rides_in_the_tool_use_id():
    converter = ChatStreamToAnthropic("gemini-3")
    frames = converter.feed({"id": "x", "choices": [{"index": 0, "delta": {
        "role": "assistant", "tool_calls": [{**SIGNED_CALL, "index": 0}]}, "finish_reason": "tool_calls"}]})
    frames += converter.finish()
    starts = [data for name, data in frames if name == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    tool_use_id = starts[0]["content_block"]["id"]
    assert gemini.split_id_signature(tool_use_id) == ("call_1", SIG)


def test_an_unsigned_tool_call_keeps_its_id():
    reply = {"choices": [{"message": {"role": "assistant", "tool_calls": [
        {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}
    assert chat_response_to_message(reply)["content"][0]["id"] == "call_2"
    canonical = messages_request_to_chat(anthropic_turns("toolu_plain"))
    assert canonical["messages"][1]["tool_calls"][0] == {
        "id": "toolu_plain", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}


def test_openai_upstreams_get_the_history_without_extra_content():
    body = {"model": "m", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Looking", "extra_content": {"google": {"thought_signature": SIG}},
         "tool_calls": [SIGNED_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}
    cleaned = without_google_extras(body)
    assert cleaned["messages"][1] == {"role": "assistant", "content": "Looking", "tool_calls": [
        {"id": "call_1", "type": "function", "function": SIGNED_CALL["function"]}]}
    assert cleaned["messages"][0] is body["messages"][0] and cleaned["messages"][2] is body["messages"][2]
    assert "extra_content" in body["messages"][1]  # the original stays whole for a Gemini fallback


def test_an_ordinary_body_is_returned_as_it_is():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                                       {"role": "assistant", "tool_calls": [
                                           {"id": "c", "type": "function", "function": {"name": "f",
                                                                                         "arguments": "{}"}}]}]}
    assert without_google_extras(body) is body
    assert without_google_extras({"model": "m", "prompt": "x"}) == {"model": "m", "prompt": "x"}


def test_error_names_by_status_share_one_rule():
    assert name_for_status(429, {429: "rate"}, "server", "client") == "rate"
    assert name_for_status(503, {}, "server", "client") == "server"
    assert name_for_status(418, {}, "server", "client") == "client"
    assert gemini.status_name(429) == "RESOURCE_EXHAUSTED" and gemini.status_name(507) == "INTERNAL"
