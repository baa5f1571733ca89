import pytest

from app.errors import GatewayError
from app.schemas import Target, parse_chat, parse_text, split_model

KNOWN = frozenset({"openai", "anthropic", "openrouter", "my-openai"})


def test_spec_request_shape():
    parsed = parse_chat(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hello, how are you?"}],
            "params": {"temperature": 0.7, "max_tokens": 1000},
            "fallbacks": ["anthropic/claude-3-sonnet-20240229"],
            "temperature": 0.2,
            "my_vendor_field": {"x": 1},
        },
        KNOWN,
    )
    assert parsed.target == Target("openai", "gpt-4o-mini")
    assert parsed.fallbacks == [Target("anthropic", "claude-3-sonnet-20240229")]
    # top-level wins over the legacy params object; unknown fields survive
    assert parsed.body == {
        "messages": [{"role": "user", "content": "Hello, how are you?"}],
        "temperature": 0.2, "max_tokens": 1000, "my_vendor_field": {"x": 1},
    }
    assert parsed.stream is False


def test_model_splits_on_first_slash_only():
    assert split_model("openrouter/anthropic/claude-3.5", KNOWN) == Target("openrouter", "anthropic/claude-3.5")
    assert split_model("my-openai/llama", KNOWN) == Target("my-openai", "llama")


def test_bare_model_is_left_for_a_virtual_key_to_route():
    # The engine refuses it with missing_provider when no plugin routed it (tests/integration).
    parsed = parse_chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, KNOWN)
    assert parsed.target == Target("", "gpt-4o")
    with pytest.raises(GatewayError) as raised:
        split_model("gpt-4o", KNOWN)
    assert raised.value.code == "missing_provider"


@pytest.mark.parametrize(
    "model, code",
    [("nonexistent/x", "invalid_provider")],
)
def test_bad_model_strings(model, code):
    with pytest.raises(GatewayError) as raised:
        parse_chat({"model": model, "messages": [{"role": "user", "content": "x"}]}, KNOWN)
    assert raised.value.http_status == 400 and raised.value.code == code and raised.value.param == "model"


def test_content_str_form_is_normalised():
    parsed = parse_chat(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [
                {"role": "user", "content": "Read the README.md file"},
                {"role": "tool", "content": {"content_str": "# Bifrost"}, "tool_call_id": "call_123"},
            ],
        },
        KNOWN,
    )
    assert parsed.body["messages"][1]["content"] == "# Bifrost"


@pytest.mark.parametrize(
    "body, param, text",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "model is required"),
        ({"model": "openai/x"}, "messages", "messages is required for chat completion"),
        ({"model": "openai/x", "messages": []}, "messages", "messages cannot be empty"),
        ({"model": "openai/x", "messages": ["hi"]}, "messages[0]", "must be a JSON object"),
        ({"model": "openai/x", "messages": [{"content": "x"}]}, "messages[0].role", "string role"),
        ({"model": "openai/x", "messages": [{"role": "user", "content": {"weird": 1}}]}, "messages[0].content", "content_str"),
        ({"model": "openai/x", "messages": [{"role": "user", "content": "x"}], "fallbacks": [3]}, "fallbacks[0]", "provider/model"),
        ({"model": "openai/x", "messages": [{"role": "user", "content": "x"}], "fallbacks": ["zzz/y"]}, "fallbacks[0]", "Invalid provider"),
        ({"model": "openai/x", "messages": [{"role": "user", "content": "x"}], "stream": "yes please"}, "stream", "Not a valid boolean"),
    ],
)
def test_bad_chat_bodies_name_the_field(body, param, text):
    with pytest.raises(GatewayError) as raised:
        parse_chat(body, KNOWN)
    assert raised.value.http_status == 400
    assert raised.value.param == param
    assert text in raised.value.message


def test_text_accepts_text_or_prompt():
    assert parse_text({"model": "openai/x", "text": "The future of AI is"}, KNOWN).body["prompt"] == "The future of AI is"
    assert parse_text({"model": "openai/x", "prompt": "p"}, KNOWN).body == {"prompt": "p"}
    with pytest.raises(GatewayError, match="prompt is required for text completion"):
        parse_text({"model": "openai/x"}, KNOWN)
