#!/usr/bin/env python3
"""In-process micro-timing of the governance plugin's per-request work (before + after hooks).

Not the benchmark (bench/run.py --governance measures the real server); this isolates what a
virtual key adds to one request: snapshot lookup, one atomic admit and one settle in the counter
store: the embedded default (LMDB), the previous default (SQLite, kv_store type sqlite) and Redis.
Usage: .venv/bin/python bench/governance_cost.py [--n 5000] [--redis 127.0.0.1:6379]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    args = parser.parse_args()
    os.environ["BIFROST_APP_DIR"] = tempfile.mkdtemp(prefix="bifrost-govcost-")
    from app.call import Call
    from app.config import parse_config
    from app.context import RequestContext
    from app.engine import Served
    from app.plugins.governance import GovernancePlugin
    from app.schemas import Target

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import governed_target  # the bench's own virtual key

    prefix = f"bifrost-govcost-{uuid.uuid4().hex[:8]}:"
    stores = (("embedded", None), ("sqlite", {"type": "sqlite"}),
              ("redis", {"type": "redis", "config": {"addr": args.redis, "key_prefix": prefix}}))
    for label, kv in stores:
        config = governed_target("x", "", kv)["config"]
        config["providers"]["openai"]["network_config"]["base_url"] = "http://127.0.0.1:9"
        plugin = GovernancePlugin(parse_config(config))
        plugin.service.refresh()
        samples = []
        for index in range(args.n):
            started = time.perf_counter()
            call = Call("chat_completion", False, {"messages": [{"role": "user", "content": "hello"}]},
                        Target("openai", "gpt-4o-mini"), [], RequestContext(request_id="r", virtual_key="sk-bf-bench-0000"))
            plugin.before(call)
            call.served = Served("openai", "gpt-4o-mini", 0, "bench", 0)
            call.usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
            call.cost = 0.00001
            plugin.after(call)
            if index >= 200:  # warm-up excluded
                samples.append(time.perf_counter() - started)
        samples.sort()
        print(f"{label:9s} p50 {statistics.median(samples) * 1e3:.3f} ms  p99 {samples[int(len(samples) * 0.99)] * 1e3:.3f} ms"
              f"  ({len(samples)} requests)")
        if label == "redis":
            client = plugin.service.counters.client
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        plugin.close()


if __name__ == "__main__":
    main()
