"""The log writer on SQLite: it waits for another process's write lock without blocking the event loop,
indexes every row of a batch for content_search, and keeps a row waiting until the store took it."""
from __future__ import annotations

import multiprocessing
import sqlite3
import time

import gevent

from app.call import Call
from app.config import parse_config
from app.context import RequestContext
from app.engine import Served
from app.plugins.request_logs import PROCESSING_AFTER, RequestLogs
from app.schemas import Target
from app.stores.logs import LogFilter


def _hold_write_lock(path: str, seconds: float, ready) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def _plugin(tmp_path) -> RequestLogs:
    config = parse_config({
        "providers": {"openai": {"keys": [{"name": "k", "value": "x", "models": ["gpt-4o-mini"]}]}},
        "logs_store": {"type": "sqlite", "config": {"path": str(tmp_path / "logs.db")}},
    }, environ={})
    return RequestLogs(config)


def _started(plugin: RequestLogs, request_id: str, words: str) -> Call:
    """A chat request in flight: the plugin's before hook has seen it."""
    call = Call("chat_completion", False, {"messages": [{"role": "user", "content": words}]},
                Target("openai", "gpt-4o-mini"), [], RequestContext(request_id=request_id, environ={}))
    plugin.before(call)
    return call


def _finished(plugin: RequestLogs, request_id: str, words: str) -> None:
    call = _started(plugin, request_id, words)
    call.served = Served("openai", "gpt-4o-mini", 0, "k", 0)
    call.reply = {"choices": [{"message": {"role": "assistant", "content": f"reply to {request_id}"},
                               "finish_reason": "stop"}]}
    call.usage, call.finished_at = {"prompt_tokens": 3, "completion_tokens": 4}, time.perf_counter()
    plugin.after(call)


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.02)
    return predicate()


def test_another_process_holding_the_write_lock_delays_rows_without_blocking_the_loop(tmp_path):
    plugin = _plugin(tmp_path)
    try:
        assert _wait_for(lambda: plugin.store_ok is True, 10)  # its first round (retention) is done
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        holder = context.Process(target=_hold_write_lock, args=(str(tmp_path / "logs.db"), 1.0, ready))
        holder.start()
        assert ready.wait(30)
        for index in range(250):  # more than one write chunk
            _finished(plugin, f"r{index}", f"walrus number{index}")
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(60)])
        plugin._wake.set()
        gevent.sleep(0.6)
        assert not plugin.pending and len(plugin.inflight) == 250  # taken by the writer, waiting for the lock
        assert len(ticks) >= 30  # the loop kept turning while the writer waited
        assert plugin.store.search(LogFilter(), "timestamp", "desc", 1, 0)[1] == 0
        ticker.join()
        holder.join(30)
        assert _wait_for(lambda: plugin.store.search(LogFilter(), "timestamp", "desc", 1, 0)[1] == 250, 5)
        assert plugin.store_ok is True and plugin.dropped == 0
        # every row of the batch is in the text index, and only its own words find it
        assert plugin.store.search(LogFilter(content_search="walrus"), "timestamp", "desc", 1, 0)[1] == 250
        found, total = plugin.store.search(LogFilter(content_search="number137"), "timestamp", "desc", 5, 0)
        assert total == 1 and found[0]["id"] == "r137"
    finally:
        plugin.close()


def test_a_row_first_written_in_flight_is_reindexed_when_it_ends(tmp_path):
    plugin = _plugin(tmp_path)
    try:
        call = _started(plugin, "long", "narwhal question")
        plugin._wake.set()
        assert _wait_for(lambda: (plugin.store.get("long") or {}).get("status") == "processing", 5)
        call.served = Served("openai", "gpt-4o-mini", 0, "k", 0)
        call.reply = {"choices": [{"message": {"role": "assistant", "content": "tusked answer"},
                                   "finish_reason": "stop"}]}
        call.finished_at = time.perf_counter()
        plugin.after(call)
        plugin._wake.set()
        assert _wait_for(lambda: plugin.store.get("long")["status"] == "success", 5)
        for word in ("narwhal", "tusked"):
            assert plugin.store.search(LogFilter(content_search=word), "timestamp", "desc", 5, 0)[1] == 1
        assert not plugin.calls and not plugin.shown
        conn = sqlite3.connect(tmp_path / "logs.db")  # the text index matches the rows (FTS5's own check)
        conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('integrity-check', 1)")
        conn.close()
    finally:
        plugin.close()


def test_a_short_request_is_written_once_when_it_ends(tmp_path):
    plugin = _plugin(tmp_path)
    try:
        call = _started(plugin, "quick", "quick question")
        for _ in range(3):  # batches while it is in flight, for less than PROCESSING_AFTER
            plugin._wake.set()
            gevent.sleep(0.1)
        assert time.perf_counter() - call.ctx.started < PROCESSING_AFTER
        assert plugin.store.get("quick") is None and list(plugin.calls) == ["quick"]
        call.served = Served("openai", "gpt-4o-mini", 0, "k", 0)
        call.finished_at = time.perf_counter()
        plugin.after(call)
        plugin._wake.set()
        assert _wait_for(lambda: (plugin.store.get("quick") or {}).get("status") == "success", 5)
        assert not plugin.calls and not plugin.shown
    finally:
        plugin.close()


def test_generated_request_ids_are_uuid7_in_arrival_order():
    import uuid

    from app.context import RequestContext as Context

    first = Context.from_environ({}).request_id
    time.sleep(0.002)
    second = Context.from_environ({}).request_id
    assert uuid.UUID(first).version == 7 and uuid.UUID(first).variant == uuid.RFC_4122
    assert first < second  # a later millisecond sorts after: index inserts land at its end
    assert abs(int(uuid.UUID(first).int >> 80) - time.time() * 1000) < 5000
    assert Context.from_environ({"HTTP_X_REQUEST_ID": "client-id-1"}).request_id == "client-id-1"
