#!/usr/bin/env python3
"""The realtime benchmark (issue 11): `make bench-realtime` (as root: it needs a network namespace).

For each number of concurrent WebRTC calls it starts that many aiortc clients (in this process)
through one gateway worker (gunicorn, gevent) to the fake realtime provider of the tests (in its
own process), lets them settle, and measures for --seconds: the worker's CPU (utime+stime), the
one-way time of each provider packet to its client (the provider records when it hands a packet
to aiortc, the client when the packet arrives, before any jitter buffer; both read the same
monotonic clock), the same for one call connected directly (the baseline), and lost packets.
It stops at the first count with loss or with added p50 latency over 20 ms, which gives the
maximum concurrent calls per worker. aiortc is pure Python in the harness too: the CPU of the
client process and of the provider process is printed, and a row where either is near a full
core measures the harness, not the gateway.

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

import subprocess  # noqa: E402
import urllib.request  # noqa: E402

from tests.fakes.realtime import ClientPeer, RtcThread  # noqa: E402
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


class Provider:
    """The fake provider in its own process; its calls' send times come back over HTTP."""

    def __init__(self, key: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.realtime", key], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()

    def calls(self) -> dict:
        with urllib.request.urlopen(self.url + "/_test/calls", timeout=30) as reply:
            return {k: {**v, "sent": [(bytes.fromhex(p), t) for p, t in v["sent"]]} for k, v in json.load(reply).items()}

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def pair(client: ClientPeer, calls: dict) -> list:
    """The provider call whose sent payloads start what this client received."""
    head = [p for p, _ in client.received[:20]]
    for call in calls.values():
        sent = [p for p, _ in call["sent"]]
        if head and sent[:len(head)] == head:
            return call["sent"]
    return []


def one_way_ms(received: list, sent_list: list, since: float) -> list[float]:
    """Each packet's arrival minus the latest time the provider sent those bytes before it (echoes repeat)."""
    sent: dict[bytes, list[float]] = {}
    for payload, at in sent_list:
        sent.setdefault(payload, []).append(at)
    times = []
    for payload, at in received:
        if at >= since and payload in sent:
            index = bisect.bisect_right(sent[payload], at) - 1
            if index >= 0:
                times.append((at - sent[payload][index]) * 1000)
    return times


def dial(url: str, client: ClientPeer, headers=None) -> dict:
    model = "gpt-realtime" if headers else "openai/gpt-realtime"
    body, content_type = multipart({"sdp": client.offer(), "session": json.dumps({"type": "realtime", "model": model})})
    status, _, answer = post(url, body, {"Content-Type": content_type, **(headers or {})}, timeout=30)
    if status not in (200, 201):
        raise RuntimeError(f"call refused: {status} {answer[:200]!r}")
    client.accept(answer.decode())


def measure(gateway, provider: Provider, rtc, calls: int, seconds: float) -> dict:
    clients = [ClientPeer(rtc, rotate=(7 * n) % 200) for n in range(calls)]
    started = time.perf_counter()
    for client in clients:
        dial(gateway.url + "/v1/realtime/calls", client)
    setup_s = time.perf_counter() - started
    wait_for(lambda: all(len(c.received) >= 25 for c in clients), 20)
    time.sleep(1)
    worker = worker_of(gateway.process.pid)
    since, cpu0, own0, fake0 = time.perf_counter(), cpu_seconds(worker), time.process_time(), \
        cpu_seconds(provider.process.pid)
    sent0 = [len(c.voice.sent) for c in clients]
    before = provider.calls()
    time.sleep(seconds)
    wall = time.perf_counter() - since
    cpu, own, fake_cpu = cpu_seconds(worker) - cpu0, time.process_time() - own0, \
        cpu_seconds(provider.process.pid) - fake0
    received = [list(c.received) for c in clients]
    sent_now = [len(c.voice.sent) for c in clients]
    time.sleep(0.3)  # packets in flight
    after = provider.calls()
    for client in clients:
        client.close()
    times, lost = [], 0
    for client, got in zip(clients, received):
        times += one_way_ms(got, pair(client, after), since)
    new = {k: v for k, v in after.items() if k not in before or not before[k]["closed"]}
    grown = sum(v["received"] - before.get(k, {"received": 0})["received"] for k, v in new.items())
    lost = max(0, sum(sent_now) - sum(sent0) - grown)  # client -> provider in the window
    wait_for(lambda: all(v["closed"] for v in provider.calls().values()), 5)
    times.sort()
    return {"calls": calls, "setup_s": round(setup_s, 2), "worker_cpu_pct": round(100 * cpu / wall, 1),
            "cpu_pct_per_call": round(100 * cpu / wall / calls, 2),
            "clients_cpu_pct": round(100 * own / wall, 1), "provider_cpu_pct": round(100 * fake_cpu / wall, 1),
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
    provider = Provider("sk-rt-1")
    direct = ClientPeer(rtc)
    dial(provider.url + "/v1/realtime/calls", direct, {"Authorization": "Bearer sk-rt-1"})
    wait_for(lambda: len(direct.received) >= 25, 10)
    since = time.perf_counter()
    time.sleep(min(args.seconds, 5))
    base = statistics.median(one_way_ms(list(direct.received), pair(direct, provider.calls()), since))
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
    print("\n| calls | worker CPU % | CPU % per call | added p50 ms | one-way p99 ms | lost | setup s "
          "| harness CPU % (clients / provider) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['calls']} | {r['worker_cpu_pct']} | {r['cpu_pct_per_call']} | {r['added_p50_ms']} | "
              f"{r['one_way_p99_ms']} | {r['lost']} | {r['setup_s']} | "
              f"{r['clients_cpu_pct']} / {r['provider_cpu_pct']} |")
    print(f"\nmaximum concurrent calls per worker within the limits: {max(ok) if ok else 0}"
          f"{' (the largest count tried)' if ok and max(ok) == top else ''}")
    provider.stop()
    rtc.stop()


if __name__ == "__main__":
    main()
