"""Stopping the gateway: idle connections go at once, streams end with a word (issue 6, item 5)."""
from __future__ import annotations

import json
import signal
import time

import requests

from tests import rawhttp
from tests.fakes import Stream
from tests.gateway_process import GatewayProcess

BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def config(fake_url: str) -> dict:
    return {"providers": {"openai": {"keys": [{"name": "k", "value": "sk-openai-1"}],
                                     "network_config": {"base_url": fake_url}}}}


def stream_then_stop(gateway: GatewayProcess, stop_signal: int) -> list:
    with requests.post(gateway.url + "/v1/chat/completions", json=BODY, stream=True, timeout=30) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        gateway.process.send_signal(stop_signal)
        rest = events_of_lines(lines)
    return [json.loads(first[6:]), *rest]


def events_of_lines(lines) -> list:
    events = []
    for line in lines:
        if line.startswith(b"data: "):
            data = line[6:]
            events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


def test_a_stream_longer_than_the_graceful_timeout_ends_with_server_shutting_down(fake):
    fake.plan(Stream(chunks=60, gap=0.25))  # 15 s of stream, 3 s of grace
    with GatewayProcess(config(fake.url), env={"BIFROST_GRACEFUL_TIMEOUT": "3"}) as gateway:
        started = time.monotonic()
        events = stream_then_stop(gateway, signal.SIGTERM)
        cut_after = time.monotonic() - started
        assert gateway.process.wait(timeout=10) == 0
        log = gateway.log()
    assert "[DONE]" not in events
    assert len(events) > 3  # it kept streaming during the grace period
    last = events[-1]
    assert last["type"] == "server_shutting_down" and last["status_code"] == 503, last
    assert last["is_bifrost_error"] is True and last["error"]["type"] == "server_shutting_down"
    assert cut_after < 4, cut_after  # before the master's kill at 3 s
    assert "Traceback" not in log


def test_a_stream_within_the_graceful_timeout_finishes(fake):
    fake.plan(Stream(chunks=8, gap=0.25))
    with GatewayProcess(config(fake.url), env={"BIFROST_GRACEFUL_TIMEOUT": "20"}) as gateway:
        events = stream_then_stop(gateway, signal.SIGTERM)
        assert gateway.process.wait(timeout=10) == 0
    assert events[-1] == "[DONE]"
    assert all(isinstance(event, dict) and "error" not in event for event in events[:-1])


def test_idle_keep_alive_connections_do_not_hold_a_stopping_worker(fake):
    with GatewayProcess(config(fake.url), env={"BIFROST_GRACEFUL_TIMEOUT": "30"}) as gateway:
        idle = []
        for _ in range(3):  # keep-alive connections that served one request each, now idle
            sock = rawhttp.connect(gateway.url)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert rawhttp.read_reply(sock).status == 200
            idle.append(sock)
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=15) == 0
        stopped_after = time.monotonic() - started
        for sock in idle:
            assert rawhttp.is_closed(sock)
            sock.close()
    assert stopped_after < 5, stopped_after  # not the 30 s graceful timeout


def test_sighup_reload_ends_the_old_workers_streams_cleanly(fake):
    """A reload replaces the workers; the old one's long stream gets the same explicit end."""
    fake.plan(Stream(chunks=60, gap=0.25))
    with GatewayProcess(config(fake.url), env={"BIFROST_GRACEFUL_TIMEOUT": "3"}) as gateway:
        events = stream_then_stop(gateway, signal.SIGHUP)
        assert requests.get(gateway.url + "/health", timeout=5).status_code == 200
    assert events[-1]["type"] == "server_shutting_down", events[-1]

