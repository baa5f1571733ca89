"""Redis counters in batches: the admits and settlements of one worker's greenlets share script calls,
stay exact, keep their order, and an outage refuses the admits and hands the settlements back."""
from __future__ import annotations

import threading

import gevent
import pytest
import redis

from app.stores.counters import AMOUNT, COUNT, Meter, StoreUnavailable, Window
from app.stores.counters_redis import RedisCounters
from tests.governance_support import REDIS_ADDR, kv_store, redis_prefix
from tests.tcp_proxy import TcpProxy

NOW = 1_700_000_000.0
HOUR = Window.parse("1h")


def _requests(limit: int) -> Meter:
    return Meter("vk:batch:requests", COUNT, limit, HOUR, "request_limited", "virtual key request limit")


def _tokens(limit: int) -> Meter:
    return Meter("vk:batch:tokens", AMOUNT, limit, HOUR, "token_limited", "virtual key token limit")


def _script_calls() -> int:
    stats = redis.Redis(*REDIS_ADDR).info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


@pytest.fixture
def store():
    with redis_prefix() as prefix:
        counters = RedisCounters(kv_store(prefix)["config"])
        try:
            yield counters
        finally:
            counters.close()


def test_concurrent_admits_share_script_calls_and_admit_exactly_the_limit(store):
    meters = [_requests(30), _tokens(10**9)]
    store.admit(meters, [0, 1], NOW)  # the script is loaded and a connection is open
    before = _script_calls()
    jobs = [gevent.spawn(store.admit, meters, [0, 1], NOW) for _ in range(100)]
    gevent.joinall(jobs, raise_error=True)
    calls = _script_calls() - before
    assert sum(job.value == -1 for job in jobs) == 29  # 30 with the first one
    assert {job.value for job in jobs} == {-1, 0}  # the refusals name the request limit
    assert calls <= 10, f"{calls} script calls for 100 admits: they were not batched"
    usage, tokens = store.read(meters, NOW)
    assert usage.usage == 30 and tokens.reserved == 30


def test_a_settle_is_not_waited_for_but_every_later_read_sees_it(store):
    meters = [_tokens(1000)]
    assert store.admit(meters, [100], NOW) == -1
    store.settle(meters, [100], [7], NOW)  # queued: it leaves when this greenlet yields
    assert store._queue or store._sender is not None
    (reading,) = store.read(meters, NOW)
    assert (reading.usage, reading.reserved) == (7, 0)
    # the order of one worker's operations holds inside a batch too
    jobs = [gevent.spawn(store.settle, meters, [0], [1], NOW) for _ in range(20)]
    jobs.append(gevent.spawn(store.admit, [_tokens(28)], [0], NOW))  # 7 + 20 = 27 < 28: admitted
    gevent.joinall(jobs, raise_error=True)
    assert jobs[-1].value == -1
    assert store.read(meters, NOW)[0].usage == 27


def test_operations_from_another_thread_go_straight_to_redis(store):
    meters = [_tokens(1000)]
    results = []
    worker = threading.Thread(target=lambda: results.append((store.admit(meters, [5], NOW),
                                                             store.settle(meters, [5], [3], NOW))))
    worker.start()
    worker.join(10)
    assert results == [(-1, None)]
    assert (store.read(meters, NOW)[0].usage, store.read(meters, NOW)[0].reserved) == (3, 0)


def test_a_failed_batch_refuses_its_admits_and_hands_back_its_settlements():
    with redis_prefix() as prefix:
        proxy = TcpProxy(*REDIS_ADDR).start()
        store = RedisCounters(kv_store(prefix, proxy.port, connect_timeout=0.2, timeout=0.5)["config"])
        lost = []
        store.on_lost_settle = lambda meters, releases, adds, exc: lost.append((meters, releases, adds, str(exc)))
        meters = [_tokens(1000)]
        try:
            assert store.admit(meters, [10], NOW) == -1
            proxy.cut()
            store.settle(meters, [10], [4], NOW)
            with pytest.raises(StoreUnavailable) as refused:
                store.admit(meters, [10], NOW)  # the same batch as the settlement
            assert "sk-" not in str(refused.value)
            assert lost == [((meters[0],), (10,), (4,), str(refused.value))]
        finally:
            proxy.cut()
            store.close()


def test_close_sends_the_queued_settlements():
    with redis_prefix() as prefix:
        meters = [_tokens(1000)]
        store = RedisCounters(kv_store(prefix)["config"])
        assert store.admit(meters, [50], NOW) == -1
        store.settle(meters, [50], [9], NOW)
        store.close()  # the worker is stopping: nothing may stay queued
        fresh = RedisCounters(kv_store(prefix)["config"])
        try:
            (reading,) = fresh.read(meters, NOW)
            assert (reading.usage, reading.reserved) == (9, 0)
        finally:
            fresh.close()
