"""Conversion between the canonical form and Anthropic's Messages API, both directions.

The canonical form is the OpenAI Chat Completions wire shape as plain dicts. The
provider adapter needs canonical -> Anthropic requests and Anthropic -> canonical
replies; the /anthropic surface needs the reverse of each, for attempts that go to
another provider family. One module per part of the exchange:

- ``request``: chat request <-> Messages body
- ``response``: Message <-> chat.completion, usage, errors
- ``stream``: Anthropic events <-> chat.completion.chunk

Everything here is a pure function of its input: no I/O, no Flask, no clock except
where a caller leaves ``created`` unset. Input the other side cannot express raises
:func:`app.errors.bad_request` naming the offending field.
"""
from app.dialects.anthropic.request import chat_request_to_anthropic, messages_request_to_chat
from app.dialects.anthropic.response import (
    anthropic_response_to_chat,
    anthropic_usage,
    chat_response_to_message,
    chat_usage,
    error_body,
    error_from_anthropic,
    error_type_for,
    stop_reason,
)
from app.dialects.anthropic.stream import AnthropicStreamToChat, ChatStreamToAnthropic, UsageMeter, stream_error

__all__ = [
    "AnthropicStreamToChat", "ChatStreamToAnthropic", "UsageMeter", "anthropic_response_to_chat", "anthropic_usage",
    "chat_request_to_anthropic", "chat_response_to_message", "chat_usage", "error_body", "error_from_anthropic",
    "error_type_for", "messages_request_to_chat", "stop_reason", "stream_error",
]
