"""Rate limits and budgets are exact across workers and instances; changes reach every worker; outages.

Two gunicorn instances (2 gevent workers each) share a PostgreSQL config store (a database of this
run) and Redis counters (a key prefix of this run); one instance with 4 workers uses the embedded
LMDB counters (and takes over the old default's SQLite counters.db). Upstream is the fake OpenAI server.
"""
from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import pytest
import requests

from app.governance import rate_limit_meters
from app.stores.counters import SqliteCounters
from tests.fakes.behaviours import Delay, Stream
from tests.gateway_process import GatewayProcess
from tests.governance_support import CHAT, REDIS_ADDR, burst, get, kv_store, post, redis_prefix
from tests.pg import postgres_store, scratch_database
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration
ADMIN = {"authorization": "Basic YWRtaW46Z292LXRlc3QtcGFzcw=="}  # admin:gov-test-pass


def gateway_config(fake_url: str, governance: dict, **sections) -> dict:
    return {
        "providers": {"openai": {"keys": [{"name": "oa", "value": "sk-openai-1", "models": ["*"]}],
                                 "network_config": {"base_url": fake_url, "default_request_timeout_in_seconds": 20}},
                      "groq": {"keys": [{"name": "gq", "value": "sk-groq", "models": ["*"]}],
                               "network_config": {"base_url": fake_url}}},
        "auth_config": {"is_enabled": True, "admin_username": "admin", "admin_password": "gov-test-pass"},
        "governance": governance,
        **sections,
    }


def limited_key(vk_id: str, value: str, request_limit: int, window: str = "1m") -> dict:
    return {"rate_limits": [{"id": f"rl-{vk_id}", "request_max_limit": request_limit, "request_reset_duration": window}],
            "virtual_keys": [{"id": vk_id, "name": vk_id, "value": value, "rate_limit_id": f"rl-{vk_id}"}]}


def statuses(results) -> collections.Counter:
    return collections.Counter(status for status, _ in results)


def quota(url: str, value: str) -> dict:
    status, body = get(url, "/api/governance/virtual-keys/quota", {"x-bf-vk": value})
    assert status == 200, body
    return body


def probe_usage(fake, body: dict = CHAT) -> dict:
    """The usage the fake reports for this body (asked directly, not through the gateway)."""
    reply = requests.post(fake.url + "/v1/chat/completions", timeout=10, headers={"authorization": "Bearer sk-openai-1"},
                          json={**body, "model": body["model"].split("/", 1)[1]})
    fake.clear()
    return reply.json()["usage"]


# -- two instances sharing PostgreSQL and Redis ------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(fake):
    with scratch_database() as db_name, redis_prefix() as prefix:
        config = gateway_config(fake.url, limited_key("vk-hundred", "sk-bf-hundred-per-minute", 100),
                                # few connections per worker: requests queue for one rather than fail
                                config_store=postgres_store(db_name), kv_store=kv_store(prefix, pool_size=4))
        instances = [GatewayProcess(config, workers=2), GatewayProcess(config, workers=2)]
        try:
            for instance in instances:
                instance.start(timeout=40)
            yield instances
        finally:
            for instance in instances:
                instance.stop()


def test_request_limit_is_exact_across_two_instances_sharing_redis(cluster, fake):
    urls = [gw.url for gw in cluster]
    results = burst(urls, 300, {"x-bf-vk": "sk-bf-hundred-per-minute"})
    counts = statuses(results)
    assert counts == {200: 100, 429: 200}, counts
    assert all(body["type"] == "request_limited" for status, body in results if status == 429)
    assert len(fake.requests) == 100  # the refused ones never reached the provider
    for url in urls:  # the counter that enforced is the one both instances report
        [limit] = quota(url, "sk-bf-hundred-per-minute")["rate_limits"]
        assert limit["current_usage"] == 100 and limit["max_limit"] == 100
    status, listed = get(urls[1], "/api/governance/rate-limits", ADMIN)
    assert status == 200 and listed["rate_limits"][0]["request_current_usage"] == 100


def test_live_changes_reach_every_worker_of_both_instances(cluster):
    a, b = (gw.url for gw in cluster)
    status, created = post(a, "/api/governance/virtual-keys", {"name": "live", "description": "made by the test"}, ADMIN)
    assert status == 200 and created["message"] == "Virtual key created successfully"
    vk = created["virtual_key"]
    assert vk["value"].startswith("sk-bf-") and len(vk["value"]) == len("sk-bf-") + 36
    # The issue: a created key works at once on every worker of both instances, first request included.
    # At once from 16 connections (so each worker gets several misses together), then one by one.
    first = burst([a, b], 16, {"authorization": f"Bearer {vk['value']}"})
    assert statuses(first) == {200: 16}, [body for status, body in first if status != 200]
    for url in (a, b, a, b, a, b, a, b):  # new connections: every worker of both instances
        got = post(url, "/v1/chat/completions", CHAT, {"authorization": f"Bearer {vk['value']}"})
        assert got[0] == 200, got
    status, shown = get(b, f"/api/governance/virtual-keys/{vk['id']}", ADMIN)
    assert status == 200 and shown["virtual_key"]["value"] != vk["value"]  # whole only at creation

    assert post(b, f"/api/governance/virtual-keys/{vk['id']}", {"is_active": False}, ADMIN, method="PUT")[0] == 200
    time.sleep(1.0)
    for url in (a, b, a, b, a, b, a, b):
        status, body = post(url, "/v1/chat/completions", CHAT, {"x-bf-vk": vk["value"]})
        assert status == 403 and body["type"] == "virtual_key_blocked", body

    post(a, f"/api/governance/virtual-keys/{vk['id']}", {"is_active": True}, ADMIN, method="PUT")
    status, rotated = post(a, f"/api/governance/virtual-keys/{vk['id']}/rotate", {}, ADMIN)
    assert status == 200 and rotated["virtual_key"]["value"] != vk["value"]
    time.sleep(1.0)
    for url in (a, b, a, b):
        assert post(url, "/v1/chat/completions", CHAT, {"x-bf-vk": rotated["virtual_key"]["value"]})[0] == 200
        assert post(url, "/v1/chat/completions", CHAT, {"x-bf-vk": vk["value"]})[1]["type"] == "virtual_key_not_found"

    assert post(b, f"/api/governance/virtual-keys/{vk['id']}", None, ADMIN, method="DELETE")[0] == 200
    assert get(a, f"/api/governance/virtual-keys/{vk['id']}", ADMIN)[0] == 404

    # Admin sessions live in the shared config store: made on one instance, ended from the other.
    status, login = post(a, "/api/session/login", {"username": "admin", "password": "gov-test-pass"})
    session = {"authorization": f"Bearer {login['token']}"}
    assert status == 200 and all(get(url, "/api/governance/teams", session)[0] == 200 for url in (b, a, b, a))
    assert post(b, "/api/session/logout", {}, session)[0] == 200
    time.sleep(1.0)
    assert all(get(url, "/api/governance/teams", session)[0] == 401 for url in (a, b, a, b))


def test_api_errors_name_the_field(cluster):
    url = cluster[0].url
    status, body = post(url, "/api/governance/virtual-keys", {"name": "x", "team_id": "no-such-team"}, ADMIN)
    assert status == 400 and body["error"]["param"] == "team_id" and "does not exist" in body["error"]["message"]
    status, body = post(url, "/api/governance/virtual-keys", {"name": "x", "provider_configs": [{"weight": 1}]}, ADMIN)
    assert status == 400 and body["error"]["param"] == "provider_configs[0].provider"
    status, body = post(url, "/api/governance/budgets", {"max_limit": 5, "reset_duration": "7 days"}, ADMIN)
    assert status == 400 and body["error"]["param"] == "reset_duration"
    status, body = post(url, "/api/governance/teams", {"name": "t", "budget": {"max_limit": -1, "reset_duration": "1d"}},
                        ADMIN)
    assert status == 400 and body["error"]["param"] == "budget.max_limit"
    assert post(url, "/api/governance/teams/missing", {"name": "t"}, ADMIN, method="PUT")[0] == 404
    assert get(url, "/api/governance/customers/missing", ADMIN)[0] == 404
    assert post(url, "/api/governance/virtual-keys", {"name": "x", "team_id": "t", "customer_id": "c"},
                ADMIN)[1]["error"]["param"] == "customer_id"
    status, team = post(url, "/api/governance/teams", {"name": "platform", "budget": {"max_limit": 50, "reset_duration": "1M"}},
                        ADMIN)
    assert status == 200 and team["team"]["budget"]["max_limit"] == 50
    status, listed = get(url, "/api/governance/teams?limit=1&offset=0", ADMIN)
    assert status == 200 and listed["count"] == 1 and listed["limit"] == 1 and listed["total_count"] >= 1
    assert get(url, "/api/governance/teams?limit=x", ADMIN)[1]["error"]["param"] == "limit"
    status, body = post(url, "/api/governance/virtual-keys", {"name": "dup", "value": "sk-bf-hundred-per-minute"}, ADMIN)
    assert status == 409 and body["error"]["param"] == "value" and "sk-bf-hundred" not in str(body)
    status, body = post(url, "/api/governance/budgets", {"id": "b-used", "max_limit": 1, "reset_duration": "1d"}, ADMIN)
    assert status == 200 and body["budget"]["current_usage"] == 0 and body["budget"]["last_reset"] is None
    post(url, "/api/governance/customers", {"name": "c", "budget_id": "b-used"}, ADMIN)
    assert post(url, "/api/governance/budgets/b-used", None, ADMIN, method="DELETE")[0] == 409  # still referenced


# -- one instance, the embedded store ---------------------------------------------------------------------


def test_request_limit_is_exact_across_four_workers_with_the_embedded_store(fake):
    config = gateway_config(fake.url, limited_key("vk-embedded", "sk-bf-embedded-hundred", 100))
    with GatewayProcess(config, workers=4) as gateway:
        results = burst([gateway.url], 300, {"x-api-key": "sk-bf-embedded-hundred"})
        assert statuses(results) == {200: 100, 429: 200}
        [limit] = quota(gateway.url, "sk-bf-embedded-hundred")["rate_limits"]
        assert limit["current_usage"] == 100
        app_dir = Path(gateway.app_dir)
        assert (app_dir / "counters.lmdb").is_file() and not (app_dir / "counters.db").exists()
        # LMDB must not cross a fork: the workers map the file, gunicorn's master never opens it.
        assert "counters.lmdb" not in Path(f"/proc/{gateway.process.pid}/maps").read_text()
        mapped = [pid for pid in gateway.worker_pids() if "counters.lmdb" in Path(f"/proc/{pid}/maps").read_text()]
        assert mapped  # (a worker that served no governed request has not opened it yet)


def test_an_upgrade_keeps_the_counts_of_the_old_sqlite_default_and_a_restart_keeps_them_too(fake):
    """A counters.db the old default left in the app dir is copied into the new LMDB file once."""
    config = gateway_config(fake.url, limited_key("vk-upgrade", "sk-bf-upgrade-hundred", 100, window="1h"))
    with tempfile.TemporaryDirectory(prefix="bifrost-upgrade-") as app_dir:
        old = SqliteCounters(Path(app_dir) / "counters.db")
        [meter] = rate_limit_meters(config["governance"]["rate_limits"][0], "virtual key")  # as the gateway counts
        for _ in range(40):
            assert old.admit([meter], [0], time.time()) == -1
        old.close()
        with GatewayProcess(config, workers=4, app_dir=app_dir) as gateway:
            results = burst([gateway.url], 100, {"x-api-key": "sk-bf-upgrade-hundred"})
            assert statuses(results) == {200: 60, 429: 40}
            log = gateway.log()
        copied = [line for line in log.splitlines() if "governance counters: copied" in line]
        assert len(copied) == 1 and "copied 1 counter(s)" in copied[0], log  # one worker of four did it
        with GatewayProcess(config, workers=2, app_dir=app_dir) as gateway:
            [limit] = quota(gateway.url, "sk-bf-upgrade-hundred")["rate_limits"]
            assert limit["current_usage"] == 100  # kept across the restart; the old file is not copied again
            assert post(gateway.url, "/v1/chat/completions", CHAT, {"x-api-key": "sk-bf-upgrade-hundred"})[0] == 429
            assert "governance counters: copied" not in gateway.log()


def test_budget_stops_at_the_request_that_crosses_it_and_the_next_window_admits(fake):
    usage = probe_usage(fake)
    # 1000 USD per million input tokens, nothing for output: each request costs prompt_tokens / 1000 USD.
    cost = usage["prompt_tokens"] / 1000
    governance = {
        "budgets": [{"id": "b-small", "max_limit": round(cost * 3.5, 9), "reset_duration": "3s"}],
        "virtual_keys": [{"id": "vk-budget", "name": "budget", "value": "sk-bf-budget-test", "budget_id": "b-small"}],
        "pricing_overrides": [{"provider": "openai", "model": "gpt-4o-mini", "input_cost_per_million_tokens": 1000,
                               "output_cost_per_million_tokens": 0}],
    }
    with GatewayProcess(gateway_config(fake.url, governance), workers=2) as gateway:
        headers = {"x-bf-vk": "sk-bf-budget-test"}
        outcomes = [post(gateway.url, "/v1/chat/completions", CHAT, headers) for _ in range(6)]
        assert [s for s, _ in outcomes] == [200, 200, 200, 200, 402, 402]  # the 4th crosses 3.5 and is the last
        refused = outcomes[4][1]
        assert refused["type"] == "budget_exceeded" and refused["error"]["message"].startswith("Budget exceeded")
        [budget] = quota(gateway.url, "sk-bf-budget-test")["budgets"]
        assert budget["current_usage"] == pytest.approx(4 * cost, abs=1e-9)
        time.sleep(3.2)  # the next window
        assert post(gateway.url, "/v1/chat/completions", CHAT, headers)[0] == 200
        [budget] = quota(gateway.url, "sk-bf-budget-test")["budgets"]
        assert budget["current_usage"] == pytest.approx(cost, abs=1e-9)


def test_token_limit_is_exceeded_by_at_most_the_requests_in_flight(fake):
    usage = probe_usage(fake)
    per_request = usage["total_tokens"]
    limit = per_request * 10
    body = {**CHAT, "max_tokens": usage["completion_tokens"]}  # the reservation covers the real answer
    governance = {"rate_limits": [{"id": "rl-tokens", "token_max_limit": limit, "token_reset_duration": "1m"}],
                  "virtual_keys": [{"id": "vk-tokens", "name": "tokens", "value": "sk-bf-token-test",
                                    "rate_limit_id": "rl-tokens"}]}
    fake.set_default(Delay(0.5))  # every admitted request is in flight while the others arrive
    try:
        with GatewayProcess(gateway_config(fake.url, governance), workers=2) as gateway:
            headers = {"x-goog-api-key": "sk-bf-token-test"}
            results = burst([gateway.url], 40, headers, body)
            admitted = [b for s, b in results if s == 200]
            assert all(b["type"] == "token_limited" for s, b in results if s == 429)
            assert 1 <= len(admitted) <= 10
            [tokens] = quota(gateway.url, "sk-bf-token-test")["rate_limits"]
            assert tokens["current_usage"] == sum(b["usage"]["total_tokens"] for b in admitted)
            assert tokens["in_flight_reserved"] == 0  # every reservation was given back
            # One at a time until refused: the last admitted request is the one that crossed the limit.
            while post(gateway.url, "/v1/chat/completions", body, headers)[0] == 200:
                pass
            [tokens] = quota(gateway.url, "sk-bf-token-test")["rate_limits"]
            assert limit <= tokens["current_usage"] < limit + per_request
    finally:
        fake.clear()


# -- Redis goes away and comes back -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_redis_outage_keeps_the_failure_mode_and_counts_are_exact_after(fake, mode):
    proxy = TcpProxy(*REDIS_ADDR).start()
    try:
        with redis_prefix() as prefix:
            governance = {**limited_key("vk-outage", "sk-bf-outage-test", 20), "on_store_error": mode}
            config = gateway_config(fake.url, governance, kv_store=kv_store(prefix, proxy.port))
            with GatewayProcess(config, workers=2) as gateway:
                headers = {"api-key": "sk-bf-outage-test"}
                assert [post(gateway.url, "/v1/chat/completions", CHAT, headers)[0] for _ in range(5)] == [200] * 5
                proxy.cut()
                during = [post(gateway.url, "/v1/chat/completions", CHAT, headers) for _ in range(8)]
                if mode == "deny":
                    assert all(s == 503 and b["type"] == "governance_store_unavailable" for s, b in during), during
                else:
                    assert all(s == 200 for s, _ in during), during
                proxy.restore()
                time.sleep(1.2)  # a store that failed is asked again after a second
                admitted_after = 0
                while True:
                    status, body = post(gateway.url, "/v1/chat/completions", CHAT, headers)
                    if status != 200:
                        assert status == 429 and body["type"] == "request_limited", body
                        break
                    admitted_after += 1
                assert admitted_after == 15  # 20 in the window: the outage neither lost nor invented a count
                log = gateway.log()
            outage_lines = [line for line in log.splitlines() if "logged once a minute" in line]
            assert 1 <= len(outage_lines) <= 2, outage_lines  # once per worker, not once per request
    finally:
        proxy.stop()


def test_provider_configs_route_a_bare_model_by_weight_and_filter_models(fake):
    governance = {
        "budgets": [{"id": "b-spent", "max_limit": 0, "reset_duration": "1h"}],
        "virtual_keys": [
            {"id": "vk-route", "name": "route", "value": "sk-bf-route-test",
             "provider_configs": [{"provider": "openai", "weight": 1, "allowed_models": ["gpt-4o-mini"]}]},
            {"id": "vk-spent", "name": "spent", "value": "sk-bf-spent-test",
             "provider_configs": [{"provider": "openai", "budget_id": "b-spent"}]},
            {"id": "vk-keys", "name": "keys", "value": "sk-bf-keys-test",
             "provider_configs": [{"provider": "openai", "key_ids": ["not-a-configured-key"]}]},
            {"id": "vk-old", "name": "old", "value": "sk-bf-expired-test", "expires_at": "2020-01-01T00:00:00Z"},
            {"id": "vk-off", "name": "off", "value": "sk-bf-inactive-test", "is_active": False},
        ],
    }
    with GatewayProcess(gateway_config(fake.url, governance)) as gateway:
        url = gateway.url
        route = {"x-bf-vk": "sk-bf-route-test"}
        status, body = post(url, "/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"}, route)
        assert status == 200 and body["extra_fields"]["provider"] == "openai", body
        status, body = post(url, "/v1/chat/completions", {**CHAT, "model": "gpt-4o"}, route)
        assert status == 403 and body["type"] == "model_blocked"
        status, body = post(url, "/v1/chat/completions", {**CHAT, "model": "anthropic/claude-haiku-4-5"}, route)
        assert status == 403 and body["type"] == "provider_blocked"
        status, body = post(url, "/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"}, ADMIN)
        assert status == 400 and body["error"]["code"] == "missing_provider"  # no key: nothing routes it
        status, body = post(url, "/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"}, {"x-bf-vk": "sk-bf-spent-test"})
        assert status == 402 and body["type"] == "budget_exceeded"  # the only config is over its budget
        status, body = post(url, "/v1/chat/completions", CHAT, {"x-bf-vk": "sk-bf-keys-test"})
        assert status == 403 and body["type"] == "key_blocked"
        status, body = post(url, "/v1/chat/completions", CHAT, {"x-bf-vk": "sk-bf-expired-test"})
        assert status == 403 and body["type"] == "virtual_key_blocked" and "expired" in body["error"]["message"]
        status, body = post(url, "/v1/chat/completions", CHAT, {"x-bf-vk": "sk-bf-inactive-test"})
        assert status == 403 and body["type"] == "virtual_key_blocked" and "inactive" in body["error"]["message"]
        status, body = post(url, "/v1/chat/completions", {**CHAT, "fallbacks": ["openai/gpt-4o"]}, route)
        assert status == 200  # a fallback the key may not use is dropped, not tried
        status, models = get(url, "/v1/models", route)
        assert status == 200 and [m["id"] for m in models["data"]] == ["openai/gpt-4o-mini"]  # groq not listed
        assert not any("sk-bf-" in str(seen.headers) for seen in fake.requests)  # never forwarded upstream
        everything = get(url, "/v1/models", ADMIN)[1]["data"]
        openai_models = [m["id"] for m in everything if m["id"].startswith("openai/")]
        assert len(openai_models) > 1 and len(everything) > len(openai_models)
        # a config without allowed_models lists all of its provider's models, and no other provider's
        assert [m["id"] for m in get(url, "/v1/models", {"x-bf-vk": "sk-bf-spent-test"})[1]["data"]] == openai_models


def test_streams_are_settled_when_they_end_and_when_the_client_leaves(fake):
    governance = {"rate_limits": [{"id": "rl-stream", "token_max_limit": 1_000_000, "token_reset_duration": "1h"}],
                  "virtual_keys": [{"id": "vk-stream", "name": "stream", "value": "sk-bf-stream-test",
                                    "rate_limit_id": "rl-stream"}]}
    with GatewayProcess(gateway_config(fake.url, governance)) as gateway:
        headers = {"authorization": "Bearer sk-bf-stream-test"}
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        reply = requests.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert reply.status_code == 200
        chunks = [line for line in reply.text.splitlines() if line.startswith("data: {")]
        import json

        streamed = [json.loads(line[6:]) for line in chunks if '"usage":{' in line.replace(" ", "")]
        total = streamed[-1]["usage"]["total_tokens"]
        [tokens] = quota(gateway.url, "sk-bf-stream-test")["rate_limits"]
        assert tokens["current_usage"] == total and tokens["in_flight_reserved"] == 0

        fake.plan(Stream(chunks=40, gap=0.1))  # slow: the client leaves after the first chunk
        with requests.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=10,
                           stream=True) as slow:
            next(slow.iter_lines())
            [tokens] = quota(gateway.url, "sk-bf-stream-test")["rate_limits"]
            assert tokens["in_flight_reserved"] > 0  # held while the stream runs
        deadline = time.monotonic() + 5
        while quota(gateway.url, "sk-bf-stream-test")["rate_limits"][0]["in_flight_reserved"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert quota(gateway.url, "sk-bf-stream-test")["rate_limits"][0]["in_flight_reserved"] == 0


def test_a_provider_config_over_its_own_limit_hands_a_bare_model_to_the_next(fake):
    governance = {
        "rate_limits": [{"id": "rl-openai", "request_max_limit": 3, "request_reset_duration": "1m"}],
        "virtual_keys": [{"id": "vk-spill", "name": "spill", "value": "sk-bf-spill-test",
                          "provider_configs": [{"provider": "openai", "weight": 1, "rate_limit_id": "rl-openai"},
                                               {"provider": "groq", "weight": 0}]}],
    }
    with GatewayProcess(gateway_config(fake.url, governance), workers=2) as gateway:
        served = []
        for _ in range(6):
            status, body = post(gateway.url, "/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"},
                                {"x-bf-vk": "sk-bf-spill-test"})
            assert status == 200, body
            served.append(body["extra_fields"]["provider"])
        assert served == ["openai"] * 3 + ["groq"] * 3
        # Named explicitly, the spent provider refuses with its own limit rather than moving.
        status, body = post(gateway.url, "/v1/chat/completions", CHAT, {"x-bf-vk": "sk-bf-spill-test"})
        assert status == 429 and body["type"] == "request_limited" and "provider config openai" in body["error"]["message"]
