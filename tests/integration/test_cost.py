"""The cost of a request: genai-prices' price, an override that wins, null for an unknown model, everywhere it shows."""
from __future__ import annotations

import pytest
import requests
from genai_prices import Usage, calc_price

from tests.gateway_process import GatewayProcess, free_port
from tests.integration.conftest import gateway_config
from tests.integration.observability_mix import chat, read_stream, wait_for

pytestmark = pytest.mark.integration
OVERRIDE = {"provider": "openai", "model": "gpt-4o", "input_cost_per_million_tokens": 1.0,
            "output_cost_per_million_tokens": 2.0, "cached_input_cost_per_million_tokens": 0.5}


def package_price(model: str, usage: dict) -> float:
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    found = calc_price(Usage(input_tokens=usage["prompt_tokens"], cache_read_tokens=cached,
                             output_tokens=usage["completion_tokens"]), model, provider_id="openai")
    return float(found.total_price)


@pytest.fixture(scope="module")
def priced_gateway(fake):
    config = gateway_config(fake.url, free_port())
    config["governance"] = {"pricing_overrides": [OVERRIDE]}
    with GatewayProcess(config, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        yield server


def test_known_model_costs_the_packages_price_in_body_header_log_and_metric(priced_gateway):
    url = priced_gateway.url
    request_id, reply = chat(url, "openai/gpt-4o-mini", "what does this cost")
    body = reply.json()
    expected = package_price("gpt-4o-mini", body["usage"])
    assert expected > 0
    assert body["extra_fields"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert float(reply.headers["x-bifrost-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    row = wait_for(lambda: requests.get(f"{url}/api/logs/{request_id}", timeout=5).json().get("status") == "success"
                   and requests.get(f"{url}/api/logs/{request_id}", timeout=5).json())
    assert row["cost"] == pytest.approx(expected, rel=1e-9)
    assert "bifrost_cost_total{" in requests.get(url + "/metrics", timeout=5).text


def test_override_wins_for_json_and_for_a_streams_final_chunk(priced_gateway):
    url = priced_gateway.url
    _, reply = chat(url, "openai/gpt-4o", "override me")
    usage = reply.json()["usage"]
    expected = (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    assert expected != pytest.approx(package_price("gpt-4o", usage))
    assert reply.json()["extra_fields"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert float(reply.headers["x-bifrost-cost-usd"]) == pytest.approx(expected, rel=1e-6)

    for extra in ({}, {"stream_options": {"include_usage": True}}):  # folded usage, and OpenAI's usage chunk
        _, streamed = chat(url, "openai/gpt-4o", "stream the price", stream=True, extra=extra)
        _, usage, cost = read_stream(streamed)
        assert cost == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6, rel=1e-9)


def test_unknown_model_costs_null_and_missing_cost_only_finds_it(priced_gateway):
    url = priced_gateway.url
    request_id, reply = chat(url, "chatonly/gpt-4o-mini", "nobody prices this provider")
    assert reply.status_code == 200
    assert reply.json()["extra_fields"]["cost"] is None
    assert "x-bifrost-cost-usd" not in reply.headers

    def found():
        page = requests.get(url + "/api/logs", params={"missing_cost_only": "true", "limit": 1000}, timeout=5).json()
        return [row for row in page["logs"] if row["id"] == request_id]

    rows = wait_for(found)
    assert rows and rows[0]["cost"] is None and rows[0]["status"] == "success"


def _override_cost(usage_in: int, usage_out: int) -> float:
    return (usage_in * 1.0 + usage_out * 2.0) / 1e6


def test_openai_surface_carries_cost_in_body_and_header(priced_gateway):
    reply = requests.post(priced_gateway.url + "/openai/v1/chat/completions", timeout=10,
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "price on /openai"}]})
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    expected = _override_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert reply.json()["extra_fields"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert float(reply.headers["x-bifrost-cost-usd"]) == pytest.approx(expected, rel=1e-6)


def test_anthropic_surface_has_the_cost_header_and_the_sdks_body(priced_gateway):
    reply = requests.post(priced_gateway.url + "/anthropic/v1/messages", timeout=10,
                          headers={"anthropic-version": "2023-06-01"},
                          json={"model": "openai/gpt-4o", "max_tokens": 50,
                                "messages": [{"role": "user", "content": "price on /anthropic"}]})
    assert reply.status_code == 200, reply.text
    message = reply.json()
    assert set(message) <= {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage",
                            "container"}
    expected = _override_cost(message["usage"]["input_tokens"], message["usage"]["output_tokens"])
    assert expected > 0
    assert float(reply.headers["x-bifrost-cost-usd"]) == pytest.approx(expected, rel=1e-6)


def test_genai_surface_has_the_cost_header_and_the_sdks_body(priced_gateway):
    reply = requests.post(priced_gateway.url + "/genai/v1beta/models/openai/gpt-4o:generateContent", timeout=10,
                          json={"contents": [{"parts": [{"text": "price on /genai"}]}]})
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert "extra_fields" not in out
    meta = out["usageMetadata"]
    expected = _override_cost(meta["promptTokenCount"], meta["candidatesTokenCount"])
    assert expected > 0
    assert float(reply.headers["x-bifrost-cost-usd"]) == pytest.approx(expected, rel=1e-6)


def test_unpriced_model_on_anthropic_surface_has_no_cost_header(priced_gateway):
    reply = requests.post(priced_gateway.url + "/anthropic/v1/messages", timeout=10,
                          headers={"anthropic-version": "2023-06-01"},
                          json={"model": "chatonly/gpt-4o-mini", "max_tokens": 50,
                                "messages": [{"role": "user", "content": "nobody prices this"}]})
    assert reply.status_code == 200, reply.text
    assert "x-bifrost-cost-usd" not in reply.headers
