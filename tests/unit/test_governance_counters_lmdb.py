"""LMDB counters across real processes: exact admission, a writer killed mid-transaction, migration from
the old SQLite default, reopening, a full map, and a fork that inherits an open environment.

The shared semantics (admit all-or-nothing, settle, windows, the plugin's accounting) run on every store
in test_governance_counters.py. Each process here opens its own environment after it starts (spawn), as a
gunicorn worker does after the fork.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from app.stores.counters import AMOUNT, COUNT, Meter, SqliteCounters, StoreUnavailable, Window, make_counters
from app.stores.counters_lmdb import ROW, LmdbCounters

MINUTE = Window.parse("1m")
NOW = 1_000_000.0
SPAWN = multiprocessing.get_context("spawn")


def requests_meter(limit: int, key: str = "rl:x:requests") -> Meter:
    return Meter(key, COUNT, limit, MINUTE, "request_limited", "virtual key request limit")


def tokens_meter(limit: int = 10**12) -> Meter:
    return Meter("rl:x:tokens", AMOUNT, limit, MINUTE, "token_limited", "virtual key token limit")


# -- run in child processes (spawn: a fresh interpreter that opens its own environment) -------------------


def hammer(path: str, limit: int, attempts: int, start, results) -> None:
    counters = LmdbCounters(Path(path))
    chain = [requests_meter(limit), tokens_meter()]
    counters.read(chain, NOW)  # opened before the start, so all begin together
    start.wait(30)
    admitted, first, last = 0, None, None
    for _ in range(attempts):
        if counters.admit(chain, [0, 5], NOW) == -1:
            admitted += 1
            last = time.monotonic()  # one clock for every process (CLOCK_MONOTONIC)
            first = first or last
            counters.settle(chain, [0, 5], [0, 3], NOW)  # 5 tokens reserved, 3 used
    counters.close()
    results.put((admitted, first, last))


def hold_a_write_transaction(path: str, ready) -> None:
    """Begin a write, change a counter, and never commit: the parent SIGKILLs this process."""
    counters = LmdbCounters(Path(path))
    txn = counters._open().begin(write=True)
    txn.put(b"rl:x:requests", ROW.pack(999, 0, NOW))
    ready.set()
    time.sleep(60)


# -- tests ---------------------------------------------------------------------------------------------


def test_admission_is_exact_across_processes(tmp_path):
    path, limit, processes, attempts = str(tmp_path / "counters.lmdb"), 9000, 4, 3000
    start, results = SPAWN.Event(), SPAWN.Queue()
    workers = [SPAWN.Process(target=hammer, args=(path, limit, attempts, start, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.set()
    reports = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    assert sum(admitted for admitted, _, _ in reports) == limit  # of 12,000 attempts
    spans = sorted((first, last) for admitted, first, last in reports if admitted)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), reports  # admitting side by side
    counters = LmdbCounters(Path(path))
    [requests, tokens] = counters.read([requests_meter(limit), tokens_meter()], NOW)
    assert (requests.usage, tokens.usage, tokens.reserved) == (limit, 3 * limit, 0)
    counters.close()


def test_a_writer_killed_inside_its_transaction_blocks_nobody_and_its_change_is_not_seen(tmp_path):
    path = tmp_path / "counters.lmdb"
    counters = LmdbCounters(path)
    chain = [requests_meter(5)]
    assert counters.admit(chain, [0], NOW) == -1
    ready = SPAWN.Event()
    holder = SPAWN.Process(target=hold_a_write_transaction, args=(str(path), ready))
    holder.start()
    assert ready.wait(30)
    outcome: list = []
    waiting = threading.Thread(target=lambda: outcome.append(counters.admit(chain, [0], NOW)), daemon=True)
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive() and not outcome  # the holder has the writer lock
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    waiting.join(10)
    assert outcome == [-1]  # the robust mutex passed to the next writer
    assert counters.read(chain, NOW)[0].usage == 2  # 1 + 1; the killed transaction's 999 never landed
    counters.close()
    reopened = LmdbCounters(path)  # a new opener clears the dead process's reader slot and sees the same
    assert reopened.read(chain, NOW)[0].usage == 2
    assert reopened.admit(chain, [0], NOW) == -1
    reopened.close()


def test_the_old_default_counters_db_is_copied_once_into_a_new_environment(tmp_path, caplog):
    old = SqliteCounters(tmp_path / "counters.db")
    budget = Meter("budget:b1", AMOUNT, 10**12, Window.parse("1M", True), "budget_exceeded", "virtual key budget")
    requests = requests_meter(100)
    for _ in range(3):
        assert old.admit([requests, budget], [0, 1000], NOW) == -1
    old.settle([requests, budget], [0, 3000], [0, 2500], NOW)
    before = old.read([requests, budget], NOW)
    old.close()

    with caplog.at_level(logging.INFO, logger="bifrost.governance"):
        counters = make_counters(None, tmp_path)
        assert counters.kind == "lmdb" and counters.path == tmp_path / "counters.lmdb"
        assert counters.read([requests, budget], NOW) == before
    copied = [r.getMessage() for r in caplog.records if "copied" in r.getMessage()]
    assert copied == [f"governance counters: copied 2 counter(s) from {tmp_path / 'counters.db'} into "
                      f"{tmp_path / 'counters.lmdb'}"]
    assert counters.admit([requests, budget], [0, 10], NOW) == -1
    counters.close()

    old = SqliteCounters(tmp_path / "counters.db")  # an old worker still writing there is not copied again
    old.admit([requests], [0], NOW)
    old.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bifrost.governance"):
        counters = make_counters(None, tmp_path)
        [r, b] = counters.read([requests, budget], NOW)
        assert (r.usage, b.usage, b.reserved) == (before[0].usage + 1, before[1].usage, 10)
    assert not [r for r in caplog.records if "copied" in r.getMessage()]
    counters.close()


def test_reopening_after_close_keeps_the_values_and_two_users_share_one_environment(tmp_path):
    path = tmp_path / "sub" / "counters.lmdb"  # the directory is made
    chain = [requests_meter(10), tokens_meter()]
    first, second = LmdbCounters(path), LmdbCounters(path)  # two workers' objects in one process
    assert first.admit(chain, [0, 40], NOW) == -1
    assert second.admit(chain, [0, 2], NOW) == -1
    first.close()
    assert [r.usage for r in second.read(chain, NOW)] == [2, 0]  # still open for the other user
    second.checkpoint()
    second.close()
    reopened = LmdbCounters(path)
    [requests, tokens] = reopened.read(chain, NOW)
    assert (requests.usage, tokens.reserved) == (2, 42)
    reopened.reset([m.key for m in chain])
    [requests, tokens] = reopened.read(chain, NOW)
    assert (requests.usage, tokens.usage, tokens.reserved) == (0, 0, 42)  # a reset keeps reservations in flight
    reopened.close()


def test_a_key_longer_than_lmdbs_limit_is_stored_under_its_digest(tmp_path):
    counters = LmdbCounters(tmp_path / "counters.lmdb")
    long = requests_meter(2, "rl:" + "x" * 600 + ":requests")
    other = requests_meter(2, "rl:" + "x" * 600 + "y:requests")
    assert counters.admit([long], [0], NOW) == -1
    assert [r.usage for r in counters.read([long, other], NOW)] == [1, 0]
    counters.close()


def test_a_full_map_is_store_unavailable_and_changes_nothing(tmp_path):
    counters = LmdbCounters(tmp_path / "counters.lmdb", map_size=64 * 1024)
    kept = requests_meter(10**6, "rl:kept:requests")
    assert counters.admit([kept], [0], NOW) == -1
    with pytest.raises(StoreUnavailable) as full:
        for index in range(10_000):
            counters.admit([kept] + [requests_meter(10, f"rl:{index}-{n}:requests") for n in range(20)],
                           [0] * 21, NOW)
    assert str(full.value).endswith("is full (0.0625 MiB); raise kv_store.config.map_size_mb")
    assert counters.read([kept], NOW)[0].usage == 1 + index  # the transaction that did not fit left no trace
    counters.admit([kept], [0], NOW)  # a small write may still fit or not; either way nothing is broken
    counters.close()


def test_an_environment_inherited_through_fork_is_refused_in_the_child(tmp_path):
    counters = LmdbCounters(tmp_path / "counters.lmdb")
    assert counters.admit([requests_meter(5)], [0], NOW) == -1
    pid = os.fork()
    if pid == 0:  # the child: LMDB must not be used across fork
        try:
            counters.admit([requests_meter(5)], [0], NOW)
            code = 1
        except StoreUnavailable as exc:
            code = 0 if "before a fork" in str(exc) else 2
        counters.checkpoint()  # a no-op there
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counters.read([requests_meter(5)], NOW)[0].usage == 1
    counters.close()


def test_kv_store_names_the_store_and_lmdb_is_the_default(tmp_path):
    from app.config import parse_config

    def made(kv_store):
        document = {"kv_store": kv_store} if kv_store is not None else {}
        return make_counters(parse_config(document, environ={}).raw.get("kv_store"), tmp_path)

    default = made(None)
    assert (default.kind, default.path, default.map_size) == ("lmdb", tmp_path / "counters.lmdb", 1024 << 20)
    assert default._env is None  # opened on first use, in the process that uses it
    explicit = made({"type": "lmdb", "config": {"path": str(tmp_path / "elsewhere.lmdb"), "map_size_mb": 8}})
    assert (explicit.path, explicit.map_size, explicit.migrate_from) == (
        tmp_path / "elsewhere.lmdb", 8 << 20, tmp_path / "counters.db")
    sqlite = made({"type": "sqlite"})
    assert (sqlite.kind, sqlite.path) == ("sqlite", tmp_path / "counters.db")
    sqlite.close()
    redis = made({"type": "redis", "config": {"addr": "127.0.0.1:6379", "key_prefix": "unused:", "sentinels": []}})
    assert redis.kind == "redis"  # settings it does not read are still ignored, as before
    redis.close()
