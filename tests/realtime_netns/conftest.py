"""WebRTC tests: peers and gateway inside a network namespace that has only loopback.

aioice never offers 127.0.0.1 and gathers every other interface address, so these tests run
where lo (127.0.0.1 and 127.0.0.2) is the only interface: ICE stays on 127.0.0.0/8.
tests/integration/test_realtime_webrtc.py starts this directory that way (``unshare -n``);
outside such a namespace it is not collected.
"""
from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

IN_NETNS = os.environ.get("BIFROST_IN_NETNS") == "1"
if not IN_NETNS:
    collect_ignore_glob = ["test_*.py"]

RT_KEY = "sk-rt-1"


def gateway_config(realtime_url: str, chat_url: str, **realtime) -> dict:
    return {
        "providers": {
            "openai": {"keys": [{"name": "rt", "value": RT_KEY, "models": ["*"]}],
                       "network_config": {"base_url": realtime_url}},
            "groq": {"keys": [{"name": "g", "value": "sk-groq", "models": ["*"]}],
                     "network_config": {"base_url": chat_url}},
        },
        "client": {"realtime": {"idle_timeout_seconds": 3, "max_sessions_per_worker": 10,
                                "handshake_timeout_seconds": 3, **realtime}},
    }


def report(name: str, **figures) -> None:
    """Figures for the outer test to print (latency, CPU): one JSON line per call."""
    path = os.environ.get("BIFROST_RT_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"test": name, **figures}) + "\n")


def wait_for(predicate, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def post(url: str, body: bytes, headers: dict, timeout: float = 20):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def multipart(fields: dict) -> tuple[bytes, str]:
    boundary = "----bifrosttest7d2f"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
    parts.append(f"--{boundary}--\r\n")
    return "".join(parts).encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="session")
def rtc():
    from tests.fakes.realtime import RtcThread
    thread = RtcThread()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def provider(rtc):
    from tests.fakes.realtime import FakeRealtimeProvider
    fake = FakeRealtimeProvider(rtc, api_keys={RT_KEY}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def chat_fake():
    from tests.fakes import FakeUpstream
    fake = FakeUpstream(api_keys={"sk-groq"}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def gateway(provider, chat_fake):
    from tests.gateway_process import GatewayProcess
    server = GatewayProcess(gateway_config(provider.url, chat_fake.url))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_plans(request):
    if "provider" in request.fixturenames:
        request.getfixturevalue("provider").plans.clear()
    yield
