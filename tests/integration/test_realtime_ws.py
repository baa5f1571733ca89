"""The realtime WebSocket relay, driven by the official openai SDK and a plain websockets client."""
from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.fakes.realtime_ws import FakeRealtimeWS
from tests.gateway_process import GatewayProcess, imported

WS_KEY = "sk-ws-real"
# what a worker loads only for a realtime request that needs it (cryptography: client secrets; requests: WebRTC
# calls and hangups; simple-websocket, wsproto, h11: the relay; aiortc, PyAV: WebRTC media)
REALTIME_LIBRARIES = {"cryptography", "requests", "charset_normalizer", "certifi", "simple_websocket", "wsproto", "h11",
                      "aiortc", "av"}


@pytest.fixture(scope="module")
def ws_fake():
    fake = FakeRealtimeWS({WS_KEY}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def ws_gateway(ws_fake):
    config = {"providers": {"openai": {"keys": [{"name": "ws", "value": WS_KEY, "models": ["*"]}],
                                       "network_config": {"base_url": ws_fake.url}},
                            "stale": {"keys": [{"name": "old", "value": "sk-revoked", "models": ["*"]}],
                                      "network_config": {"base_url": ws_fake.url},
                                      "custom_provider_config": {"base_provider_type": "openai"}}},
              "client": {"realtime": {"ws_ping_interval_seconds": 1}}}
    with GatewayProcess(config) as gateway:
        yield gateway


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def test_openai_sdk_realtime_client_events_both_ways(ws_gateway, ws_fake):
    from openai import OpenAI

    client = OpenAI(base_url=ws_gateway.url + "/v1", api_key="sk-app-any")
    with client.realtime.connect(model="openai/gpt-realtime") as connection:
        created = connection.recv()
        assert created.type == "session.created" and created.session.model == "gpt-realtime"
        connection.session.update(session={"type": "realtime", "instructions": "be brief"})
        assert connection.recv().type == "conversation.item.created"
        connection.response.create()
        done = connection.recv()
        assert done.type == "response.done" and done.response.usage.total_tokens == 12
    upstream = ws_fake.connections[-1]
    assert upstream["authorization"] == f"Bearer {WS_KEY}"  # the gateway's key, not the app's
    assert upstream["path"] == "/v1/realtime?model=gpt-realtime"
    assert [e["type"] for e in upstream["events"]] == ["session.update", "response.create"]
    assert wait_for(lambda: upstream["close_code"] == 1000, 3)
    lines = []
    # the summary is written once both pumps have stopped, just after the client's close returns
    assert wait_for(lambda: lines.extend(l for l in ws_gateway.log().splitlines()
                                         if "realtime call summary" in l and '"transport":"websocket"' in l
                                         and '"turns":1' in l) or lines, 6)
    summary = json.loads(lines[-1].split("realtime call summary ", 1)[1])
    assert summary["transport"] == "websocket" and summary["turns"] == 1 and summary["total_tokens"] == 12


def test_openai_sdk_with_the_openai_base_url_and_a_bare_model(ws_gateway, ws_fake):
    from openai import OpenAI

    client = OpenAI(base_url=ws_gateway.url + "/openai", api_key="sk-app-any")
    with client.realtime.connect(model="gpt-realtime") as connection:
        assert connection.recv().type == "session.created"
    assert ws_fake.connections[-1]["path"] == "/v1/realtime?model=gpt-realtime"


def test_subprotocol_auth_with_a_gateway_client_secret(ws_gateway, ws_fake):
    import urllib.request
    request = urllib.request.Request(ws_gateway.url + "/openai/v1/realtime/client_secrets", method="POST",
                                     data=json.dumps({"session": {"model": "gpt-realtime",
                                                                  "instructions": "speak like a pirate"}}).encode(),
                                     headers={"Content-Type": "application/json"})
    secret = json.loads(urllib.request.urlopen(request, timeout=5).read())["value"]
    url = ws_gateway.url.replace("http", "ws") + "/openai/v1/realtime?model=gpt-realtime"
    with connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{secret}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    assert ws_fake.connections[-1]["authorization"] == f"Bearer {WS_KEY}"
    # the session the secret was minted with is applied upstream before the client's own events
    assert ws_fake.connections[-1]["events"][0] == {"type": "session.update", "session": {
        "type": "realtime", "instructions": "speak like a pirate"}}
    # the secret is bound to its model; a forged one is refused before any upgrade
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_gateway.url.replace("http", "ws") + "/v1/realtime?model=openai/other",
                subprotocols=["realtime", f"openai-insecure-api-key.{secret}"])
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as forged:
        connect(url, subprotocols=["realtime", "openai-insecure-api-key.ek_bf_forged"])
    assert forged.value.response.status_code == 401


def test_close_codes_cross_the_relay_both_ways(ws_gateway, ws_fake):
    url = ws_gateway.url.replace("http", "ws") + "/v1/realtime?model=openai/gpt-realtime"
    with connect(url) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "test.close", "code": 4001, "reason": "provider says bye"}))
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
        assert ws.close_code == 4001 and ws.close_reason == "provider says bye"
    with connect(url) as ws:
        ws.recv(timeout=5)
        ws.close(4002, "client says bye")
    assert wait_for(lambda: ws_fake.connections[-1]["close_code"] == 4002, 3)


def test_ws_errors_are_http_errors_before_the_upgrade(ws_gateway):
    base = ws_gateway.url.replace("http", "ws")
    for path, status in (("/v1/realtime?model=gpt-realtime", 400), ("/v1/realtime", 400),
                         ("/v1/realtime?model=nope/x", 400), ("/v1/realtime?model=stale/gpt-realtime", 502)):
        with pytest.raises(InvalidStatus) as refused:
            connect(base + path)
        assert refused.value.response.status_code == status, path
        if status == 502:  # the provider's own status is carried
            assert b"(401)" in refused.value.response.body
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(ws_gateway.url + "/v1/realtime?model=openai/gpt-realtime", timeout=5)
    assert plain.value.code == 400


def test_a_client_that_never_answers_pings_is_closed(ws_gateway, ws_fake):
    """A raw client that completes the upgrade and then ignores every ping: 1008 once a pong is overdue."""
    import base64
    import os
    import socket
    import struct

    host, port = ws_gateway.url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/realtime?model=openai/gpt-realtime HTTP/1.1\r\nHost: {host}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101")
    data = data.split(b"\r\n\r\n", 1)[1]
    opcodes, close_code, started = [], None, time.monotonic()
    while close_code is None and time.monotonic() - started < 8:
        while len(data) < 2:
            data += sock.recv(4096)
        first, size = data[0], data[1] & 0x7F
        head = 2
        if size == 126:
            size, head = struct.unpack(">H", data[2:4])[0], 4
        while len(data) < head + size:
            data += sock.recv(4096)
        payload, data = data[head:head + size], data[head + size:]
        opcodes.append(first & 0x0F)
        if first & 0x0F == 0x8:
            close_code = struct.unpack(">H", payload[:2])[0]
    sock.close()
    assert 0x9 in opcodes  # pinged
    assert close_code == 1008
    assert wait_for(lambda: ws_fake.connections[-1]["close_code"] is not None, 3)  # and the provider leg closed


def test_a_worker_loads_the_realtime_libraries_with_the_first_request_that_needs_them(ws_fake):
    import urllib.error
    import urllib.request

    config = {"providers": {"openai": {"keys": [{"name": "ws", "value": WS_KEY, "models": ["*"]}],
                                       "network_config": {"base_url": ws_fake.url}}}}
    with GatewayProcess(config, env={"PYTHONPROFILEIMPORTTIME": "1"}) as gateway:
        booted = imported(gateway.log())
        assert "app.blueprints.realtime" in gateway.log() and "flask" in booted  # the worker's imports are logged
        assert booted.isdisjoint(REALTIME_LIBRARIES), sorted(booted & REALTIME_LIBRARIES)
        request = urllib.request.Request(gateway.url + "/v1/realtime/client_secrets", method="POST",
                                         data=json.dumps({"session": {"model": "openai/gpt-realtime",
                                                                      "instructions": "lazy"}}).encode(),
                                         headers={"Content-Type": "application/json"})
        secret = json.loads(urllib.request.urlopen(request, timeout=10).read())["value"]
        assert imported(gateway.log()) & REALTIME_LIBRARIES == {"cryptography"}
        url = gateway.url.replace("http", "ws") + "/v1/realtime?model=openai/gpt-realtime"
        with connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{secret}"]) as ws:  # verified, relayed
            assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
            ws.send(json.dumps({"type": "response.create"}))
            events = [json.loads(ws.recv(timeout=10))["type"] for _ in range(2)]
            assert events[-1] == "response.done", events
        assert ws_fake.connections[-1]["events"][0]["session"]["instructions"] == "lazy"
        assert imported(gateway.log()) & REALTIME_LIBRARIES == {"cryptography", "simple_websocket", "wsproto", "h11"}
        hangup = urllib.request.Request(gateway.url + "/v1/realtime/calls/rtc_bf_forged/hangup", method="POST",
                                        data=b"")
        with pytest.raises(urllib.error.HTTPError) as unknown:  # the call registry answers, without media
            urllib.request.urlopen(hangup, timeout=10)
        assert unknown.value.code == 404
        loaded = imported(gateway.log()) & REALTIME_LIBRARIES
        assert "requests" in loaded and loaded.isdisjoint({"aiortc", "av"}), sorted(loaded)
