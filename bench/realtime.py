#!/usr/bin/env python3
"""The realtime benchmark (issue 11): `make bench-realtime` (as root: it needs a network namespace).

For each number of concurrent WebRTC calls it starts that many aiortc clients through one gateway
worker (gunicorn, gevent) to the fake realtime provider of the tests, lets them settle, and
measures for --seconds: the worker's CPU (utime+stime), the one-way time of each provider
packet to its client (the provider records when it hands a packet to aiortc, the client when
the packet arrives, before any jitter buffer), the same for one call connected directly (the
baseline), and lost packets. It stops at the first count with loss or with added p50 latency
over 20 ms, which gives the maximum concurrent calls per worker.

Run inside a loopback-only namespace (the Makefile target does it):
  unshare -n sh -c 'ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec .venv/bin/python bench/realtime.py'
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.realtime import ClientPeer, FakeRealtimeProvider, RtcThread  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402
from tests.realtime_netns.conftest import gateway_config, multipart, post, wait_for  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_of(master: int) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == master:
                        return int(entry)
            except (OSError, ValueError):
                pass
    raise RuntimeError("no worker")


def one_way_ms(client: ClientPeer, call, since: float) -> list[float]:
    """Each packet's arrival minus the latest time the provider sent those bytes before it (echoes repeat)."""
    sent: dict[bytes, list[float]] = {}
    for payload, at in list(call.voice.sent):
        sent.setdefault(payload, []).append(at)
    times = []
    for payload, at in list(client.received):
        if at >= since and payload in sent:
            index = bisect.bisect_right(sent[payload], at) - 1
            if index >= 0:
                times.append((at - sent[payload][index]) * 1000)
    return times


def dial(url: str, client: ClientPeer, provider, headers=None) -> object:
    session = json.dumps({"type": "realtime", "model": "openai/gpt-realtime" if headers is None else "gpt-realtime"})
    body, content_type = multipart({"sdp": client.offer(), "session": session})
    before = set(provider.calls)
    status, reply_headers, answer = post(url, body, {"Content-Type": content_type, **(headers or {})}, timeout=30)
    if status not in (200, 201):
        raise RuntimeError(f"call refused: {status} {answer[:200]!r}")
    client.accept(answer.decode())
    return provider.calls[reply_headers["Location"].rsplit("/", 1)[1]] if headers else \
        next(provider.calls[k] for k in provider.calls if k not in before)


def measure(gateway, provider, rtc, calls: int, seconds: float) -> dict:
    clients = [ClientPeer(rtc, rotate=(7 * n) % 200) for n in range(calls)]
    started = time.perf_counter()
    pairs = [(client, dial(gateway.url + "/v1/realtime/calls", client, provider)) for client in clients]
    setup_s = time.perf_counter() - started
    wait_for(lambda: all(len(c.received) >= 25 for c, _ in pairs), 20)
    time.sleep(1)
    worker = worker_of(gateway.process.pid)
    since, cpu0 = time.perf_counter(), cpu_seconds(worker)
    up0 = [(len(c.voice.sent), len(call.received)) for c, call in pairs]
    time.sleep(seconds)
    cpu = cpu_seconds(worker) - cpu0
    wall = time.perf_counter() - since
    times = [t for c, call in pairs for t in one_way_ms(c, call, since)]
    lost = 0
    for (client, call), (sent0, got0) in zip(pairs, up0):  # client -> provider, in the window
        lost += max(0, (len(client.voice.sent) - sent0) - (len(call.received) - got0) - 3)  # 3 in flight
    for client, _ in pairs:
        client.close()
    wait_for(lambda: not provider.active_calls(), 5)
    times.sort()
    return {"calls": calls, "setup_s": round(setup_s, 2), "worker_cpu_pct": round(100 * cpu / wall, 1),
            "cpu_pct_per_call": round(100 * cpu / wall / calls, 2),
            "one_way_p50_ms": round(times[len(times) // 2], 2),
            "one_way_p99_ms": round(times[int(len(times) * .99)], 2),
            "packets": len(times), "lost": lost}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", default="1,5,10,15,20,25,30")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--max-added-ms", type=float, default=20)
    args = parser.parse_args()
    rtc = RtcThread()
    provider = FakeRealtimeProvider(rtc, api_keys={"sk-rt-1"}).start()
    direct = ClientPeer(rtc)
    call = dial(provider.url + "/v1/realtime/calls", direct, provider, {"Authorization": "Bearer sk-rt-1"})
    wait_for(lambda: len(direct.received) >= 25, 10)
    since = time.perf_counter()
    time.sleep(min(args.seconds, 5))
    base = statistics.median(one_way_ms(direct, call, since))
    direct.close()
    print(f"direct one-way p50: {base:.2f} ms")
    rows, counts = [], [int(n) for n in args.calls.split(",")]
    top = max(counts)
    config = gateway_config(provider.url, "http://127.0.0.1:9", max_sessions_per_worker=top,
                            idle_timeout_seconds=10, handshake_timeout_seconds=30)
    with GatewayProcess(config) as gateway:
        for calls in counts:
            row = measure(gateway, provider, rtc, calls, args.seconds)
            row["added_p50_ms"] = round(row["one_way_p50_ms"] - base, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row["lost"] or row["added_p50_ms"] > args.max_added_ms:
                break
    ok = [r["calls"] for r in rows if not r["lost"] and r["added_p50_ms"] <= args.max_added_ms]
    print("\n| calls | worker CPU % | CPU % per call | added p50 ms | one-way p99 ms | lost | setup s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['calls']} | {r['worker_cpu_pct']} | {r['cpu_pct_per_call']} | {r['added_p50_ms']} | "
              f"{r['one_way_p99_ms']} | {r['lost']} | {r['setup_s']} |")
    print(f"\nmaximum concurrent calls per worker within the limits: {max(ok) if ok else 0}"
          f"{' (the largest count tried)' if ok and max(ok) == top else ''}")
    provider.stop()
    rtc.stop()


if __name__ == "__main__":
    main()
