"""A client that sends its request too slowly gets a 408 and its connection back (issue 6, item 4)."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests import rawhttp
from tests.gateway_process import GatewayProcess

READ_TIMEOUT = 2.0
BODY = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY))


@pytest.fixture(scope="module")
def gateway(fake):
    config = {"providers": {"openai": {"keys": [{"name": "k", "value": "sk-openai-1"}],
                                       "network_config": {"base_url": fake.url}}}}
    with GatewayProcess(config, env={"BIFROST_READ_TIMEOUT": str(READ_TIMEOUT)}) as server:
        yield server


def drip(sock, data: bytes, interval: float, stop: threading.Event) -> None:
    """Send ``data`` one byte per ``interval`` until done, told to stop, or the server hangs up."""
    for i in range(len(data)):
        if stop.is_set():
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return
        time.sleep(interval)


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_dripping_request_gets_408_within_the_deadline_while_others_are_served(gateway, fake, phase):
    sock = rawhttp.connect(gateway.url, timeout=10)
    stop = threading.Event()
    if phase == "body":
        sock.sendall(HEAD + BODY[:5])
        dripper = threading.Thread(target=drip, args=(sock, BODY[5:], 0.5, stop), daemon=True)
    else:
        dripper = threading.Thread(target=drip, args=(sock, HEAD + BODY, 0.5, stop), daemon=True)
    started = time.monotonic()
    dripper.start()
    try:
        # Meanwhile normal requests are served at once.
        for _ in range(5):
            ok = requests.post(gateway.url + "/v1/chat/completions", data=BODY, timeout=5,
                               headers={"Content-Type": "application/json"})
            assert ok.status_code == 200, ok.text
        reply = rawhttp.read_reply(sock)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        dripper.join(5)
    assert reply.status == 408, reply
    assert reply.json()["status_code"] == 408
    assert READ_TIMEOUT - 0.5 < elapsed < READ_TIMEOUT + 3, elapsed  # the deadline, not much later
    assert rawhttp.is_closed(sock)
    sock.close()
    assert "Traceback" not in gateway.log()


def test_a_partial_body_that_stops_gets_408(gateway, fake):
    with rawhttp.connect(gateway.url, timeout=10) as sock:
        sock.sendall(HEAD + BODY[:10])
        reply = rawhttp.read_reply(sock)
    assert reply.status == 408 and reply.json()["error"]["param"] == "body", reply
    assert fake.requests == []


def test_an_idle_keep_alive_connection_is_not_a_408(gateway, fake):
    """The deadline starts with a request's first byte: waiting between requests is the keep-alive's business."""
    with rawhttp.connect(gateway.url, timeout=10) as sock:
        sock.sendall(HEAD + BODY)
        assert rawhttp.read_reply(sock).status == 200
        time.sleep(READ_TIMEOUT + 1)
        sock.sendall(HEAD + BODY)
        assert rawhttp.read_reply(sock).status == 200
