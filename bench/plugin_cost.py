"""CPU per request of the metrics and logging plugins' hooks, measured in-process (no HTTP).

    .venv/bin/python bench/plugin_cost.py

Runs before/after for a JSON request with the plugins as built by default (metrics in
prometheus_client multiprocess mode, writing its mmap files; the log plugin's queue), and
reports process CPU microseconds per request for none, each, and both, with the worker idle
(the metrics Tally writes at once) and busy (it sums ~100 requests per write). The log row is
built in the after hook (row_of, included, and reported alone); the store write is not.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bifrost-bench-metrics-")
from gevent import monkey  # noqa: E402

monkey.patch_all()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.call import Attempt, Call  # noqa: E402
from app.config import parse_config  # noqa: E402
from app.context import RequestContext  # noqa: E402
from app.engine import Served  # noqa: E402
from app.plugins.metrics import MetricsPlugin  # noqa: E402
from app.plugins.request_logs import RequestLogs, row_of  # noqa: E402
from app.schemas import Target  # noqa: E402

USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
ROUNDS = 5000


def one_request(plugins, index: int) -> Call:
    ctx = RequestContext(request_id=f"r{index}", environ={})
    call = Call("chat_completion", False, {"messages": [{"role": "user", "content": "hi"}]},
                Target("openai", "gpt-4o-mini"), [], ctx)
    for plugin in plugins:
        plugin.before(call)
    call.attempts.append(Attempt("openai", "gpt-4o-mini", 0, 0, "k", time.perf_counter(), 0.01))
    call.served = Served("openai", "gpt-4o-mini", 0, "k", 0)
    call.usage, call.cost, call.finished_at = USAGE, 0.0001, time.perf_counter()
    for plugin in reversed(plugins):
        plugin.after(call)
    return call


def main() -> None:
    folder = tempfile.mkdtemp()
    config = parse_config({"providers": {"openai": {"keys": [{"name": "k", "value": "x", "models": ["gpt-4o-mini"]}]}},
                           "logs_store": {"type": "sqlite", "config": {"path": f"{folder}/logs.db"}}}, environ={})
    metrics, logs = MetricsPlugin(config), RequestLogs(config)
    for name, plugins, busy in (("none", [], 0), ("metrics", [metrics], 0), ("metrics, busy worker", [metrics], 1),
                                ("logging", [logs], 0), ("both", [logs, metrics], 0),
                                ("both, busy worker", [logs, metrics], 1)):
        # busy: another request is in flight, so the Tally sums this window's increments
        metrics.tally.busy += busy
        for index in range(200):
            one_request(plugins, index)
        logs.pending.clear()
        started = time.process_time()
        for index in range(ROUNDS):
            one_request(plugins, index)
            if busy and index % 100 == 99:
                metrics.tally.flush()  # ~100 requests per 50 ms window, as at 2,000 requests/s
        spent = (time.process_time() - started) / ROUNDS * 1e6
        metrics.tally.busy -= busy
        metrics.tally.flush()
        logs.pending.clear()
        print(f"{name:21s} {spent:6.1f} us CPU per request")
    call = one_request([], 0)
    call.reply = {"choices": [{"message": {"role": "assistant", "content": "hello " * 40}, "finish_reason": "stop"}]}
    started = time.process_time()
    for _ in range(ROUNDS):
        row_of(call, "final", False)
    print(f"{'row_of':21s} {(time.process_time() - started) / ROUNDS * 1e6:6.1f} us CPU per row (in the after hook)")


if __name__ == "__main__":
    main()
