"""Counter stores (LMDB, SQLite and Redis), windows, and a property test of the governance plugin's accounting.

The property test drives the real plugin (before/after hooks) over random sequences of requests,
upstream failures and window resets, on every counter store, against a model of what the counters
should hold: the reported usage always equals the sum of the costs of the requests in the window.
LMDB's own cases (processes, crashes, migration, a full map): test_governance_counters_lmdb.py.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.call import Call
from app.config import parse_config
from app.context import RequestContext
from app.engine import Served
from app.errors import GatewayError
from app.schemas import Target
from app.stores.counters import AMOUNT, COUNT, NANO_USD, Meter, SqliteCounters, Window
from app.stores.counters_redis import RedisCounters
from app.stores.counters_lmdb import LmdbCounters
from tests.governance_support import kv_store, redis_prefix


def ts(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def test_windows_parse_and_align_to_the_utc_calendar():
    assert Window.parse("30s").seconds == 30 and Window.parse("1h").seconds == 3600 and Window.parse("1w").seconds == 604800
    for bad in ("", "1", "m", "0m", "1x", "-1m", "1.5h"):
        with pytest.raises(ValueError):
            Window.parse(bad)
    now = ts(2026, 5, 14, 13, 37, 5)  # a Thursday
    assert Window.parse("1d", True).aligned_start(now) == ts(2026, 5, 14)
    assert Window.parse("1w", True).aligned_start(now) == ts(2026, 5, 11)  # Monday
    assert Window.parse("1M", True).aligned_start(now) == ts(2026, 5, 1)
    assert Window.parse("1Q", True).aligned_start(now) == ts(2026, 4, 1)
    assert Window.parse("1Y", True).aligned_start(now) == ts(2026, 1, 1)
    assert Window.parse("1h", True).aligned_start(now) == ts(2026, 5, 14, 13)
    assert Window.parse("1h").aligned_start(now) == -1  # rolling


@pytest.fixture(params=["lmdb", "sqlite", "redis"])
def counters(request, tmp_path):
    if request.param in ("lmdb", "sqlite"):
        if request.param == "lmdb":
            store = LmdbCounters(tmp_path / "counters.lmdb")
        else:
            store = SqliteCounters(tmp_path / "counters.db")
        yield store
        store.close()
    else:
        with redis_prefix() as prefix:
            store = RedisCounters(kv_store(prefix)["config"])
            yield store
            store.close()


def test_admission_is_all_or_nothing_and_settling_gives_reservations_back(counters):
    minute = Window.parse("1m")
    requests = Meter("t:req", COUNT, 2, minute, "request_limited", "vk request limit")
    budget = Meter("t:budget", AMOUNT, 100, minute, "budget_exceeded", "vk budget")
    now = 1_000_000.0
    assert counters.admit([requests, budget], [0, 60], now) == -1
    assert counters.admit([requests, budget], [0, 60], now) == -1  # 0 used + 60 reserved < 100
    assert counters.admit([requests, budget], [0, 60], now) == 0  # the request limit refuses first
    [r, b] = counters.read([requests, budget], now)
    assert (r.usage, b.usage, b.reserved) == (2, 0, 120)
    counters.settle([requests, budget], [0, 60], [0, 70], now)
    counters.settle([requests, budget], [0, 60], [0, 45], now)
    [r, b] = counters.read([requests, budget], now)
    assert (r.usage, b.usage, b.reserved) == (2, 115, 0)
    other = Meter("t:req2", COUNT, 5, minute, "request_limited", "x")
    assert counters.admit([other, budget], [0, 1], now) == 1  # the budget is spent: nothing is charged
    assert counters.read([other], now)[0].usage == 0
    later = now + 61  # a new window
    assert counters.admit([requests, budget], [0, 10], later) == -1
    [r, b] = counters.read([requests, budget], later)
    assert (r.usage, b.usage, b.reserved, b.start) == (1, 0, 10, later)


# -- the property test -----------------------------------------------------------------------------------

VK = "sk-bf-property-test"
WINDOW = 30
REQUEST_LIMIT = 6
BUDGET_USD = 0.02

steps = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(min_value=0, max_value=6000), st.booleans()),  # micro-USD, failed?
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=45), st.just(False)),
    ),
    min_size=1, max_size=40,
)


def governed_plugin(tmp_path, monkeypatch, store_kind: str, prefix: str):
    from app.plugins.governance import GovernancePlugin

    monkeypatch.setenv("BIFROST_APP_DIR", str(tmp_path))
    document = {
        "providers": {"openai": {"keys": [{"name": "k", "value": "sk-x", "models": ["*"]}]}},
        "governance": {
            "budgets": [{"id": "b-prop", "max_limit": BUDGET_USD, "reset_duration": f"{WINDOW}s"}],
            "rate_limits": [{"id": "rl-prop", "request_max_limit": REQUEST_LIMIT, "request_reset_duration": f"{WINDOW}s"}],
            "virtual_keys": [{"id": "vk-prop", "name": "prop", "value": VK, "budget_id": "b-prop",
                              "rate_limit_id": "rl-prop"}],
        },
    }
    if store_kind == "redis":
        document["kv_store"] = kv_store(prefix)
    elif store_kind == "sqlite":
        document["kv_store"] = {"type": "sqlite"}
    # lmdb: no kv_store, the embedded default
    return GovernancePlugin(parse_config(document))


@pytest.mark.parametrize("store_kind", ["lmdb", "sqlite", "redis"])
def test_reported_usage_equals_the_sum_of_costs_over_random_sequences(tmp_path, monkeypatch, store_kind):
    with redis_prefix() as prefix:
        plugin = governed_plugin(tmp_path, monkeypatch, store_kind, prefix)
        service = plugin.service
        assert service.counters.kind == store_kind
        vk = service.snapshot.by_value[VK]
        meters = list(vk.meters)
        clock = [2_000_000.0]
        service.clock = lambda: clock[0]

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(steps)
        def run(sequence):
            clock[0] += 10_000  # a fresh window for every example
            service.counters.reset([m.key for m in meters])
            log: list[int] = []  # nano-USD of the requests admitted in the current window
            count, window_start = 0, None
            for op, amount, failed in sequence:
                if op == "wait":
                    clock[0] += amount
                    continue
                now = clock[0]
                if window_start is None or now >= window_start + WINDOW:
                    window_start, count, log = now, 0, []
                ctx = RequestContext(request_id=str(uuid.uuid4()), virtual_key=VK)
                call = Call("chat_completion", False, {"messages": [{"role": "user", "content": "hi"}]},
                            Target("openai", "gpt-4o-mini"), [], ctx)
                expect_admit = count < REQUEST_LIMIT and sum(log) < round(BUDGET_USD * NANO_USD)
                try:
                    plugin.before(call)
                except GatewayError as error:
                    assert not expect_admit, error.to_dict()
                    assert error.type == ("request_limited" if count >= REQUEST_LIMIT else "budget_exceeded")
                    call.error = error
                    plugin.after(call)  # the engine runs after-hooks for refused requests too
                    continue
                assert expect_admit
                count += 1
                if failed:
                    call.error = GatewayError("upstream failed", 502)
                else:
                    call.served = Served("openai", "gpt-4o-mini", 0, "k", 0)
                    call.usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
                    call.cost = amount / 1_000_000
                    log.append(amount * 1000)
                plugin.after(call)
                readings = service.usage(meters)
                by_key = {m.key: r for m, r in zip(meters, readings)}
                assert by_key["rl:rl-prop:requests"].usage == count
                assert by_key["budget:b-prop"].usage == sum(log)
                assert by_key["budget:b-prop"].reserved == 0

        try:
            run()
        finally:
            plugin.close()
