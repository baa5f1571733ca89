"""config.json edits and worker respawns never take the gateway down (issue 6, item 2)."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from tests.gateway_process import GatewayProcess


def good_config(fake_url: str, provider: str = "openai") -> dict:
    return {"providers": {provider: {"keys": [{"name": "k", "value": "sk-openai-1"}],
                                     "network_config": {"base_url": fake_url}}}}


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def providers(gateway: GatewayProcess) -> list[str]:
    return requests.get(gateway.url + "/health", timeout=5).json()["providers"]


def new_workers(gateway: GatewayProcess, old: set[int]):
    """The worker set once every old worker has gone and a new one serves."""
    def ready():
        pids = gateway.worker_pids()
        return pids if pids and not pids & old else None
    return ready


@pytest.fixture
def gateway(fake):
    with GatewayProcess(good_config(fake.url), workers=2) as server:
        yield server


def test_reload_with_a_broken_file_keeps_serving_the_last_good_config(gateway, fake):
    before = gateway.worker_pids()
    gateway.config_path.write_text('{"providers": {"openai": ')  # a half-saved edit
    os.kill(gateway.process.pid, signal.SIGHUP)
    after = wait_for(new_workers(gateway, before), what="the reload's new workers")
    assert len(after) == 2
    assert providers(gateway) == ["openai"]
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    failures = [line for line in gateway.log().splitlines() if "config reload failed" in line]
    assert len(failures) == 1, gateway.log()
    assert "still serving the previous configuration" in failures[0] and "not valid JSON" in failures[0]
    assert "Traceback" not in gateway.log()
    assert gateway.process.poll() is None


def test_a_killed_worker_comes_back_with_the_validated_config(gateway, fake):
    gateway.config_path.write_text('{"providers": {"nosuch": {}}}')  # broken after start-up, never reloaded
    victims = gateway.worker_pids()
    for pid in victims:  # every worker, so only respawned ones can answer
        os.kill(pid, signal.SIGKILL)
    wait_for(new_workers(gateway, victims), what="the respawned workers")

    def served():
        try:
            return providers(gateway) == ["openai"]
        except (requests.ConnectionError, requests.Timeout):  # a respawned worker may still be booting
            return False
    wait_for(served, what="a respawned worker to answer")
    for _ in range(10):
        assert providers(gateway) == ["openai"]
    assert gateway.process.poll() is None
    assert "config error" not in gateway.log() and "Traceback" not in gateway.log()


def test_reload_with_a_good_file_adopts_it(gateway, fake):
    before = gateway.worker_pids()
    gateway.config_path.write_text(json.dumps(good_config(fake.url, provider="groq")))
    os.kill(gateway.process.pid, signal.SIGHUP)
    wait_for(new_workers(gateway, before), what="the reload's new workers")
    wait_for(lambda: providers(gateway) == ["groq"], what="the new configuration")
    assert "config reloaded: 1 provider(s)" in gateway.log()
