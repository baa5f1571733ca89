"""CPU per request of request logging as a busy worker pays it: the hooks and the writer greenlet together.

    .venv/bin/python bench/log_writer_cost.py [--requests 40000] [--in-flight 50] [--rps 2000]

Requests are simulated in-process (no HTTP), --in-flight of them open at any time, at about --rps
per second of wall clock, so the writer batches and catches requests in flight as it does in a
worker under load (``processing`` rows, then their final rows as updates). The same loop runs
without the plugin and with it (SQLite in a temporary folder, WAL checkpoints in a thread
included), alternately, --runs times; the difference of process CPU is logging's cost per
request. Also reported: rows written per request (a request caught in flight is written twice).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from gevent import monkey

monkey.patch_all()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent  # noqa: E402

from app.call import Attempt, Call  # noqa: E402
from app.config import parse_config  # noqa: E402
from app.context import RequestContext, new_request_id  # noqa: E402
from app.engine import Served  # noqa: E402
from app.plugins.request_logs import RequestLogs  # noqa: E402
from app.schemas import Target  # noqa: E402

USAGE = {"prompt_tokens": 31, "completion_tokens": 42, "total_tokens": 73}
REPLY = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
    "role": "assistant", "content": "The floor 3 printer jams; replace the feed roller. " * 3}}]}


def a_call(index: int) -> Call:
    ctx = RequestContext(request_id=new_request_id(), environ={})
    body = {"messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": f"Summarise ticket {index}: the printer on floor 3 jams again"}],
            "temperature": 0.3, "max_tokens": 200}
    return Call("chat_completion", False, body, Target("openai", "gpt-4o-mini"), [], ctx)


def finish(call: Call) -> None:
    call.attempts.append(Attempt("openai", "gpt-4o-mini", 0, 0, "oa-1", time.perf_counter(), 0.01))
    call.served = Served("openai", "gpt-4o-mini", 0, "oa-1", 0)
    call.reply, call.usage, call.cost, call.finished_at = REPLY, USAGE, 0.0000301, time.perf_counter()


def run(plugin: RequestLogs | None, args) -> tuple[float, int]:
    """CPU seconds of ``args.requests`` requests (and of the writer until it has stored them all)."""
    open_calls: deque[Call] = deque()
    group = 50
    pause = group / args.rps
    written_before = count_rows(plugin)
    started = time.process_time()
    for index in range(args.requests):
        call = a_call(index)
        if plugin:
            plugin.before(call)
        open_calls.append(call)
        if len(open_calls) > args.in_flight:
            done = open_calls.popleft()
            finish(done)
            if plugin:
                plugin.after(done)
        if index % group == group - 1:
            gevent.sleep(pause)  # the worker's idle time: the writer's batches come every 0.25 s
    while open_calls:
        done = open_calls.popleft()
        finish(done)
        if plugin:
            plugin.after(done)
    if plugin:
        while plugin.pending or plugin.inflight:
            gevent.sleep(0.01)
    return time.process_time() - started, count_rows(plugin) - written_before


def count_rows(plugin: RequestLogs | None) -> int:
    return plugin.writes if plugin is not None and hasattr(plugin, "writes") else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--rps", type=float, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    config = parse_config({"providers": {"openai": {"keys": [{"name": "k", "value": "x", "models": ["gpt-4o-mini"]}]}},
                           "logs_store": {"type": "sqlite", "config": {"path": f"{folder}/logs.db"}},
                           "client": {"log_retention_days": 0}}, environ={})
    plugin = RequestLogs(config)
    # count the rows the writer hands to the store (processing rows included)
    plugin.writes = 0
    write = plugin.writer_store.write

    def counted(rows, *args):
        write(rows, *args)
        plugin.writes += len(rows)

    plugin.writer_store.write = counted
    run(None, argparse.Namespace(**{**vars(args), "requests": 2000}))  # warm up
    run(plugin, argparse.Namespace(**{**vars(args), "requests": 2000}))
    bare, logged, rows = [], [], []
    for _ in range(args.runs):
        bare.append(run(None, args)[0])
        spent, written = run(plugin, args)
        logged.append(spent)
        rows.append(written)
    plugin.close()
    cost = statistics.median(logged[i] - bare[i] for i in range(args.runs)) / args.requests * 1e6
    print(f"without logging  {statistics.median(bare) / args.requests * 1e6:6.1f} us CPU per request (the loop itself)")
    print(f"logging          {cost:6.1f} us CPU per request (hooks + writer + checkpoints; runs: "
          + ", ".join(f"{(logged[i] - bare[i]) / args.requests * 1e6:.1f}" for i in range(args.runs)) + ")")
    print(f"rows written     {statistics.median(rows) / args.requests:6.3f} per request "
          f"({args.in_flight} in flight, {args.rps:.0f} requests/s)")


if __name__ == "__main__":
    main()
