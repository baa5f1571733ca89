"""How the drop-in surfaces read model strings and the x-bf-fallbacks header."""
from __future__ import annotations

import pytest

from app.errors import GatewayError
from app.schemas import Target, header_fallbacks, parse_chat, parse_fallbacks, split_model

KNOWN = frozenset({"openai", "anthropic", "azure", "openrouter", "groq"})


@pytest.mark.parametrize("value,default,expected", [
    ("gpt-4o-mini", "openai", Target("openai", "gpt-4o-mini")),
    ("claude-haiku-4-5", "anthropic", Target("anthropic", "claude-haiku-4-5")),
    ("anthropic/claude-haiku-4-5", "openai", Target("anthropic", "claude-haiku-4-5")),
    ("openrouter/anthropic/claude-3.5", "openai", Target("openrouter", "anthropic/claude-3.5")),
    ("meta-llama/Llama-3.3-70B", "openai", Target("openai", "meta-llama/Llama-3.3-70B")),  # not a provider
    ("gpt-4o", "groq", Target("groq", "gpt-4o")),  # x-model-provider
])
def test_default_provider(value, default, expected):
    assert split_model(value, KNOWN, default_provider=default) == expected


def test_without_a_default_the_unified_api_still_requires_a_provider():
    with pytest.raises(GatewayError) as raised:
        split_model("gpt-4o-mini", KNOWN)
    assert raised.value.code == "missing_provider"


def test_parse_chat_with_a_default_provider():
    parsed = parse_chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                         "fallbacks": ["anthropic/claude-haiku-4-5"]}, KNOWN, "openai")
    assert parsed.target == Target("openai", "gpt-4o-mini")
    assert parsed.fallbacks == [Target("anthropic", "claude-haiku-4-5")]
    assert "model" not in parsed.body and "fallbacks" not in parsed.body


def test_header_fallbacks():
    assert header_fallbacks(None, KNOWN) == []
    assert header_fallbacks(" openai/gpt-4o-mini , anthropic/claude-haiku-4-5,", KNOWN) == [
        Target("openai", "gpt-4o-mini"), Target("anthropic", "claude-haiku-4-5")]
    with pytest.raises(GatewayError) as raised:
        header_fallbacks("gpt-4o-mini", KNOWN)
    assert raised.value.http_status == 400 and raised.value.param == "x-bf-fallbacks"


def test_body_fallbacks_outside_the_schema():
    assert parse_fallbacks(["groq/llama-3"], KNOWN) == [Target("groq", "llama-3")]
    with pytest.raises(GatewayError) as raised:
        parse_fallbacks("openai/gpt-4o", KNOWN)
    assert raised.value.param == "fallbacks"
    with pytest.raises(GatewayError) as raised:
        parse_fallbacks(["nowhere/x"], KNOWN)
    assert raised.value.param == "fallbacks[0]"
