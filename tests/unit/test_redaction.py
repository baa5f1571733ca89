"""Redacting configured keys from upstream error text."""
from app.config import parse_config
from app.errors import GatewayError
from app.redaction import MASK, Redactor

KEY = "sk-proj-abcdef1234567890wxyz"


def redactor() -> Redactor:
    return Redactor.from_config(parse_config({"providers": {
        "openai": {"keys": [{"name": "a", "value": KEY}, {"name": "short", "value": "x"}],
                   "network_config": {"extra_headers": {"Authorization": "Bearer op-token-998877", "X-Org": "acme-corp"}}},
    }}))


def test_whole_and_partial_keys_are_masked():
    redact = redactor()
    assert redact(f"Incorrect API key provided: {KEY}.") == f"Incorrect API key provided: {MASK}."
    assert "sk-proj-abcd" not in redact("key sk-proj-abcd************wxyz is wrong")
    assert "op-token" not in redact("sent Bearer op-token-998877") and "op-token" not in redact("op-token-998877")


def test_ordinary_text_and_short_values_are_left_alone():
    redact = redactor()
    text = "The model `gpt-4o` does not exist; x marks acme-corp"
    assert redact(text) == text  # "x" is too short to be a key, X-Org is no credential


def test_scrub_covers_message_code_and_param():
    error = GatewayError(f"bad {KEY}", 401, code=KEY, param=KEY)
    redactor().scrub(error)
    assert KEY not in error.message + error.code + error.param + str(error)
