#!/usr/bin/env python3
"""The gateway benchmark (issue #3): `make bench` / `make bench-soak`.

It starts the mock upstream (bench/mock_upstream.py) and every target, runs each scenario against the mock directly
and through each target in the same run, and prints a table (also written to bench/results/latest.json and
bench/results/latest.md):

  requests per second, p50/p99 latency, added latency (target minus direct), time to first event and gaps between
  events for streams, CPU microseconds per request of the target's processes (utime+stime from /proc/<pid>/stat of
  the gunicorn master and its workers), worker RSS idle and under load (VmRSS), start-up time to the first 200.

Placement (2 cores): each target (1 gunicorn worker) is pinned to --gateway-cpu (0) with taskset; the mock, the
load generators and this runner to --load-cpu (1). Everything listens on 127.0.0.1.

Load: wrk with bench/wrk_post.lua for the non-streaming scenarios (bench/stream_client.py --no-stream when wrk is
missing or --driver python), bench/stream_client.py for the streaming ones. Each measurement lasts --duration
seconds (bounded), is preceded by a short warm-up, and is repeated --runs times; the table shows the median.

Targets: `direct` (the mock itself), `floor` (bench/floor_app.py: the smallest Flask + gunicorn gevent + urllib3
forwarder) and `bifrost` (this repository's gateway). --targets-file adds or replaces targets (JSON list; see
bench/targets.example.json), so another gateway can be measured in the same run. A target that fails to start or
to answer is reported as failed and the run goes on with the others.

--soak runs only the soak test: 50 connections of non-streaming load for --soak-duration seconds (600) against
each selected target (default: bifrost), sampling the worker RSS every 5 s; the growth after the first minute must
stay under 5 MB.

Examples:
  bench/run.py                                # all scenarios, direct+floor+bifrost, 5 s x 3 runs
  bench/run.py --duration 10                  # the issue's 10 s runs (about 9 minutes)
  bench/run.py --scenarios json_c1,stream20_c1 --targets direct,floor --runs 1
  bench/run.py --soak                         # make bench-soak
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BENCH_VENV_PY = HERE / ".venv" / "bin" / "python"
MAIN_BIN = ROOT / ".venv" / "bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

BODY_PROMPT = "Say hello"
NOISY_PCT = 10.0   # background CPU (other processes), in % of one core, above which a result is flagged


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# scenarios
@dataclass
class Scenario:
    name: str
    title: str
    stream: bool
    conns: int
    mock: dict
    stagger_ms: float = 0.0
    route: str = "openai"  # which of a target's routes (ROUTES) the scenario calls

    @property
    def dialect(self) -> str:
        return ROUTES[self.route]

    @property
    def gap_ms(self):
        return self.mock.get("gap_ms", 0.0)


SCENARIOS = [
    Scenario("json_c1", "JSON, no upstream delay, 1 conn", False, 1, {"delay_ms": 0}),
    Scenario("json_c50", "JSON, no upstream delay, 50 conns", False, 50, {"delay_ms": 0}),
    Scenario("json_delay50_c200", "JSON, 50 ms upstream, 200 conns", False, 200, {"delay_ms": 50}),
    Scenario("stream20_c1", "stream 20 chunks, no delay, 1 conn", True, 1,
             {"chunks": 20, "first_delay_ms": 0, "gap_ms": 0}),
    # streams last ~150 ms: start the 20 connections 7.5 ms apart so that their events are not all in phase
    Scenario("stream_slow_c20", "stream 20 chunks, 50 ms first, 5 ms gaps, 20 conns", True, 20,
             {"chunks": 20, "first_delay_ms": 50, "gap_ms": 5}, stagger_ms=7.5),
]
# The drop-in surfaces (issue 7). Each target maps a route to its own path and model; the floor forwards the
# same body to the mock as it is, so "translated" is measured against the floor's plain Anthropic forwarding.
SCENARIOS += [
    Scenario("openai_json_c50", "/openai surface, JSON, 50 conns", False, 50, {"delay_ms": 0}, route="openai_surface"),
    Scenario("anthropic_json_c1", "Anthropic pass-through, JSON, 1 conn", False, 1, {"delay_ms": 0},
             route="anthropic"),
    Scenario("anthropic_json_c50", "Anthropic pass-through, JSON, 50 conns", False, 50, {"delay_ms": 0},
             route="anthropic"),
    Scenario("anthropic_stream20_c1", "Anthropic pass-through, stream 20 chunks, 1 conn", True, 1,
             {"chunks": 20, "first_delay_ms": 0, "gap_ms": 0}, route="anthropic"),
    Scenario("translated_json_c50", "Anthropic shape to the OpenAI mock, JSON, 50 conns", False, 50, {"delay_ms": 0},
             route="anthropic_translated"),
    Scenario("translated_stream20_c1", "Anthropic shape to the OpenAI mock, stream 20 chunks, 1 conn", True, 1,
             {"chunks": 20, "first_delay_ms": 0, "gap_ms": 0}, route="anthropic_translated"),
]
ROUTES = {"openai": "openai", "openai_surface": "openai", "anthropic": "anthropic",
          "anthropic_translated": "anthropic"}  # route -> request body shape
ANTHROPIC_HEADERS = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}
MOCK_DEFAULTS = {"chunks": 20, "first_delay_ms": 0.0, "gap_ms": 0.0, "delay_ms": 0.0}


# ---------------------------------------------------------------------------------------------------------------
# targets
def default_targets() -> list:
    return [
        {"name": "direct", "kind": "direct", "base_url": "{mock_url}", "path": "/v1/chat/completions",
         "model": "gpt-4o-mini", "description": "the mock upstream itself (no gateway)",
         "routes": {"openai_surface": {"path": "/v1/chat/completions", "model": "gpt-4o-mini"},
                    "anthropic": {"path": "/v1/messages", "model": "claude-bench"},
                    "anthropic_translated": {"path": "/v1/messages", "model": "claude-bench"}}},
        {"name": "floor", "kind": "process",
         "description": "bench/floor_app.py: minimal Flask + gunicorn gevent + urllib3 forwarder",
         "cmd": ["{main_bin}/gunicorn", "-c", "{bench}/floor_gunicorn.conf.py", "floor_app:app",
                 "--workers", "1", "--bind", "127.0.0.1:{port}"],
         "cwd": "{bench}", "env": {"FLOOR_UPSTREAM": "{mock_url}", "FLOOR_API_KEY": "sk-bench"},
         "base_url": "http://127.0.0.1:{port}", "path": "/v1/chat/completions", "model": "gpt-4o-mini",
         "health": "/health",
         "routes": {"openai_surface": {"path": "/v1/chat/completions", "model": "gpt-4o-mini"},
                    "anthropic": {"path": "/v1/messages", "model": "claude-bench"},
                    "anthropic_translated": {"path": "/v1/messages", "model": "claude-bench"}}},
        {"name": "bifrost", "kind": "process", "description": "this repository's gateway (wsgi:app)",
         "cmd": ["{main_bin}/gunicorn", "-c", "{root}/gunicorn.conf.py", "wsgi:app",
                 "--workers", "1", "--bind", "127.0.0.1:{port}"],
         # the run's own app dir: request logs (on by default) go to a fresh logs.db there
         "cwd": "{root}", "env": {"BIFROST_CONFIG": "{config}", "BIFROST_APP_DIR": "{logdir}"},
         "config": {"providers": {"openai": {
             "keys": [{"name": "bench", "value": "sk-bench", "models": ["*"], "weight": 1}],
             "network_config": {"base_url": "{mock_url}"}}, "anthropic": {
             "keys": [{"name": "bench", "value": "sk-bench", "models": ["*"], "weight": 1}],
             "network_config": {"base_url": "{mock_url}"}}}},
         "base_url": "http://127.0.0.1:{port}", "path": "/v1/chat/completions", "model": "openai/gpt-4o-mini",
         "health": "/health",
         "routes": {"openai_surface": {"path": "/openai/v1/chat/completions", "model": "gpt-4o-mini"},
                    "anthropic": {"path": "/anthropic/v1/messages", "model": "claude-bench"},
                    "anthropic_translated": {"path": "/anthropic/v1/messages", "model": "openai/gpt-4o-mini"}}},
        governed_target("bifrost_vk", "embedded LMDB counters", None),
        governed_target("bifrost_vk_redis", "Redis counters on loopback",
                        {"type": "redis", "config": {"addr": "127.0.0.1:6379", "key_prefix": "bifrost-bench:"}}),
    ]


def governed_target(name: str, store: str, kv_store) -> dict:
    """The gateway with a virtual key on every request (rate limit and budget checked and settled each time).

    Compare its added p50 with bifrost's (--governance). The Redis variant keeps its counters under
    bifrost-bench:* (a few keys, overwritten by every run)."""
    governance = {
        "budgets": [{"id": "bench-budget", "max_limit": 1e12, "reset_duration": "1M"}],
        "rate_limits": [{"id": "bench-limit", "request_max_limit": 10**12, "request_reset_duration": "1M",
                         "token_max_limit": 10**15, "token_reset_duration": "1M"}],
        "virtual_keys": [{"id": "bench-vk", "name": "bench", "value": "sk-bf-bench-0000",
                          "budget_id": "bench-budget", "rate_limit_id": "bench-limit"}],
    }
    config = {"providers": {"openai": {"keys": [{"name": "bench", "value": "sk-bench", "models": ["*"], "weight": 1}],
                                       "network_config": {"base_url": "{mock_url}"}}},
              "governance": governance}
    if kv_store:
        config["kv_store"] = kv_store
    return {"name": name, "kind": "process", "description": f"the gateway, a virtual key on every request ({store})",
            "cmd": ["{main_bin}/gunicorn", "-c", "{root}/gunicorn.conf.py", "wsgi:app",
                    "--workers", "1", "--bind", "127.0.0.1:{port}"],
            "cwd": "{root}", "env": {"BIFROST_CONFIG": "{config}", "BIFROST_APP_DIR": "{results}/app-" + name},
            "config": config, "auth": "Bearer sk-bf-bench-0000",
            "base_url": "http://127.0.0.1:{port}", "path": "/v1/chat/completions", "model": "openai/gpt-4o-mini",
            "health": "/health"}


def subst(obj, values: dict):
    """Replace {placeholders} in every string of a JSON-like structure."""
    if isinstance(obj, str):
        out = obj
        for k, v in values.items():
            out = out.replace("{" + k + "}", str(v))
        return out
    if isinstance(obj, list):
        return [subst(x, values) for x in obj]
    if isinstance(obj, dict):
        return {k: subst(v, values) for k, v in obj.items()}
    return obj


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# /proc helpers
def proc_children(pid: int) -> list:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(b")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def proc_tree(pid: int) -> list:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(proc_children(p))
    return seen


def cpu_ticks(pids) -> int:
    """utime+stime, in clock ticks, summed over pids (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])   # fields 14, 15 of stat(5)
    return total


def rss_kb(pid: int):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def core_times():
    """{cpu index: (busy, total, user+nice+system, steal)} in ticks, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = [int(x) for x in parts[1:]]
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                total = sum(vals[:8])
                steal = vals[7] if len(vals) > 7 else 0
                out[int(parts[0][3:])] = (total - idle, total, vals[0] + vals[1] + vals[2], steal)
    return out


class CPUWindow:
    """CPU seconds spent on the machine by processes that are not part of the benchmark, over a window.

    background = (user+nice+system of all cores) - (the known processes: target, mock) - (this runner and the
    load generators it waited for). Other people's tests on a shared machine show up here; a run with much
    background CPU is flagged in the table.
    """

    def __init__(self, known_pids):
        self.known = list(known_pids)
        self.k0 = core_times()
        self.p0 = cpu_ticks(self.known)
        self.r0 = self._own()
        self.w0 = time.perf_counter()

    @staticmethod
    def _own():
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def background_pct(self):
        """(CPU of other processes, CPU stolen by the hypervisor), both in % of one core, since the start."""
        k1, p1, r1, w1 = core_times(), cpu_ticks(self.known), self._own(), time.perf_counter()
        if w1 <= self.w0:
            return None, None
        all_s = sum(k1[c][2] - self.k0[c][2] for c in k1 if c in self.k0) / CLK_TCK
        steal_s = sum(k1[c][3] - self.k0[c][3] for c in k1 if c in self.k0) / CLK_TCK
        bg = all_s - (p1 - self.p0) / CLK_TCK - (r1 - self.r0)
        return round(max(0.0, 100.0 * bg / (w1 - self.w0)), 1), round(100.0 * steal_s / (w1 - self.w0), 1)


def wait_for_quiet(args, known_pids):
    """With --wait-idle N: wait (up to N s) until other processes use less than --idle-threshold % of a core."""
    if args.wait_idle <= 0:
        return None
    deadline = time.time() + args.wait_idle
    said = False
    while True:
        w = CPUWindow(known_pids)
        time.sleep(0.5)
        bg, steal = w.background_pct()
        bg = None if bg is None else bg + steal
        if bg is None or bg < args.idle_threshold or time.time() > deadline:
            if said:
                log("  (machine %s: other processes + steal %.0f%% of a core)" % (
                    "quiet" if bg < args.idle_threshold else "still busy, going on", bg))
            return bg
        if not said:
            log("  (waiting for other processes / the hypervisor to calm down: %.0f%% of a core)" % bg)
            said = True
        time.sleep(1.0)


def core_busy(before, after) -> dict:
    res = {}
    for c in after:
        if c in before:
            db = after[c][0] - before[c][0]
            dt = after[c][1] - before[c][1]
            res[str(c)] = round(100.0 * db / dt, 1) if dt > 0 else None
    return res


# ---------------------------------------------------------------------------------------------------------------
# small HTTP helpers (stdlib, for health checks, verification and the mock's control endpoint)
def http_call(base_url: str, method: str, path: str, body=None, headers=None, timeout=5.0):
    from urllib.parse import urlsplit
    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        conn.request(method, (u.path.rstrip("/") if u.path else "") + path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


class Mock:
    def __init__(self, args, logdir: Path):
        self.port = args.mock_port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        py = str(BENCH_VENV_PY if BENCH_VENV_PY.exists() else sys.executable)
        self.logf = open(logdir / "mock.log", "wb")
        cmd = ["taskset", "-c", str(args.load_cpu), py, str(HERE / "mock_upstream.py"), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the mock upstream exited: see %s" % (logdir / "mock.log"))
            try:
                if http_call(self.url, "GET", "/health", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError("the mock upstream did not answer /health")
        self.pid = self.proc.pid

    def configure(self, **cfg):
        conf = dict(MOCK_DEFAULTS)
        conf.update(cfg)
        st, body, _ = http_call(self.url, "POST", "/_mock/config", conf)
        if st != 200:
            raise RuntimeError("mock config failed: %s %s" % (st, body[:200]))

    def stats(self) -> dict:
        return json.loads(http_call(self.url, "GET", "/_mock/stats")[1])

    def stop(self):
        stop_group(self.proc)
        self.logf.close()


def stop_group(proc: subprocess.Popen, timeout=10.0):
    """SIGTERM the process group we started (start_new_session=True), then SIGKILL it if it lingers."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
    # workers that outlived the master (same process group)
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Target:
    spec: dict
    name: str
    kind: str
    base_url: str = ""
    path: str = "/v1/chat/completions"
    model: str = "gpt-4o-mini"
    auth: str = "Bearer sk-bench"
    health: str = "/health"
    proc: subprocess.Popen = None
    pids: list = field(default_factory=list)
    failed: str = ""
    info: dict = field(default_factory=dict)
    logpath: Path = None

    @property
    def url(self):
        return self.base_url.rstrip("/") + self.path

    def endpoint(self, route: str):
        """(url, model) of a route, or None when the target does not serve it."""
        if route == "openai":
            return self.url, self.model
        spec = (self.spec.get("routes") or {}).get(route)
        if not spec:
            return None
        return self.base_url.rstrip("/") + spec["path"], spec["model"]

    def alive(self) -> bool:
        if self.kind == "direct" or self.kind == "external":
            return True
        return self.proc is not None and self.proc.poll() is None

    def refresh_pids(self):
        if self.proc is not None and self.proc.poll() is None:
            self.pids = proc_tree(self.proc.pid)

    def worker_pids(self):
        if self.kind == "direct":
            return self.pids
        return [p for p in self.pids if self.proc is None or p != self.proc.pid] or self.pids

    def worker_rss_mb(self):
        vals = [rss_kb(p) for p in self.worker_pids()]
        vals = [v for v in vals if v]
        return round(max(vals) / 1024.0, 1) if vals else None

    def log_tail(self, n=15) -> str:
        if not self.logpath or not self.logpath.exists():
            return ""
        lines = self.logpath.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def make_target(spec: dict, mock: Mock, args, logdir: Path) -> Target:
    values = {"mock_url": mock.url, "mock_port": mock.port, "root": ROOT, "bench": HERE, "main_bin": MAIN_BIN,
              "results": RESULTS, "logdir": logdir}
    kind = spec.get("kind", "process" if spec.get("cmd") else "external")
    port = free_port() if kind == "process" else None
    values["port"] = port
    if spec.get("config") is not None:
        cfg_path = logdir / ("%s-config.json" % spec["name"])
        cfg_path.write_text(json.dumps(subst(spec["config"], values), indent=2))
        values["config"] = cfg_path
    s = subst(spec, values)
    t = Target(spec=s, name=s["name"], kind=kind, base_url=s.get("base_url", ""),
               path=s.get("path", "/v1/chat/completions"), model=s.get("model", "gpt-4o-mini"),
               auth=s.get("auth", "Bearer sk-bench"), health=s.get("health", "/health"))
    t.info["description"] = s.get("description", "")
    if kind == "direct":
        t.pids = [mock.pid]
    if kind == "external" and s.get("pid"):
        t.pids = proc_tree(int(s["pid"]))
    return t


def wait_health(t: Target, timeout: float):
    """Poll the health URL; return the perf_counter time of the first 200, or raise."""
    deadline = time.perf_counter() + timeout
    last = "no answer"
    while time.perf_counter() < deadline:
        if t.proc is not None and t.proc.poll() is not None:
            raise RuntimeError("exited with code %s before answering" % t.proc.returncode)
        try:
            st, body, _ = http_call(t.base_url, "GET", t.health, timeout=1.0)
            if st == 200:
                return time.perf_counter()
            last = "HTTP %s: %s" % (st, body[:200].decode("utf-8", "replace"))
        except OSError as e:
            last = "%s" % e
        time.sleep(0.005)
    raise RuntimeError("no 200 on %s within %.0f s (last: %s)" % (t.health, timeout, last))


def start_target(t: Target, args, logdir: Path):
    t.logpath = logdir / ("%s.log" % t.name)
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (t.spec.get("env") or {}).items()})
    cmd = [str(x) for x in t.spec["cmd"]]
    if t.spec.get("pin", True):
        cmd = ["taskset", "-c", str(args.gateway_cpu)] + cmd
    with open(t.logpath, "ab") as lf:
        lf.write(("\n=== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(cmd))).encode())
        lf.flush()
        t0 = time.perf_counter()
        t.proc = subprocess.Popen(cmd, cwd=t.spec.get("cwd") or None, env=env, stdout=lf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    t1 = wait_health(t, args.start_timeout)
    return t1 - t0


def verify_target(t: Target, mock: Mock) -> str:
    """One JSON and one streaming request; '' if both look right and reached the mock, else the reason."""
    hdr = {"Authorization": t.auth} if t.auth else {}
    before = mock.stats()["chat"]
    body = {"model": t.model, "messages": [{"role": "user", "content": BODY_PROMPT}]}
    try:
        st, data, _ = http_call(t.base_url, "POST", t.path, body, hdr, timeout=10)
    except OSError as e:
        return "JSON request failed: %s" % e
    if st != 200:
        return "JSON request: HTTP %s: %s" % (st, data[:300].decode("utf-8", "replace"))
    try:
        reply = json.loads(data)
        reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "JSON request: not a chat completion: %r" % data[:300]
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    try:
        st, data, _ = http_call(t.base_url, "POST", t.path, body, hdr, timeout=10)
    except OSError as e:
        return "stream request failed: %s" % e
    if st != 200:
        return "stream request: HTTP %s: %s" % (st, data[:300].decode("utf-8", "replace"))
    if b"data:" not in data or b"[DONE]" not in data:
        return "stream request: no SSE data / [DONE]: %r" % data[:300]
    after = mock.stats()["chat"]
    if after - before < 2:
        return "the requests did not reach the mock upstream (%d upstream calls for 2 requests)" % (after - before)
    return ""


# ---------------------------------------------------------------------------------------------------------------
# load drivers
def run_wrk(url, model, auth, conns, duration, args, cpu, dialect="openai") -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": BODY_PROMPT}]}
    env = dict(os.environ, BENCH_AUTH=auth or "")
    if dialect == "anthropic":
        body["max_tokens"] = 256
        env["BENCH_HEADERS"] = "\n".join("%s: %s" % kv for kv in ANTHROPIC_HEADERS.items())
    env["BENCH_BODY"] = json.dumps(body, separators=(",", ":"))
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", "-c%d" % conns, "-d%ds" % max(1, round(duration)),
           "--timeout", "%ds" % int(args.request_timeout), "-s", str(HERE / "wrk_post.lua"), url]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError("wrk failed (%s): %s %s" % (p.returncode, p.stdout[-500:], p.stderr[-500:]))
    w = json.loads(line[len("BENCH_JSON "):])
    secs = w["duration_us"] / 1e6
    errs = sum(w["errors"].values())
    lat = w["latency_us"]
    return {"driver": "wrk", "requests": w["requests"], "elapsed_s": round(secs, 3),
            "rps": round(w["requests"] / secs, 1) if secs else 0.0, "errors": errs, "error_detail": w["errors"],
            "p50_us": lat["p50"], "p99_us": lat["p99"], "mean_us": lat["mean"], "max_us": lat["max"],
            "ok_requests": max(0, w["requests"] - w["errors"]["status"])}


def run_stream_client(url, model, auth, conns, duration, args, cpu, stream=True, expect_gap_ms=None,
                      stagger_ms=0.0, dialect="openai") -> dict:
    py = str(BENCH_VENV_PY if BENCH_VENV_PY.exists() else sys.executable)
    cmd = ["taskset", "-c", str(cpu), py, str(HERE / "stream_client.py"), "--url", url, "--model", model,
           "-c", str(conns), "-d", str(duration), "--timeout", str(args.request_timeout), "--auth", auth or ""]
    if dialect == "anthropic":
        cmd += ["--dialect", "anthropic"]
        for name, value in ANTHROPIC_HEADERS.items():
            cmd += ["--header", "%s: %s" % (name, value)]
    if args.max_requests:
        cmd += ["-n", str(args.max_requests)]
    cmd.append("--stream" if stream else "--no-stream")
    if expect_gap_ms:
        cmd += ["--expect-gap-ms", str(expect_gap_ms)]
    if stagger_ms:
        cmd += ["--stagger-ms", str(stagger_ms)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + args.request_timeout + 60)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError("stream client failed (%s): %s" % (p.returncode, p.stderr[-800:]))
    c = json.loads(p.stdout.strip().splitlines()[-1])
    lat = c.get("latency_us") or {}
    out = {"driver": "python", "requests": c["requests"], "elapsed_s": c["elapsed_s"], "rps": c["rps"],
           "errors": c["errors"], "first_error": c.get("first_error"), "p50_us": lat.get("p50"),
           "p99_us": lat.get("p99"), "mean_us": lat.get("mean"), "max_us": lat.get("max"),
           "ok_requests": c["requests"]}
    if stream:
        ttfe, gap = c.get("ttfe_us") or {}, c.get("gap_us") or {}
        out.update({"ttfe_p50_us": ttfe.get("p50"), "ttfe_p99_us": ttfe.get("p99"), "gap_p50_us": gap.get("p50"),
                    "gap_p99_us": gap.get("p99"), "gap_min_us": gap.get("min"), "gap_max_us": gap.get("max"),
                    "events_per_stream": c.get("events_per_stream"),
                    "coalesced_frac": round(c["coalesced"] / gap["n"], 5) if gap.get("n") else None,
                    "gaps_off_frac": c.get("gaps_off_frac")})
    return out


class RSSSampler(threading.Thread):
    def __init__(self, target: Target, every=0.25):
        super().__init__(daemon=True)
        self.t, self.every = target, every
        self.samples = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            v = self.t.worker_rss_mb()
            if v is not None:
                self.samples.append((time.time(), v))
            self._halt.wait(self.every)

    def stop(self):
        self._halt.set()
        self.join()
        return max((v for _, v in self.samples), default=None)


def measure(t: Target, sc: Scenario, duration: float, args, mock: Mock, cpu=None) -> dict:
    cpu = args.load_cpu if cpu is None else cpu
    t.refresh_pids()
    pids = list(t.pids)
    sampler = RSSSampler(t) if pids else None
    if sampler:
        sampler.start()
    known = set(pids) | {mock.pid}
    wait_for_quiet(args, known)
    up0 = mock.stats()["chat"]
    win = CPUWindow(known)
    c0, k0, w0 = cpu_ticks(pids), core_times(), time.perf_counter()
    url, model = t.endpoint(sc.route)
    if not sc.stream and args.driver == "wrk":
        r = run_wrk(url, model, t.auth, sc.conns, duration, args, cpu, dialect=sc.dialect)
    else:
        r = run_stream_client(url, model, t.auth, sc.conns, duration, args, cpu, stream=sc.stream,
                              expect_gap_ms=sc.gap_ms or None, stagger_ms=sc.stagger_ms, dialect=sc.dialect)
    c1, k1, w1 = cpu_ticks(pids), core_times(), time.perf_counter()
    r["background_cpu_pct"], r["steal_pct"] = win.background_pct()
    r["disturbance_pct"] = round((r["background_cpu_pct"] or 0) + (r["steal_pct"] or 0), 1)
    up1 = mock.stats()["chat"]
    r["rss_load_mb"] = sampler.stop() if sampler else None
    n = r["ok_requests"] or r["requests"]
    r["cpu_s"] = round((c1 - c0) / CLK_TCK, 3)
    r["cpu_us_per_req"] = round((c1 - c0) / CLK_TCK * 1e6 / n, 1) if n and pids else None
    r["cpu_util_pct"] = round(100.0 * (c1 - c0) / CLK_TCK / (w1 - w0), 1) if pids else None
    r["core_busy_pct"] = core_busy(k0, k1)
    r["upstream_calls_per_req"] = round((up1 - up0) / r["requests"], 3) if r["requests"] else None
    return r


# ---------------------------------------------------------------------------------------------------------------
# aggregation and report
RUN_KEYS = ["rps", "p50_us", "p99_us", "ttfe_p50_us", "ttfe_p99_us", "gap_p50_us", "gap_p99_us", "coalesced_frac",
            "gaps_off_frac", "cpu_us_per_req", "cpu_util_pct", "rss_load_mb", "events_per_stream",
            "upstream_calls_per_req", "background_cpu_pct", "steal_pct", "disturbance_pct"]


def med(vals):
    vals = [v for v in vals if v is not None]
    return round(statistics.median(vals), 5 if isinstance(vals[0], float) and abs(vals[0]) < 1 else 1) \
        if vals else None


def aggregate(all_runs: list) -> dict:
    """Median of each metric over the runs; runs disturbed by other processes are left out when at least one run
    was quiet."""
    quiet = [r for r in all_runs if (r.get("disturbance_pct") or 0) <= NOISY_PCT and not r.get("error")]
    runs = quiet or all_runs
    agg = {k: med([r.get(k) for r in runs]) for k in RUN_KEYS}
    agg["errors"] = sum(r.get("errors", 0) for r in all_runs)
    agg["requests"] = sum(r.get("requests", 0) for r in all_runs)
    agg["runs"] = len(all_runs)
    agg["runs_used"] = len(runs)
    agg["max_rss_load_mb"] = max((r["rss_load_mb"] for r in runs if r.get("rss_load_mb") is not None), default=None)
    busy = {}
    for r in runs:
        for c, v in (r.get("core_busy_pct") or {}).items():
            busy.setdefault(c, []).append(v)
    agg["core_busy_pct"] = {c: med(v) for c, v in busy.items()}
    first = next((r.get("first_error") for r in runs if r.get("first_error")), None)
    if first:
        agg["first_error"] = first
    return agg


def derive(results: dict, scenario_names, target_names):
    """Added latency vs direct, ratios vs floor."""
    for sn in scenario_names:
        rows = results.get(sn, {})
        d = rows.get("direct")
        f = rows.get("floor")
        for tn, a in rows.items():
            if a.get("failed"):
                continue
            if d and not d.get("failed") and tn != "direct":
                for k, dk in (("p50_us", "added_p50_us"), ("p99_us", "added_p99_us"),
                              ("ttfe_p50_us", "added_ttfe_p50_us")):
                    if a.get(k) is not None and d.get(k) is not None:
                        a[dk] = round(a[k] - d[k], 1)
                if a.get("p50_us") and d.get("p50_us"):
                    a["p50_vs_direct"] = round(a["p50_us"] / d["p50_us"], 4)
            if f and not f.get("failed") and tn not in ("direct", "floor"):
                if a.get("rps") and f.get("rps"):
                    a["rps_vs_floor"] = round(a["rps"] / f["rps"], 3)
                if a.get("cpu_us_per_req") and f.get("cpu_us_per_req"):
                    a["cpu_vs_floor"] = round(a["cpu_us_per_req"] / f["cpu_us_per_req"], 3)
                if a.get("added_p50_us") is not None and f.get("added_p50_us"):
                    a["added_p50_vs_floor"] = round(a["added_p50_us"] / f["added_p50_us"], 3)


def fmt(v, scale=1.0, nd=2, dash="–"):
    if v is None:
        return dash
    x = v * scale
    if nd == 0:
        return "%d" % round(x)
    return ("%." + str(nd) + "f") % x


def checks_for(tn: str, results: dict, targets_info: dict, soak=None) -> list:
    """The issue's targets, for a gateway target measured against the floor and direct."""
    out = []

    def row(label, value, limit, ok):
        out.append({"check": label, "value": value, "limit": limit,
                    "result": "n/a" if ok is None else ("PASS" if ok else "FAIL")})

    def get(sn, who, k):
        a = results.get(sn, {}).get(who) or {}
        return None if a.get("failed") else a.get(k)

    ga, fa = get("json_c1", tn, "added_p50_us"), get("json_c1", "floor", "added_p50_us")
    if ga is not None and fa is not None:
        row("added p50, JSON 1 conn", "%.3f ms (floor %.3f ms, x%.2f)" % (ga / 1e3, fa / 1e3, ga / fa if fa else 0),
            "<= 1.25x floor and < 2 ms", ga <= 1.25 * fa and ga < 2000)
    else:
        row("added p50, JSON 1 conn", "–", "<= 1.25x floor and < 2 ms", None)
    g, f = get("json_c50", tn, "rps"), get("json_c50", "floor", "rps")
    row("rps, JSON 50 conns", "%.0f (floor %.0f, x%.2f)" % (g, f, g / f) if g and f else "–", ">= 0.8x floor",
        (g >= 0.8 * f) if g and f else None)
    g, f = get("json_c50", tn, "cpu_us_per_req"), get("json_c50", "floor", "cpu_us_per_req")
    row("CPU per request, JSON 50 conns", "%.0f us (floor %.0f us, x%.2f)" % (g, f, g / f) if g and f else "–",
        "<= 1.25x floor", (g <= 1.25 * f) if g and f else None)
    g = get("stream20_c1", tn, "added_ttfe_p50_us")
    row("added TTFE p50, stream 1 conn", "%.3f ms" % (g / 1e3) if g is not None else "–", "< 2 ms",
        (g < 2000) if g is not None else None)
    g, d = get("stream_slow_c20", tn, "p50_us"), get("stream_slow_c20", "direct", "p50_us")
    row("stream total p50, 50/5 ms, 20 conns", "%.1f ms (direct %.1f ms, x%.3f)" % (g / 1e3, d / 1e3, g / d)
        if g and d else "–", "<= 1.05x direct", (g <= 1.05 * d) if g and d else None)
    sn = "stream_slow_c20"
    gc, dc = get(sn, tn, "coalesced_frac"), get(sn, "direct", "coalesced_frac")
    gp, go, do, fo = (get(sn, tn, "gap_p50_us"), get(sn, tn, "gaps_off_frac"), get(sn, "direct", "gaps_off_frac"),
                      get(sn, "floor", "gaps_off_frac"))
    if None not in (gc, dc, gp, go, do):
        ref = fo if fo is not None else do
        ok = gc <= dc + 0.005 and abs(gp - 5000) <= 1000 and go <= ref + 0.02
        row("no coalescing, 5 ms gaps, 20 conns",
            "coalesced %.2f%% (direct %.2f%%); gap p50 %.2f ms; gaps off by >1 ms: %.1f%% (direct %.1f%%%s)" % (
                gc * 100, dc * 100, gp / 1e3, go * 100, do * 100,
                ", floor %.1f%%" % (fo * 100) if fo is not None else ""),
            "coalesced <= direct+0.5 pt; gap p50 5+-1 ms; off <= floor+2 pt", ok)
    else:
        row("no coalescing, 5 ms gaps, 20 conns", "–", "as direct", None)
    # The drop-in surfaces: pass-through and /openai within the core's 1.25x of the floor, translation within 1.5x.
    for sn, label, limit in (("openai_json_c50", "/openai", 1.25),
                             ("anthropic_json_c50", "Anthropic pass-through", 1.25),
                             ("translated_json_c50", "Anthropic -> OpenAI translated", 1.5)):
        g, f = get(sn, tn, "cpu_us_per_req"), get(sn, "floor", "cpu_us_per_req")
        if sn in results:
            row("CPU per request, %s, JSON 50 conns" % label,
                "%.0f us (floor %.0f us, x%.2f)" % (g, f, g / f) if g and f else "–", "<= %.2fx floor" % limit,
                (g <= limit * f) if g and f else None)
    ga, fa = get("anthropic_json_c1", tn, "added_p50_us"), get("anthropic_json_c1", "floor", "added_p50_us")
    if "anthropic_json_c1" in results:
        row("added p50, Anthropic pass-through, JSON 1 conn",
            "%.3f ms (floor %.3f ms)" % (ga / 1e3, fa / 1e3) if ga is not None and fa is not None else "–",
            "<= 1.25x floor and < 2 ms", (ga <= 1.25 * fa and ga < 2000) if ga is not None and fa else None)
    for sn in ("anthropic_stream20_c1", "translated_stream20_c1"):
        g = get(sn, tn, "added_ttfe_p50_us")
        if sn in results:
            row("added TTFE p50, %s" % sn, "%.3f ms" % (g / 1e3) if g is not None else "–", "< 2 ms",
                (g < 2000) if g is not None else None)
    ti = targets_info.get(tn, {})
    v = ti.get("rss_idle_mb")
    row("idle RSS per worker", "%.1f MB" % v if v else "–", "< 80 MB", (v < 80) if v else None)
    v = ti.get("startup_s")
    row("start-up to first 200", "%.3f s" % v if v else "–", "< 1.5 s", (v < 1.5) if v else None)
    if soak is not None:
        v = soak.get("growth_mb")
        row("soak RSS growth after 1st minute", "%.1f MB" % v if v is not None else "–", "< 5 MB",
            (v < 5) if v is not None else None)
    return out


def render(report: dict) -> tuple:
    """(text for the terminal, markdown)."""
    res, sc_names, tnames = report["results"], report["scenarios"], report["targets"]
    tinfo = report["target_info"]
    head = ["scenario", "target", "rps", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "TTFE p50 ms",
            "added TTFE ms", "gap p50/p99 ms", "coalesced", "CPU us/req", "RSS load MB", "core0/1 %", "bg+steal %",
            "errors"]
    rows = []
    for sn in sc_names:
        for tn in tnames:
            a = res.get(sn, {}).get(tn)
            if a is None:
                continue
            if a.get("failed"):
                rows.append([sn, tn, "FAILED"] + [""] * (len(head) - 3))
                continue
            busy = a.get("core_busy_pct") or {}
            rows.append([
                sn, tn, fmt(a.get("rps"), nd=0), fmt(a.get("p50_us"), 1e-3, 3), fmt(a.get("p99_us"), 1e-3, 3),
                fmt(a.get("added_p50_us"), 1e-3, 3), fmt(a.get("added_p99_us"), 1e-3, 3),
                fmt(a.get("ttfe_p50_us"), 1e-3, 3), fmt(a.get("added_ttfe_p50_us"), 1e-3, 3),
                ("%s/%s" % (fmt(a.get("gap_p50_us"), 1e-3, 2), fmt(a.get("gap_p99_us"), 1e-3, 2)))
                if a.get("gap_p50_us") is not None else "–",
                ("%.1f%%" % (a["coalesced_frac"] * 100)) if a.get("coalesced_frac") is not None else "–",
                fmt(a.get("cpu_us_per_req"), nd=0) + (" (mock)" if tn == "direct" and a.get("cpu_us_per_req") else ""),
                fmt(a.get("max_rss_load_mb"), nd=1) + (" (mock)" if tn == "direct" else ""),
                "%s/%s" % (fmt(busy.get("0"), nd=0), fmt(busy.get("1"), nd=0)),
                "%s+%s%s" % (fmt(a.get("background_cpu_pct"), nd=0), fmt(a.get("steal_pct"), nd=0),
                             " !" if (a.get("disturbance_pct") or 0) > NOISY_PCT else ""),
                str(a.get("errors", 0))])

    def table_md(h, rs):
        lines = ["| " + " | ".join(h) + " |", "|" + "|".join("---" for _ in h) + "|"]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rs]
        return "\n".join(lines)

    def table_txt(h, rs):
        w = [max(len(str(x)) for x in col) for col in zip(h, *rs)] if rs else [len(x) for x in h]
        fmt_row = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
        return "\n".join([fmt_row(h), fmt_row(["-" * x for x in w])] + [fmt_row(r) for r in rs])

    th = ["target", "status", "start-up s (to 1st 200)", "RSS idle MB (worker)", "RSS master MB",
          "RSS after load MB", "description"]
    trows = []
    for tn in tnames:
        ti = tinfo.get(tn, {})
        trows.append([tn, "FAILED: " + ti["failed"][:80] if ti.get("failed") else "ok",
                      fmt(ti.get("startup_s"), nd=3), fmt(ti.get("rss_idle_mb"), nd=1),
                      fmt(ti.get("rss_master_mb"), nd=1), fmt(ti.get("rss_after_mb"), nd=1),
                      ti.get("description", "")])
    parts_txt, parts_md = [], []
    env = report["environment"]
    hdr = ("bench %s: %d run(s) x %ss per measurement, median shown; targets on core %s, mock+load on core %s; %s"
           % (report["started"], report["params"]["runs"], report["params"]["duration"],
              report["params"]["gateway_cpu"], report["params"]["load_cpu"], env.get("cpu_model", "")))
    parts_txt.append(hdr)
    parts_md.append(hdr + "\n")
    ceil = report.get("mock_ceiling")
    if ceil:
        line = ("mock ceiling (JSON, 50 conns, mock alone on core %s, wrk on core %s): %.0f rps, p50 %.3f ms, "
                "p99 %.3f ms, mock CPU %.1f us/req" % (report["params"]["load_cpu"], report["params"]["gateway_cpu"],
                                                       ceil["rps"], ceil["p50_us"] / 1e3, ceil["p99_us"] / 1e3,
                                                       ceil.get("cpu_us_per_req") or 0))
        parts_txt.append(line)
        parts_md.append(line + "\n")
    parts_txt += ["", table_txt(head, rows), "", table_txt(th, trows)]
    parts_md += [table_md(head, rows), "", table_md(th, trows)]
    for tn, cks in report.get("checks", {}).items():
        ch = ["check", "value", "limit", "result"]
        cr = [[c["check"], c["value"], c["limit"], c["result"]] for c in cks]
        parts_txt += ["", "targets of issue #3 for %s (vs floor / direct):" % tn, table_txt(ch, cr)]
        parts_md += ["", "**Targets for %s** (vs floor / direct):" % tn, "", table_md(ch, cr)]
    noisy = [(sn, tn) for sn in sc_names for tn in tnames
             if ((res.get(sn, {}).get(tn) or {}).get("disturbance_pct") or 0) > NOISY_PCT]
    if noisy:
        w = ("WARNING: other processes or the hypervisor (steal) took more than %d%% of a core during %d result(s) "
             "(marked '!'): those numbers are disturbed; rerun on a quiet machine, or with --wait-idle 60 "
             "--retry-noisy 2" % (NOISY_PCT, len(noisy)))
        parts_txt += ["", w]
        parts_md += ["", "**" + w + "**"]
    notes = ("notes: added = target minus direct (same scenario, same run); CPU us/req = utime+stime of the target's "
             "gunicorn master+worker / completed requests (for direct: the mock's); stream latency = whole-stream "
             "time; coalesced = events that arrived in the same socket read as the previous one; bg+steal %% = CPU "
             "used by processes outside the benchmark + CPU time stolen by the hypervisor, in %% of one core (median "
             "of the runs used; runs above %d%% are left out of the median when a quieter run exists)." % NOISY_PCT)
    parts_txt += ["", notes]
    parts_md += ["", notes]
    return "\n".join(parts_txt), "\n".join(parts_md) + "\n"


def environment(args) -> dict:
    env = {"python": platform.python_version(), "kernel": platform.release(), "nproc": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            env["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    py = MAIN_BIN / "python"
    if py.exists():
        code = ("import importlib.metadata as m, json, platform;"
                "print(json.dumps({'python': platform.python_version(), **{p: m.version(p) for p in "
                "('flask', 'werkzeug', 'gunicorn', 'gevent', 'greenlet', 'urllib3', 'requests')}}))")
        try:
            env["gateway_venv"] = json.loads(subprocess.run([str(py), "-c", code], capture_output=True, text=True,
                                                            timeout=30).stdout)
        except (ValueError, subprocess.SubprocessError):
            pass
    try:
        env["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        env["wrk"] = None
    try:
        import uvloop  # noqa: F401
        env["bench_loop"] = "uvloop"
    except ImportError:
        env["bench_loop"] = "asyncio"
    return env


# ---------------------------------------------------------------------------------------------------------------
def load_target_specs(args) -> list:
    specs = default_targets()
    if args.targets_file:
        extra = json.loads(Path(args.targets_file).read_text())
        if isinstance(extra, dict):
            extra = extra.get("targets", [extra])
        by_name = {s["name"]: i for i, s in enumerate(specs)}
        for s in extra:
            if s["name"] in by_name:
                specs[by_name[s["name"]]] = s
            else:
                specs.append(s)
    return specs


def start_all(specs, wanted, mock, args, logdir, report) -> list:
    targets = []
    for spec in specs:
        if spec["name"] not in wanted:
            continue
        t = make_target(spec, mock, args, logdir)
        info = report["target_info"].setdefault(t.name, {"description": t.info.get("description", ""),
                                                         "kind": t.kind, "url": t.url, "model": t.model})
        targets.append(t)
        if t.kind == "direct":
            info["rss_idle_mb"] = t.worker_rss_mb()
            continue
        if t.kind == "process":
            times = []
            try:
                for i in range(max(1, args.startup_runs)):
                    times.append(start_target(t, args, logdir))
                    if i < args.startup_runs - 1:
                        stop_group(t.proc)
                        t.proc = None
                info["startup_s"] = round(statistics.median(times), 4)
                info["startup_runs_s"] = [round(x, 4) for x in times]
            except Exception as e:  # noqa: BLE001 - any failure marks the target failed and the run goes on
                t.failed = "start-up failed: %s" % e
        else:
            try:
                wait_health(t, args.start_timeout)
            except Exception as e:  # noqa: BLE001
                t.failed = "not reachable: %s" % e
        if not t.failed:
            reason = verify_target(t, mock)
            if reason:
                t.failed = reason
        if t.failed:
            info["failed"] = t.failed
            info["log_tail"] = t.log_tail()
            log("!! target %s FAILED: %s" % (t.name, t.failed))
            if info["log_tail"]:
                log("   last lines of %s:\n   %s" % (t.logpath, info["log_tail"].replace("\n", "\n   ")))
            if t.proc is not None:
                stop_group(t.proc)
            continue
        time.sleep(1.0)
        t.refresh_pids()
        info["rss_idle_mb"] = t.worker_rss_mb()
        if t.proc is not None:
            info["rss_master_mb"] = round((rss_kb(t.proc.pid) or 0) / 1024.0, 1)
            info["pids"] = t.pids
        log("target %s: up (start-up %s s, idle RSS %s MB, %s)" % (t.name, info.get("startup_s"),
                                                                  info.get("rss_idle_mb"), t.url))
    return targets


def run_bench(args, report, mock, targets, scenarios):
    res = report["results"]
    if not args.no_ceiling:
        mock.configure()
        log("mock ceiling: JSON, 50 conns, wrk on core %s" % args.gateway_cpu)
        direct = next((t for t in targets if t.kind == "direct"), None) or \
            make_target(default_targets()[0], mock, args, RESULTS)
        ceil_sc = Scenario("mock_ceiling", "", False, 50, {})
        runs = [measure(direct, ceil_sc, args.duration, args, mock, cpu=args.gateway_cpu) for _ in range(args.runs)]
        report["mock_ceiling"] = aggregate(runs) | {"p50_us": med([r["p50_us"] for r in runs]),
                                                    "all_runs": runs}
        log("  %.0f rps, mock CPU %s us/req" % (report["mock_ceiling"]["rps"],
                                               report["mock_ceiling"]["cpu_us_per_req"]))
    for sc in scenarios:
        mock.configure(**sc.mock)
        runs = {t.name: [] for t in targets}
        for t in targets:
            if t.failed:
                res.setdefault(sc.name, {})[t.name] = {"failed": t.failed}
                continue
            if t.endpoint(sc.route) is None:
                continue
            try:  # warm-up, not recorded
                measure(t, sc, min(args.warmup, args.duration), args, mock)
            except Exception as e:  # noqa: BLE001
                log("  warm-up of %s on %s failed: %s" % (t.name, sc.name, e))
        for i in range(args.runs):
            for t in targets:
                if t.failed or t.endpoint(sc.route) is None:
                    continue
                if not t.alive():
                    t.failed = "the process exited (code %s) during %s" % (t.proc.returncode, sc.name)
                    report["target_info"][t.name]["failed"] = t.failed
                    report["target_info"][t.name]["log_tail"] = t.log_tail()
                    log("!! target %s: %s" % (t.name, t.failed))
                    continue
                for attempt in range(1 + max(0, args.retry_noisy)):
                    try:
                        r = measure(t, sc, args.duration, args, mock)
                    except Exception as e:  # noqa: BLE001
                        r = {"error": str(e), "rps": 0, "errors": 1, "requests": 0}
                        break
                    if (r.get("disturbance_pct") or 0) <= NOISY_PCT or attempt == args.retry_noisy:
                        break
                    log("  %-18s %-10s run %d: disturbed (other processes %.0f%%, steal %.0f%% of a core), "
                        "measuring again" % (sc.name, t.name, i + 1, r.get("background_cpu_pct") or 0,
                                             r.get("steal_pct") or 0))
                runs[t.name].append(r)
                log("  %-18s %-10s run %d: %8.1f rps  p50 %8.3f ms  p99 %8.3f ms  cpu %s us/req  errors %s%s" % (
                    sc.name, t.name, i + 1, r.get("rps") or 0, (r.get("p50_us") or 0) / 1e3,
                    (r.get("p99_us") or 0) / 1e3, r.get("cpu_us_per_req"), r.get("errors"),
                    ("  (%s)" % (r.get("first_error") or r.get("error")))[:140]
                    if r.get("first_error") or r.get("error") else ""))
        for t in targets:
            if runs.get(t.name):
                agg = aggregate(runs[t.name])
                agg["all_runs"] = runs[t.name]
                if t.failed and not any(r.get("requests") for r in runs[t.name]):
                    agg["failed"] = t.failed
                res.setdefault(sc.name, {})[t.name] = agg
            elif t.failed:
                res.setdefault(sc.name, {})[t.name] = {"failed": t.failed}
    mock.configure()
    for t in targets:
        if not t.failed and t.kind != "direct":
            time.sleep(0.5)
            report["target_info"][t.name]["rss_after_mb"] = t.worker_rss_mb()


def run_soak(args, report, mock, targets):
    sc = Scenario("soak_json_c50", "", False, 50, {})
    mock.configure()
    out = {}
    for t in targets:
        if t.failed or t.kind == "direct":
            continue
        log("soak: %s, 50 conns, %d s" % (t.name, args.soak_duration))
        t.refresh_pids()
        samples = []
        stop = threading.Event()
        t0 = time.time()

        def sample():
            while not stop.is_set():
                samples.append((round(time.time() - t0, 1), t.worker_rss_mb()))
                stop.wait(args.soak_every)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            r = measure(t, sc, args.soak_duration, args, mock)
        except Exception as e:  # noqa: BLE001
            r = {"error": str(e)}
        stop.set()
        th.join()
        pts = [(s, v) for s, v in samples if v is not None]
        base = next((v for s, v in pts if s >= min(60.0, args.soak_duration / 10.0)), None)
        end = pts[-1][1] if pts else None
        after = [v for s, v in pts if s >= 60.0] or [v for _, v in pts]
        o = {"duration_s": args.soak_duration, "rps": r.get("rps"), "errors": r.get("errors"),
             "p50_us": r.get("p50_us"), "p99_us": r.get("p99_us"), "cpu_us_per_req": r.get("cpu_us_per_req"),
             "rss_start_mb": pts[0][1] if pts else None, "rss_at_1min_mb": base, "rss_end_mb": end,
             "rss_max_after_1min_mb": max(after) if after else None,
             "growth_mb": round(end - base, 1) if end is not None and base is not None else None,
             "samples": pts, "error": r.get("error")}
        out[t.name] = o
        log("  %s: %.0f rps, RSS %s MB at 1 min -> %s MB at end (growth %s MB)" % (
            t.name, o["rps"] or 0, base, end, o["growth_mb"]))
    report["soak"] = out


def finish_report(report: dict) -> tuple:
    """Derived figures, checks, and the rendered (text, markdown) of a report."""
    if report["params"].get("soak"):
        rows = []
        report["checks"] = {}
        for tn, o in report.get("soak", {}).items():
            rows.append("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |" % (
                tn, o["duration_s"], o["rps"] or 0, o.get("errors"), o["rss_start_mb"], o["rss_at_1min_mb"],
                o["rss_end_mb"], o["growth_mb"],
                "PASS" if (o["growth_mb"] is not None and o["growth_mb"] < 5) else "FAIL"))
        md = ("soak %s: JSON, 50 conns, no upstream delay; worker RSS sampled every %s s\n\n"
              "| target | seconds | rps | errors | RSS start MB | RSS at 1 min MB | RSS end MB | growth MB | < 5 MB |\n"
              "|---|---|---|---|---|---|---|---|---|\n" % (report["started"], report["params"]["soak_every"])
              ) + "\n".join(rows) + "\n"
        for tn, ti in report["target_info"].items():
            if ti.get("failed"):
                md += "\n%s FAILED: %s\n" % (tn, ti["failed"])
        return md, md
    wanted_t = report["targets"]
    derive(report["results"], report["scenarios"], wanted_t)
    report["checks"] = {t: checks_for(t, report["results"], report["target_info"])
                        for t in wanted_t if t not in ("direct", "floor")
                        and "floor" in wanted_t and "direct" in wanted_t
                        and not report["target_info"].get(t, {}).get("failed")}
    return render(report)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5; the issue: 10)")
    ap.add_argument("--runs", type=int, default=3, help="measurements per scenario and target; median shown")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load before each scenario")
    ap.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                    help="comma list of: " + ", ".join(s.name for s in SCENARIOS))
    ap.add_argument("--targets", default=None, help="comma list of target names (default direct,floor,bifrost; "
                                                    "with --soak: bifrost)")
    ap.add_argument("--governance", action="store_true",
                    help="also measure bifrost_vk and bifrost_vk_redis: a virtual key on every request")
    ap.add_argument("--targets-file", help="JSON list of extra target specs (see bench/targets.example.json)")
    ap.add_argument("--soak", action="store_true", help="run only the soak test (make bench-soak)")
    ap.add_argument("--soak-duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--soak-every", type=float, default=5.0, help="RSS sampling period during the soak, seconds")
    ap.add_argument("--driver", choices=("wrk", "python"), default="wrk",
                    help="load generator for the JSON scenarios (default wrk; python when wrk is missing)")
    ap.add_argument("--max-requests", type=int, default=0, help="bound on requests per measurement (python driver)")
    ap.add_argument("--request-timeout", type=float, default=30.0)
    ap.add_argument("--gateway-cpu", type=int, default=0, help="core for the targets (default 0)")
    ap.add_argument("--load-cpu", type=int, default=1, help="core for the mock, the load and this runner (1)")
    ap.add_argument("--startup-runs", type=int, default=3, help="cold starts per target; median start-up reported")
    ap.add_argument("--start-timeout", type=float, default=30.0)
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="before each measurement, wait up to this many seconds until other processes on the "
                         "machine plus hypervisor steal take less than --idle-threshold %% of a core "
                         "(default 0: do not wait)")
    ap.add_argument("--idle-threshold", type=float, default=5.0)
    ap.add_argument("--retry-noisy", type=int, default=0,
                    help="measure again (up to N times) when other processes plus hypervisor steal took more "
                         "than %d%%%% of a core during a measurement (default 0)" % NOISY_PCT)
    ap.add_argument("--no-ceiling", action="store_true", help="skip measuring the mock alone")
    ap.add_argument("--mock-port", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "latest.json"), help="JSON report path (markdown beside it)")
    ap.add_argument("--render", metavar="JSON", help="only print (and rewrite the .md of) a saved report")
    args = ap.parse_args(argv)

    if args.render:
        report = json.loads(Path(args.render).read_text())
        text, md = finish_report(report)
        Path(args.render).with_suffix(".md").write_text(md)
        print(text)
        return 0

    ncpu = os.cpu_count() or 1
    if max(args.gateway_cpu, args.load_cpu) >= ncpu:
        ap.error("this machine has %d core(s): choose --gateway-cpu/--load-cpu below that" % ncpu)
    if shutil.which("taskset") is None:
        ap.error("taskset (util-linux) is missing: run bench/setup.sh")
    if args.driver == "wrk" and shutil.which("wrk") is None:
        log("wrk not found: using the python driver for the JSON scenarios (bench/setup.sh installs wrk)")
        args.driver = "python"
    wanted_s = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in wanted_s if s not in {x.name for x in SCENARIOS}]
    if unknown:
        ap.error("unknown scenario(s): %s" % ", ".join(unknown))
    scenarios = [s for s in SCENARIOS if s.name in wanted_s]
    specs = load_target_specs(args)
    default_names = "bifrost" if args.soak else "direct,floor,bifrost" + (",bifrost_vk,bifrost_vk_redis" if args.governance else "")
    wanted_t = [x.strip() for x in (args.targets or default_names).split(",")
                if x.strip()]
    unknown = [x for x in wanted_t if x not in {s["name"] for s in specs}]
    if unknown:
        ap.error("unknown target(s): %s (known: %s)" % (", ".join(unknown), ", ".join(s["name"] for s in specs)))
    # keep the user's order, but direct first (the reference) and floor second
    order = {"direct": 0, "floor": 1}
    wanted_t.sort(key=lambda n: order.get(n, 2))

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)  # stop the mock and the targets on `kill` too
    try:
        os.sched_setaffinity(0, {args.load_cpu})
    except OSError:
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = RESULTS / "logs"
    logdir.mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    report = {"started": started, "params": {k: v for k, v in vars(args).items()},
              "environment": environment(args), "scenarios": [s.name for s in scenarios], "targets": wanted_t,
              "scenario_titles": {s.name: s.title for s in scenarios}, "results": {}, "target_info": {}}
    t_begin = time.time()
    mock = Mock(args, logdir)
    targets = []
    interrupted = False
    try:
        targets = start_all(specs, wanted_t, mock, args, logdir, report)
        if args.soak:
            run_soak(args, report, mock, targets)
        else:
            run_bench(args, report, mock, targets, scenarios)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing what was measured")
    finally:
        try:
            report["mock_stats"] = mock.stats()
        except (OSError, ValueError):
            report["mock_stats"] = None
        for t in targets:
            if t.proc is not None:
                stop_group(t.proc)
        mock.stop()
    report["elapsed_s"] = round(time.time() - t_begin, 1)

    out = Path(args.out)
    if args.soak and out.name == "latest.json":
        out = out.with_name("soak.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))  # the raw data first, whatever happens next
    text, md = finish_report(report)
    out.write_text(json.dumps(report, indent=1, default=str))
    out.with_suffix(".md").write_text(md)
    print(text)
    print("\n(%s, %.0f s; written to %s and %s)" % ("interrupted" if interrupted else "done", report["elapsed_s"],
                                                   out, out.with_suffix(".md")))
    failed = [t for t, ti in report["target_info"].items() if ti.get("failed")]
    if failed:
        print("failed targets: %s (see %s)" % (", ".join(failed), logdir))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
