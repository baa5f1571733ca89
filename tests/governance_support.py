"""Helpers for the governance tests: a Redis key prefix per test run and bursts of concurrent requests.
(A PostgreSQL database per run: tests/pg.py; a TCP proxy that cuts a store off: tests/tcp_proxy.py.)"""
from __future__ import annotations

import http.client
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

REDIS_ADDR = ("127.0.0.1", 6379)
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the governance tests"}]}


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of our own in the shared Redis; every key under it is deleted afterwards."""
    import redis

    prefix = f"bifrost-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = redis.Redis(*REDIS_ADDR)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def kv_store(prefix: str, port: int = REDIS_ADDR[1], **extra) -> dict:
    return {"type": "redis", "config": {"addr": f"127.0.0.1:{port}", "password": "", "db": 0, "key_prefix": prefix,
                                        **extra}}


def post(base_url: str, path: str, body: dict | None = None, headers: dict | None = None,
         method: str = "POST", timeout: float = 30) -> tuple[int, dict]:
    host, port = base_url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"content-type": "application/json", **(headers or {})}
        conn.request(method, path, body=payload, headers=all_headers)
        reply = conn.getresponse()
        raw = reply.read()
        try:
            return reply.status, json.loads(raw) if raw else {}
        except ValueError:
            return reply.status, {"raw": raw.decode(errors="replace")}
    finally:
        conn.close()


def get(base_url: str, path: str, headers: dict | None = None) -> tuple[int, dict]:
    return post(base_url, path, None, headers, method="GET")


def burst(urls: list[str], count: int, headers: dict, body: dict = CHAT, threads: int = 150) -> list[tuple[int, dict]]:
    """``count`` chat requests at once, spread round-robin over ``urls``; all start behind one barrier."""
    barrier = threading.Barrier(min(count, threads))

    def one(index: int) -> tuple[int, dict]:
        if index < threads:
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
        return post(urls[index % len(urls)], "/v1/chat/completions", body, headers)

    with ThreadPoolExecutor(max_workers=min(count, threads)) as pool:
        return list(pool.map(one, range(count)))
