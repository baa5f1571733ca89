"""No key echoed back, no hop-by-hop header forwarded, one log line per unreachable provider (issue 6, items 6-8)."""
from __future__ import annotations

import pytest
import requests

from tests.fakes import MalformedChunk, Status

HELLO = [{"role": "user", "content": "hi"}]
OPENAI_KEY = "sk-openai-1"  # conftest: TEST_OPENAI_KEY
ANTHROPIC_KEY = "sk-ant-1"


def chat(gateway, model: str, **kwargs):
    return requests.post(gateway.url + "/v1/chat/completions", json={"model": model, "messages": HELLO},
                         timeout=15, **kwargs)


def new_log(gateway, since: int) -> str:
    return gateway.log()[since:]


@pytest.mark.parametrize("message", [
    f"Incorrect API key provided: {OPENAI_KEY}.",
    f"upstream saw 'Authorization: Bearer {OPENAI_KEY}'",
    "Incorrect API key provided: sk-opena****ai-1.",  # a quoted piece of the key
])
def test_an_echoing_upstream_never_gets_the_key_to_the_client_or_the_log(gateway, fake, message):
    since = len(gateway.log())
    fake.plan(Status(500, message=message), Status(500, message=message), Status(500, message=message),
              model="gpt-4o-mini")
    reply = chat(gateway, "openai/gpt-4o-mini")
    assert reply.status_code == 500, reply.text
    assert len(fake.requests) == 3  # retried twice: the retry log lines carry the message too
    assert "[REDACTED]" in reply.json()["error"]["message"]
    log = new_log(gateway, since)
    assert "[REDACTED]" in log
    for leaked in (OPENAI_KEY, "sk-opena"):
        assert leaked not in reply.text and leaked not in log


def test_an_anthropic_key_echoed_in_a_401_is_redacted(gateway, fake):
    fake.plan(Status(401, message=f"invalid x-api-key: {ANTHROPIC_KEY}"))
    reply = chat(gateway, "anthropic/claude-3-5-haiku-latest")
    assert reply.status_code == 401, reply.text
    assert ANTHROPIC_KEY not in reply.text and "[REDACTED]" in reply.text


def test_an_echoed_key_in_a_stream_error_is_redacted(gateway, fake):
    fake.plan(Status(401, message=f"bad key {OPENAI_KEY}"))
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=15,
                          json={"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True})
    assert reply.status_code == 401 and OPENAI_KEY not in reply.text, reply.text


@pytest.mark.parametrize("model, event, key", [
    ("openai/gpt-4o-mini", b"data: {garbage from " + OPENAI_KEY.encode() + b"\n\n", OPENAI_KEY),
    ("anthropic/claude-3-5-haiku-latest",
     b"event: content_block_delta\ndata: {garbage from " + ANTHROPIC_KEY.encode() + b"\n\n", ANTHROPIC_KEY),
])
def test_a_key_in_a_mid_stream_error_is_redacted(gateway, fake, model, event, key):
    since = len(gateway.log())
    fake.plan(MalformedChunk(3, resume=False, event=event))
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=15,
                          json={"model": model, "messages": HELLO, "stream": True})
    assert reply.status_code == 200
    last = [line for line in reply.text.splitlines() if line.startswith("data: ")][-1]
    assert "malformed stream event" in last and "[REDACTED]" in last, last
    log = new_log(gateway, since)
    assert "malformed stream event" in log
    assert key not in reply.text and key not in log


HOP_BY_HOP = {"te": "trailers", "upgrade": "h2c", "expect": "100-continue", "keep-alive": "timeout=5",
              "proxy-connection": "keep-alive", "trailer": "x-checksum"}
GATEWAY_SET = {"content-type": "text/plain", "accept": "text/html", "accept-encoding": "br",
               "anthropic-version": "2099-01-01"}


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"])
def test_hop_by_hop_and_gateway_headers_are_not_forwarded(gateway, fake, model):
    headers = {f"x-bf-eh-{name}": value for name, value in {**HOP_BY_HOP, **GATEWAY_SET}.items()}
    headers["x-bf-eh-x-tenant"] = "acme"
    reply = chat(gateway, model, headers=headers)
    assert reply.status_code == 200, reply.text
    seen = fake.requests[-1].headers
    assert seen["x-tenant"] == "acme"  # ordinary headers still go through
    for name in HOP_BY_HOP:
        assert name not in seen, name
    assert seen["content-type"] == "application/json"
    assert seen.get("accept") != "text/html" and seen.get("accept-encoding") != "br"
    if model.startswith("anthropic/"):
        assert seen["anthropic-version"] == "2023-06-01"


def test_unreachable_provider_in_models_is_one_log_line(gateway, fake):
    since = len(gateway.log())
    reply = requests.get(gateway.url + "/v1/models", timeout=30)
    assert reply.status_code == 200
    assert "refused" in reply.json()["errors"]
    log = new_log(gateway, since)
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "models of refused" in line]
    assert len(lines) == 1, log
