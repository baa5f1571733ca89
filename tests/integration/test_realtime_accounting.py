"""Realtime calls wired into governance and observability, over the WebSocket relay (tests/fakes/realtime_ws.py):
virtual keys and their refusals, admin auth, and one finished call as one log row, metrics and budget/token usage."""
from __future__ import annotations

import base64
import json
import urllib.request

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.fakes.realtime_ws import FakeRealtimeWS
from tests.gateway_process import GatewayProcess
from tests.integration.observability_mix import wait_for
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.integration
WS_KEY = "sk-ws-accounting"
VK = "sk-bf-realtime-key"
# 1000 USD per million input tokens and 2000 per million output: a fake turn (8 in, 4 out) costs 0.016 USD
PRICE = {"provider": "openai", "model": "gpt-realtime", "input_cost_per_million_tokens": 1000.0,
         "output_cost_per_million_tokens": 2000.0}
TURN_COST = (8 * 1000.0 + 4 * 2000.0) / 1e6
ADMIN = "Basic " + base64.b64encode(b"admin:rt-pass").decode()


def governance() -> dict:
    return {
        "budgets": [{"id": "b-rt", "max_limit": 100, "reset_duration": "1d"}],
        "rate_limits": [{"id": "rl-rt", "token_max_limit": 100000, "token_reset_duration": "1d"}],
        "virtual_keys": [
            {"id": "vk-rt", "name": "realtime", "value": VK, "budget_id": "b-rt", "rate_limit_id": "rl-rt",
             "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-realtime"]}]},
            {"id": "vk-off", "name": "off", "value": "sk-bf-realtime-off", "is_active": False},
            {"id": "vk-groq", "name": "groq only", "value": "sk-bf-realtime-groq",
             "provider_configs": [{"provider": "groq"}]},
        ],
        "pricing_overrides": [PRICE],
    }


def config(fake_url: str, **extra) -> dict:
    return {"providers": {"openai": {"keys": [{"name": "ws", "value": WS_KEY, "models": ["*"]}],
                                     "network_config": {"base_url": fake_url}}},
            "governance": governance(), **extra}


@pytest.fixture(scope="module")
def ws_fake():
    fake = FakeRealtimeWS({WS_KEY}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(ws_fake):
    with GatewayProcess(config(ws_fake.url), workers=2) as server:
        yield server


def ws_url(gateway, model="openai/gpt-realtime") -> str:
    return gateway.url.replace("http", "ws") + f"/v1/realtime?model={model}"


def talk(url: str, turns: int, **connect_args) -> None:
    with connect(url, **connect_args) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
        for _ in range(turns):
            ws.send(json.dumps({"type": "response.create"}))
            assert json.loads(ws.recv(timeout=5))["type"] == "response.done"


def refused(url: str, **connect_args):
    with pytest.raises(InvalidStatus) as caught:
        connect(url, **connect_args)
    return caught.value.response.status_code, json.loads(caught.value.response.body)


def quota(gateway, value: str) -> dict:
    reply = requests.get(gateway.url + "/api/governance/virtual-keys/quota", headers={"x-bf-vk": value}, timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


def realtime_rows(gateway, **params) -> list[dict]:
    return requests.get(gateway.url + "/api/logs", params={"objects": "realtime", **params}, timeout=5).json()["logs"]


def test_a_finished_call_is_one_log_row_with_metrics_and_the_keys_usage(gateway):
    before = scrape(gateway.url)
    start = quota(gateway, VK)
    spent_before = start["budgets"][0]["current_usage"] or 0.0
    tokens_before = start["rate_limits"][0]["current_usage"] or 0
    # the browser form: the virtual key in the subprotocol
    talk(ws_url(gateway), 2, subprotocols=["realtime", f"openai-insecure-api-key.{VK}"])

    [row] = wait_for(lambda: realtime_rows(gateway, virtual_key_ids="vk-rt"), timeout=10)
    assert (row["object"], row["provider"], row["model"], row["status"]) == ("realtime", "openai", "gpt-realtime",
                                                                              "success")
    assert row["token_usage"]["prompt_tokens"] == 16 and row["token_usage"]["completion_tokens"] == 8
    assert row["token_usage"]["total_tokens"] == 24
    assert row["cost"] == pytest.approx(2 * TURN_COST, rel=1e-9)
    assert row["metadata"]["transport"] == "websocket" and row["metadata"]["turns"] == 2
    assert row["latency"] > 0 and row["virtual_key_name"] == "realtime" and row["selected_key_name"] == "ws"

    after = wait_for(lambda: (s := scrape(gateway.url)) and value(
        s, "bifrost_requests_total", provider="openai", model="gpt-realtime", status="success") > value(
        before, "bifrost_requests_total", provider="openai", model="gpt-realtime", status="success") and s)
    labels = {"provider": "openai", "model": "gpt-realtime", "method": "realtime"}

    def delta(name, **extra):
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert value(after, "bifrost_requests_total", provider="openai", model="gpt-realtime", status="success") - value(
        before, "bifrost_requests_total", provider="openai", model="gpt-realtime", status="success") == 1
    assert delta("bifrost_success_requests_total") == 1
    assert delta("bifrost_input_tokens_total") == 16 and delta("bifrost_output_tokens_total") == 8
    assert delta("bifrost_cost_total") == pytest.approx(2 * TURN_COST, rel=1e-9)
    assert value(after, "bifrost_active_requests", provider="openai", method="realtime") == 0

    usage = quota(gateway, VK)
    assert usage["budgets"][0]["current_usage"] - spent_before == pytest.approx(2 * TURN_COST, abs=1e-9)
    [tokens] = usage["rate_limits"]
    assert tokens["kind"] == "tokens" and tokens["current_usage"] - tokens_before == 24
    assert tokens["in_flight_reserved"] == 0  # the reservation made when the call started is given back


def test_a_call_without_a_key_is_logged_too(gateway):
    talk(ws_url(gateway), 1)
    rows = wait_for(lambda: [r for r in realtime_rows(gateway) if r["virtual_key_id"] is None], timeout=10)
    assert rows[0]["token_usage"]["total_tokens"] == 12 and rows[0]["cost"] == pytest.approx(TURN_COST, rel=1e-9)


def test_virtual_key_refusals_come_before_the_upgrade(gateway, ws_fake):
    upstream_calls = len(ws_fake.connections)
    for headers, status, kind in (({"x-bf-vk": "sk-bf-nobody"}, 403, "virtual_key_not_found"),
                                  ({"Authorization": "Bearer sk-bf-realtime-off"}, 403, "virtual_key_blocked"),
                                  ({"x-bf-vk": "sk-bf-realtime-groq"}, 403, "provider_blocked")):
        code, body = refused(ws_url(gateway), additional_headers=headers)
        assert (code, body["type"]) == (status, kind), body
    code, body = refused(ws_url(gateway, "openai/gpt-4o-realtime-preview"), additional_headers={"x-bf-vk": VK})
    assert (code, body["type"]) == (403, "model_blocked")
    code, body = refused(ws_url(gateway), subprotocols=["realtime", "openai-insecure-api-key.sk-bf-nobody"])
    assert (code, body["type"]) == (403, "virtual_key_not_found")
    assert len(ws_fake.connections) == upstream_calls  # none reached the provider
    # the refused call with a known key is an error row of its own
    rows = wait_for(lambda: [r for r in realtime_rows(gateway, status="error") if r["virtual_key_id"] == "vk-groq"])
    assert rows[0]["error_details"]["type"] == "provider_blocked"


def test_client_secrets_carry_the_minting_key_and_refuse_an_unknown_one(gateway):
    minted = requests.post(gateway.url + "/v1/realtime/client_secrets", headers={"x-bf-vk": VK}, timeout=5,
                           json={"session": {"model": "openai/gpt-realtime"}})
    assert minted.status_code == 200, minted.text
    secret = minted.json()["value"]
    before = len(realtime_rows(gateway, virtual_key_ids="vk-rt"))
    talk(ws_url(gateway), 1, subprotocols=["realtime", f"openai-insecure-api-key.{secret}"])
    wait_for(lambda: len(realtime_rows(gateway, virtual_key_ids="vk-rt")) == before + 1, timeout=10)
    nobody = requests.post(gateway.url + "/v1/realtime/client_secrets", headers={"x-bf-vk": "sk-bf-nobody"},
                           timeout=5, json={"session": {"model": "openai/gpt-realtime"}})
    assert nobody.status_code == 403 and nobody.json()["type"] == "virtual_key_not_found"


def test_admin_auth_guards_realtime_when_auth_config_is_on(ws_fake):
    auth = {"auth_config": {"is_enabled": True, "admin_username": "admin", "admin_password": "rt-pass"}}
    with GatewayProcess(config(ws_fake.url, **auth)) as gateway:
        code, body = refused(ws_url(gateway))
        assert code == 401 and body["type"] == "unauthorized"
        code, _ = refused(ws_url(gateway), additional_headers={"Authorization": "Basic " + base64.b64encode(
            b"admin:wrong").decode()})
        assert code == 401
        talk(ws_url(gateway), 1, additional_headers={"Authorization": ADMIN})
        talk(ws_url(gateway), 1, additional_headers={"x-bf-vk": VK})
        # a client secret minted by the admin works where a browser can only send the subprotocol
        request = urllib.request.Request(gateway.url + "/v1/realtime/client_secrets", method="POST",
                                         data=json.dumps({"session": {"model": "openai/gpt-realtime"}}).encode(),
                                         headers={"Content-Type": "application/json", "Authorization": ADMIN})
        secret = json.loads(urllib.request.urlopen(request, timeout=5).read())["value"]
        talk(ws_url(gateway), 1, subprotocols=["realtime", f"openai-insecure-api-key.{secret}"])
        plain = requests.post(gateway.url + "/v1/realtime/client_secrets", timeout=5,
                              json={"session": {"model": "openai/gpt-realtime"}})
        assert plain.status_code == 401
        assert requests.get(gateway.url + "/api/logs", timeout=5).status_code == 401  # /api stays admin-only
