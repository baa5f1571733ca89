"""Running the real gateway, gunicorn with gevent workers, for integration tests."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def imported(log: str) -> set[str]:
    """The top-level packages the gateway's processes imported, from CPython's -X importtime lines.

    Start the gateway with ``env={"PYTHONPROFILEIMPORTTIME": "1"}``: every process (master and
    workers) then writes one line per module it imports to the log.
    """
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in log.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


class GatewayProcess:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port with a given config.json."""

    def __init__(self, config: dict | None, *, workers: int = 1, env: dict | None = None, app_dir: str | None = None):
        self.config = config
        self.workers = workers
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="bifrost-test-")
        self.app_dir = app_dir or self._dir.name
        self.log_path = Path(self._dir.name) / "gateway.log"
        self.config_path = Path(self._dir.name) / "config.json"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "GatewayProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_")}
        # the metrics files live in the test's own directory, so a killed server leaves nothing in /tmp
        env.update({"BIFROST_APP_DIR": self.app_dir, "PYTHONUNBUFFERED": "1",
                    "PROMETHEUS_MULTIPROC_DIR": str(Path(self._dir.name) / "metrics")}, **self.extra_env)
        if self.config is not None:
            self.config_path.write_text(json.dumps(self.config))
            env["BIFROST_CONFIG"] = str(self.config_path)
        self._log = open(self.log_path, "wb")
        # a short graceful stop unless the test is about it: a stream left open would hold it
        graceful = [] if "BIFROST_GRACEFUL_TIMEOUT" in self.extra_env else ["--graceful-timeout", "3"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app",
             "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}", *graceful],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy in {timeout}s:\n{self.log()}")

    def worker_pids(self) -> set[int]:
        """The live worker processes: the master's children."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                if fields[0] != "Z" and int(fields[1]) == self.process.pid:
                    pids.add(int(entry.name))
        return pids

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._dir.cleanup()
