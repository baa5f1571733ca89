"""A client that sends its request too slowly gets a 408 and its connection back (issue 6, item 4)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests import rawhttp
from tests.fakes import Combine, Reply, Stream
from tests.gateway_process import ROOT, GatewayProcess

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


def test_the_read_deadline_never_bounds_writes_to_a_slow_reader(gateway, fake):
    """A stream to a client that stops reading for longer than the read timeout still arrives whole."""
    fake.plan(Combine(Reply(content="x" * 65536), Stream(chunks=64)))
    body = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                       "stream": True}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # the gateway's writes block soon
    sock.settimeout(20)
    sock.connect(("127.0.0.1", gateway.port))
    with sock:
        sock.sendall(head)
        time.sleep(0.3)
        sock.sendall(body)  # a second read inside the request: the socket timeout is now the deadline's rest
        time.sleep(READ_TIMEOUT + 2)  # read nothing, well past the deadline
        received = b""
        while b"data: [DONE]" not in received[-64:]:
            piece = sock.recv(1 << 20)
            assert piece, "the gateway closed the stream"
            received += piece
    assert received.startswith(b"HTTP/1.1 200")
    assert received.count(b"x") >= 64 * 65536  # each of the 64 pieces carries the content


@pytest.mark.parametrize("name, value", [("BIFROST_READ_TIMEOUT", "soon"), ("BIFROST_READ_TIMEOUT", "0"),
                                         ("BIFROST_GRACEFUL_TIMEOUT", "2.5"), ("BIFROST_GRACEFUL_TIMEOUT", "-1")])
def test_bad_timeout_settings_stop_start_up_with_one_line(tmp_path, name, value):
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app", "--workers", "1",
         "--bind", "127.0.0.1:0"],
        cwd=ROOT, env={"BIFROST_APP_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", name: value},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "config error" in line]
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert "Traceback" not in result.stderr
