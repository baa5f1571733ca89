#!/usr/bin/env python3
"""Bounded load client for OpenAI-style chat completions, streaming (SSE) or not.

N keep-alive connections each send requests back to back until --duration seconds have passed or --max-requests
requests have been started (whichever comes first); requests in flight at the deadline are allowed to finish
(bounded by --timeout). Raw asyncio sockets with a minimal HTTP/1.1 parser (uvloop when installed), so the client
adds little time of its own.

For every stream it measures:
  ttfe   time from sending the request to the arrival of the first complete `data:` event
  total  time from sending the request to the end of the HTTP response
  gaps   time between consecutive `data:` events (each event is stamped with the time of the socket read that
         completed it, so events that arrive coalesced in one read have a gap of 0)
With --expect-gap-ms G it also counts gaps that are not within --gap-tolerance-ms (default 1) of G, and events that
arrived in the same socket read as the one before them ("coalesced").

Output: one JSON object on stdout (latencies in microseconds).

Usage: stream_client.py --url http://127.0.0.1:8080/v1/chat/completions --model openai/gpt-4o-mini \
           --concurrency 20 --duration 10 [--max-requests N] [--no-stream] [--expect-gap-ms 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from urllib.parse import urlsplit

perf = time.perf_counter


class BadResponse(Exception):
    pass


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(vals, scale=1e6):
    """min/p50/p90/p99/max/mean of a list of seconds, in microseconds."""
    if not vals:
        return None
    s = sorted(vals)
    return {"n": len(s), "min": round(s[0] * scale, 1), "p50": round(percentile(s, 50) * scale, 1),
            "p90": round(percentile(s, 90) * scale, 1), "p99": round(percentile(s, 99) * scale, 1),
            "max": round(s[-1] * scale, 1), "mean": round(sum(s) / len(s) * scale, 1)}


class Conn:
    """One keep-alive HTTP/1.1 connection with a read buffer; every read is time-stamped."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.buf = bytearray()
        self.read_no = 0        # increments on every socket read
        self.read_time = 0.0    # perf_counter() at the end of the last read

    @classmethod
    async def open(cls, host, port):
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
        return cls(reader, writer)

    async def fill(self):
        data = await self.reader.read(262144)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.read_time = perf()
        self.read_no += 1
        self.buf += data

    async def read_until(self, sep: bytes) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > 1 << 20:
                raise BadResponse("line too long")
            await self.fill()

    async def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


class Result:
    __slots__ = ("status", "ttfe", "total", "gaps", "same_read", "events", "done", "body", "keep_alive")

    def __init__(self):
        self.status = 0
        self.ttfe = None
        self.total = None
        self.gaps = []
        self.same_read = 0
        self.events = 0
        self.done = False
        self.body = b""
        self.keep_alive = True


async def do_request(conn: Conn, request: bytes, stream: bool) -> Result:
    res = Result()
    t0 = perf()
    conn.writer.write(request)
    head = await conn.read_until(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2:
        raise BadResponse("bad status line %r" % lines[0][:80])
    res.status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    conn_h = headers.get(b"connection", b"").lower()
    res.keep_alive = conn_h != b"close" and not (parts[0] == b"HTTP/1.0" and conn_h != b"keep-alive")
    chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
    length = headers.get(b"content-length")

    sse = bytearray()
    last_event_time = None
    last_event_read = -1
    keep_body = not stream or res.status != 200
    body_parts = []

    def feed(data: bytes):
        nonlocal last_event_time, last_event_read
        if keep_body:
            body_parts.append(data)
        if not stream:
            return
        sse.extend(data)
        while True:
            i = sse.find(b"\n\n")
            j = sse.find(b"\r\n\r\n")
            if i < 0 and j < 0:
                return
            if j >= 0 and (i < 0 or j < i):
                ev, cut = bytes(sse[:j]), j + 4
            else:
                ev, cut = bytes(sse[:i]), i + 2
            del sse[:cut]
            if b"data:" not in ev:
                continue  # comment / heartbeat / event-only frame
            now = conn.read_time
            res.events += 1
            if last_event_time is None:
                res.ttfe = now - t0
            else:
                res.gaps.append(now - last_event_time)
                if conn.read_no == last_event_read:
                    res.same_read += 1
            last_event_time = now
            last_event_read = conn.read_no
            if b"[DONE]" in ev or b'"type":"message_stop"' in ev:  # OpenAI's end, Anthropic's end
                res.done = True

    if chunked:
        while True:
            size_line = await conn.read_until(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0], 16)
            except ValueError:
                raise BadResponse("bad chunk size %r" % size_line[:40])
            if size == 0:
                # trailers until an empty line
                while await conn.read_until(b"\r\n"):
                    pass
                break
            while len(conn.buf) < size + 2:
                # deliver what we have as soon as it arrives (time stamps matter)
                if len(conn.buf) > 0 and stream:
                    take = min(len(conn.buf), size)
                    data = bytes(conn.buf[:take])
                    del conn.buf[:take]
                    feed(data)
                    size -= take
                    if size == 0:
                        break
                await conn.fill()
            if size:
                feed(await conn.read_exact(size))
            await conn.read_exact(2)
    elif length is not None:
        remaining = int(length)
        while remaining > 0:
            if not conn.buf:
                await conn.fill()
            take = min(len(conn.buf), remaining)
            data = bytes(conn.buf[:take])
            del conn.buf[:take]
            remaining -= take
            feed(data)
    else:
        # body until close
        res.keep_alive = False
        while True:
            try:
                await conn.fill()
            except ConnectionError:
                break
            data = bytes(conn.buf)
            conn.buf.clear()
            feed(data)
    res.total = perf() - t0
    if keep_body:
        res.body = b"".join(body_parts)
    return res


async def run(args) -> dict:
    u = urlsplit(args.url)
    if u.scheme != "http":
        raise SystemExit("only http:// URLs are supported")
    host, port = u.hostname, u.port or 80
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    if args.dialect == "anthropic":
        body["max_tokens"] = 256
        if args.stream:
            body["stream"] = True
    elif args.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if args.body_extra:
        body.update(json.loads(args.body_extra))
    payload = json.dumps(body, separators=(",", ":")).encode()
    hdrs = [b"POST %s HTTP/1.1" % path.encode(), b"Host: %s:%d" % (host.encode(), port),
            b"Content-Type: application/json", b"Content-Length: %d" % len(payload)]
    if args.auth:
        hdrs.append(b"Authorization: " + args.auth.encode())
    if args.stream:
        hdrs.append(b"Accept: text/event-stream")
    for h in args.header or []:
        hdrs.append(h.encode())
    request = b"\r\n".join(hdrs) + b"\r\n\r\n" + payload

    ttfe, total, gaps = [], [], []
    stats = {"ok": 0, "errors": 0, "status": {}, "no_done": 0, "same_read": 0, "events": 0, "timeouts": 0,
             "connect_errors": 0, "first_error": None}
    started = [0]
    start = perf()
    deadline = start + args.duration
    last_end = [start]

    async def worker(k):
        conn = None
        if args.stagger_ms:
            await asyncio.sleep(k * args.stagger_ms / 1000.0)
        while perf() < deadline and started[0] < args.max_requests:
            started[0] += 1
            try:
                if conn is None:
                    conn = await asyncio.wait_for(Conn.open(host, port), args.timeout)
                res = await asyncio.wait_for(do_request(conn, request, args.stream), args.timeout)
            except asyncio.TimeoutError:
                stats["timeouts"] += 1
                stats["errors"] += 1
                stats["first_error"] = stats["first_error"] or "timeout after %ss" % args.timeout
                if conn:
                    conn.close()
                conn = None
                continue
            except (OSError, ConnectionError, BadResponse, ValueError) as e:
                stats["errors"] += 1
                if conn is None:
                    stats["connect_errors"] += 1
                    await asyncio.sleep(0.05)
                stats["first_error"] = stats["first_error"] or "%s: %s" % (type(e).__name__, e)
                if conn:
                    conn.close()
                conn = None
                continue
            last_end[0] = perf()
            st = stats["status"]
            st[str(res.status)] = st.get(str(res.status), 0) + 1
            ok = res.status == 200
            if ok and args.stream:
                if not res.done:
                    stats["no_done"] += 1
                    ok = False
                    stats["first_error"] = stats["first_error"] or "stream ended without data: [DONE]"
            if ok:
                stats["ok"] += 1
                total.append(res.total)
                if args.stream:
                    ttfe.append(res.ttfe)
                    gaps.extend(res.gaps)
                    stats["same_read"] += res.same_read
                    stats["events"] += res.events
            else:
                stats["errors"] += 1
                if res.status != 200:
                    stats["first_error"] = stats["first_error"] or "HTTP %d: %s" % (
                        res.status, res.body[:300].decode("utf-8", "replace"))
            if not res.keep_alive:
                conn.close()
                conn = None
        if conn:
            conn.close()

    await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
    elapsed = max(last_end[0], deadline if started[0] < args.max_requests else last_end[0]) - start
    elapsed = max(elapsed, 1e-9)
    out = {"requests": stats["ok"], "errors": stats["errors"], "elapsed_s": round(elapsed, 4),
           "rps": round(stats["ok"] / elapsed, 2), "status": stats["status"], "timeouts": stats["timeouts"],
           "first_error": stats["first_error"], "latency_us": summarize(total), "stream": args.stream}
    if args.stream:
        out.update({"ttfe_us": summarize(ttfe), "gap_us": summarize(gaps), "events": stats["events"],
                    "events_per_stream": round(stats["events"] / stats["ok"], 2) if stats["ok"] else None,
                    "coalesced": stats["same_read"], "no_done": stats["no_done"]})
        if args.expect_gap_ms is not None:
            g, tol = args.expect_gap_ms / 1000.0, args.gap_tolerance_ms / 1000.0
            off = sum(1 for x in gaps if abs(x - g) > tol)
            out["gap_expected_us"] = args.expect_gap_ms * 1000.0
            out["gaps_off"] = off
            out["gaps_off_frac"] = round(off / len(gaps), 5) if gaps else None
            out["gap_abs_dev_us"] = summarize([abs(x - g) for x in gaps])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="full URL, e.g. http://127.0.0.1:8080/v1/chat/completions")
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--concurrency", "-c", type=int, default=1)
    ap.add_argument("--duration", "-d", type=float, default=10.0, help="seconds (requests start until then)")
    ap.add_argument("--max-requests", "-n", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument("--stream", dest="stream", action="store_true", default=True)
    ap.add_argument("--no-stream", dest="stream", action="store_false")
    ap.add_argument("--auth", default="Bearer sk-bench", help="Authorization header value ('' for none)")
    ap.add_argument("--header", "-H", action="append", help="extra header 'Name: value' (repeatable)")
    ap.add_argument("--prompt", default="Say hello")
    ap.add_argument("--dialect", choices=("openai", "anthropic"), default="openai",
                    help="request body shape: OpenAI chat completions or Anthropic messages")
    ap.add_argument("--body-extra", help="JSON object merged into the request body")
    ap.add_argument("--expect-gap-ms", type=float, help="the upstream's gap between events")
    ap.add_argument("--gap-tolerance-ms", type=float, default=1.0)
    ap.add_argument("--stagger-ms", type=float, default=0.0,
                    help="start connection k after k*stagger ms, so that streams are not all in phase")
    ap.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    args = ap.parse_args(argv)
    if args.loop != "asyncio":
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            if args.loop == "uvloop":
                raise
    out = asyncio.run(run(args))
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
