#!/usr/bin/env python3
"""A fast mock of the OpenAI Chat Completions API, for the benchmark.

It must never be the bottleneck, so it is one asyncio process (uvloop when it is installed) with a minimal
HTTP/1.1 keep-alive parser on asyncio.Protocol, and replies are built from cached byte templates.

Routes
  POST /v1/chat/completions   (also /chat/completions, /openai/v1/chat/completions)
        JSON reply, or SSE when the body has "stream": true. Requires `Authorization: Bearer <anything>`.
        Streams: `chunks` chat.completion.chunk events (the first carries the role, the last the finish_reason),
        then a usage chunk when stream_options.include_usage is true, then `data: [DONE]`.
        The first event is sent after first_delay_ms, every later event (usage and [DONE] included) gap_ms after
        the one before it, on an absolute schedule so that timer jitter does not add up.
        Non-streaming replies are sent after delay_ms.
  POST /v1/messages           Anthropic's Messages API, same timing options: a Message, or its SSE events
        (message_start, content_block_start, ping, `chunks` content_block_delta, content_block_stop,
        message_delta, message_stop). Requires `x-api-key` and `anthropic-version`.
  GET  /v1/models             a small model list
  GET  /health                200 {"status":"ok"}
  GET  /_mock/config          the current defaults
  POST /_mock/config          JSON {"chunks", "first_delay_ms", "gap_ms", "delay_ms"}: change the defaults
  GET  /_mock/stats           request counters (requests, streams, unauthorized, bad_request, ...)

Per request, the defaults can be overridden by the query string (?chunks=&first_delay_ms=&gap_ms=&delay_ms=)
or by headers (x-mock-chunks, x-mock-first-delay-ms, x-mock-gap-ms, x-mock-delay-ms).

Usage: mock_upstream.py --port 9100 [--host 127.0.0.1] [--chunks 20] [--first-delay-ms 0] [--gap-ms 0]
                        [--delay-ms 0] [--loop auto|uvloop|asyncio]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from urllib.parse import parse_qsl

try:  # orjson is faster, stdlib json is enough
    import orjson

    def _loads(b):
        return orjson.loads(b)

    def _dumps(o) -> bytes:
        return orjson.dumps(o)
except ImportError:  # pragma: no cover
    def _loads(b):
        return json.loads(b)

    def _dumps(o) -> bytes:
        return json.dumps(o, separators=(",", ":")).encode()


CHAT_PATHS = {b"/v1/chat/completions", b"/chat/completions", b"/openai/v1/chat/completions"}
MESSAGES_PATH = b"/v1/messages"
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

CONFIG = {"chunks": 20, "first_delay_ms": 0.0, "gap_ms": 0.0, "delay_ms": 0.0}
STATS = {"requests": 0, "chat": 0, "streams": 0, "unauthorized": 0, "bad_request": 0, "not_found": 0,
         "connections": 0, "open_connections": 0, "cancelled_streams": 0}
CREATED = int(time.time())
SEQ = [0]

REPLY_TEXT = "Hello! I am a mock of the OpenAI API. How can I help you today?"
REPLY_TOKENS = 16
STREAM_TOKENS = ["Hello", "!", " I", " am", " a", " mock", " of", " the", " OpenAI", " API", ".", " How", " can",
                 " I", " help", " you", " today", "?"]
FINGERPRINT = "fp_mock0bench"

_STATUS_TEXT = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 405: b"Method Not Allowed",
                413: b"Payload Too Large", 431: b"Request Header Fields Too Large"}


def _next_id() -> int:
    SEQ[0] += 1
    return SEQ[0]


# ---------------------------------------------------------------------------------------------------------------
# reply templates, cached per model name
class _Templates:
    __slots__ = ("json_head", "json_tail", "chunk_head", "chunk_mid", "deltas", "usage_chunk_mid")

    def __init__(self, model: str):
        m = json.dumps(model)
        # chat.completion: b'{"id":"chatcmpl-' + id + json_head + usage numbers + json_tail
        self.json_head = ('","object":"chat.completion","created":%d,"model":%s,"choices":[{"index":0,"message":'
                          '{"role":"assistant","content":%s,"refusal":null,"annotations":[]},"logprobs":null,'
                          '"finish_reason":"stop"}],"usage":{"prompt_tokens":' % (CREATED, m, json.dumps(REPLY_TEXT))
                          ).encode()
        self.json_tail = (',"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":'
                          '{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,'
                          '"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"%s"}'
                          % FINGERPRINT).encode()
        self.chunk_head = b'data: {"id":"chatcmpl-'
        self.chunk_mid = ('","object":"chat.completion.chunk","created":%d,"model":%s,"service_tier":"default",'
                          '"system_fingerprint":"%s","choices":[' % (CREATED, m, FINGERPRINT)).encode()
        self.deltas = {}
        self.usage_chunk_mid = self.chunk_mid

    def delta(self, i: int, n: int, with_usage_null: bool) -> bytes:
        key = (i, n, with_usage_null)
        d = self.deltas.get(key)
        if d is None:
            if i == 0:
                body = '{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,' \
                       '"finish_reason":null}'
            elif i == n - 1:
                body = '{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}'
            else:
                tok = STREAM_TOKENS[(i - 1) % len(STREAM_TOKENS)]
                body = '{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}' % json.dumps(tok)
            d = (body + "]" + (',"usage":null' if with_usage_null else "") + "}\n\n").encode()
            self.deltas[key] = d
        return d


_TEMPLATES: dict = {}


def templates(model: str) -> _Templates:
    t = _TEMPLATES.get(model)
    if t is None:
        if len(_TEMPLATES) > 256:
            _TEMPLATES.clear()
        t = _TEMPLATES[model] = _Templates(model)
    return t


def _response(status: int, body: bytes, ctype: bytes = b"application/json", close: bool = False,
              extra: bytes = b"") -> bytes:
    return b"".join((b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status, _STATUS_TEXT.get(status, b"OK"), ctype, len(body)), extra,
        b"Connection: close\r\n\r\n" if close else b"\r\n", body))


def _error(status: int, message: str, etype: str, code, close: bool = False) -> bytes:
    return _response(status, _dumps({"error": {"message": message, "type": etype, "param": None, "code": code}}),
                     close=close)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# ---------------------------------------------------------------------------------------------------------------
class Request:
    __slots__ = ("method", "path", "query", "version", "headers", "body")

    def __init__(self, method, path, query, version, headers, body):
        self.method, self.path, self.query, self.version, self.headers, self.body = \
            method, path, query, version, headers, body

    def keep_alive(self) -> bool:
        conn = self.headers.get(b"connection", b"").lower()
        if self.version == b"HTTP/1.0":
            return conn == b"keep-alive"
        return conn != b"close"


class HTTPError(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


def parse_request(buf: bytearray):
    """Parse one request from the front of buf (and remove it), or return None if it is not complete yet."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise HTTPError(431)
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    try:
        method, target, version = lines[0].split(b" ", 2)
    except ValueError:
        raise HTTPError(400)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    pos = end + 4
    te = headers.get(b"transfer-encoding")
    if te is not None and b"chunked" in te.lower():
        parts = []
        while True:
            le = buf.find(b"\r\n", pos)
            if le < 0:
                return None
            try:
                size = int(bytes(buf[pos:le]).split(b";", 1)[0], 16)
            except ValueError:
                raise HTTPError(400)
            if size == 0:
                # optional trailer lines, then the empty line
                if buf[le + 2:le + 4] == b"\r\n":
                    pos = le + 4
                else:
                    te_end = buf.find(b"\r\n\r\n", le + 2)
                    if te_end < 0:
                        return None
                    pos = te_end + 4
                break
            if len(buf) < le + 2 + size + 2:
                return None
            parts.append(bytes(buf[le + 2:le + 2 + size]))
            pos = le + 2 + size + 2
            if pos - end > MAX_BODY:
                raise HTTPError(413)
        body = b"".join(parts)
    else:
        try:
            n = int(headers.get(b"content-length", b"0"))
        except ValueError:
            raise HTTPError(400)
        if n > MAX_BODY:
            raise HTTPError(413)
        if len(buf) < pos + n:
            return None
        body = bytes(buf[pos:pos + n])
        pos += n
    del buf[:pos]
    path, _, query = target.partition(b"?")
    return Request(method, path, query, version, headers, body)


def _param(req: Request, name: str, default):
    """A per-request override: query string first, then header x-mock-<name>, else the default."""
    if req.query:
        for k, v in parse_qsl(req.query.decode("latin-1")):
            if k == name:
                return float(v)
    h = req.headers.get(b"x-mock-" + name.replace("_", "-").encode())
    if h is not None:
        return float(h)
    return default


# ---------------------------------------------------------------------------------------------------------------
class MockProtocol(asyncio.Protocol):
    __slots__ = ("loop", "transport", "buf", "busy", "closed", "handle", "stream")

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.buf = bytearray()
        self.busy = False      # a reply is pending (delayed or streaming): later pipelined requests wait
        self.closed = False
        self.handle = None     # pending timer
        self.stream = None

    def connection_made(self, transport):
        self.transport = transport
        STATS["connections"] += 1
        STATS["open_connections"] += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def connection_lost(self, exc):
        self.closed = True
        STATS["open_connections"] -= 1
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
            if self.stream is not None:
                STATS["cancelled_streams"] += 1
        self.stream = None

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self.process()

    def process(self):
        while not self.busy and not self.closed:
            try:
                req = parse_request(self.buf)
            except HTTPError as e:
                self.transport.write(_error(e.status, "bad request", "invalid_request_error", None, close=True))
                self.transport.close()
                self.closed = True
                return
            if req is None:
                return
            self.dispatch(req)

    def finish(self, keep_alive: bool):
        """Called when a reply has been fully written."""
        self.handle = None
        self.stream = None
        if not keep_alive:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if self.buf:
            self.process()

    # -- routing ------------------------------------------------------------------------------------------------
    def dispatch(self, req: Request):
        STATS["requests"] += 1
        ka = req.keep_alive()
        path = req.path
        if path in CHAT_PATHS:
            if req.method != b"POST":
                return self.send(_error(405, "method not allowed", "invalid_request_error", None, not ka), ka)
            return self.chat(req, ka)
        if path == MESSAGES_PATH and req.method == b"POST":
            return self.messages(req, ka)
        if path == b"/health" or path == b"/":
            return self.send(_response(200, b'{"status":"ok"}', close=not ka), ka)
        if path == b"/v1/models" or path == b"/models":
            body = _dumps({"object": "list", "data": [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "mock"}
                for m in ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")]})
            return self.send(_response(200, body, close=not ka), ka)
        if path == b"/_mock/config":
            if req.method == b"POST":
                try:
                    new = _loads(req.body or b"{}")
                    for k in CONFIG:
                        if k in new:
                            CONFIG[k] = type(CONFIG[k])(new[k])
                except (ValueError, TypeError) as e:
                    return self.send(_error(400, "bad config: %s" % e, "invalid_request_error", None, not ka), ka)
            return self.send(_response(200, _dumps(CONFIG), close=not ka), ka)
        if path == b"/_mock/stats":
            return self.send(_response(200, _dumps(STATS), close=not ka), ka)
        STATS["not_found"] += 1
        return self.send(_error(404, "unknown path %s" % path.decode("latin-1"), "invalid_request_error",
                                "not_found", not ka), ka)

    def send(self, data: bytes, ka: bool):
        self.transport.write(data)
        if not ka:
            self.transport.close()
            self.closed = True

    def chat(self, req: Request, ka: bool):
        STATS["chat"] += 1
        auth = req.headers.get(b"authorization")
        if not auth or not auth.startswith(b"Bearer ") or len(auth) <= 7:
            STATS["unauthorized"] += 1
            return self.send(_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                         "Authorization header using Bearer auth.",
                                    "invalid_request_error", None, not ka), ka)
        try:
            body = _loads(req.body)
            model = body["model"]
            if not isinstance(model, str) or not isinstance(body.get("messages"), list):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            STATS["bad_request"] += 1
            return self.send(_error(400, "invalid body: 'model' (string) and 'messages' (array) are required",
                                    "invalid_request_error", None, not ka), ka)
        t = templates(model)
        prompt_tokens = 8 + len(req.body) // 16
        rid = _next_id()
        if body.get("stream") is True:
            opts = body.get("stream_options") or {}
            include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
            return self.start_stream(req, ka, t, rid, prompt_tokens, include_usage)
        out = b"".join((b'{"id":"chatcmpl-%024x' % rid, t.json_head,
                        b'%d,"completion_tokens":%d,"total_tokens":%d' % (
                            prompt_tokens, REPLY_TOKENS, prompt_tokens + REPLY_TOKENS),
                        t.json_tail))
        data = _response(200, out, close=not ka, extra=b"x-request-id: req_%024x\r\n" % rid)
        try:
            delay = _param(req, "delay_ms", CONFIG["delay_ms"])
        except ValueError:
            delay = CONFIG["delay_ms"]
        if delay <= 0:
            return self.send(data, ka)
        self.busy = True
        self.handle = self.loop.call_later(delay / 1000.0, self._delayed_send, data, ka)

    def _delayed_send(self, data: bytes, ka: bool):
        if self.closed:
            return
        self.transport.write(data)
        self.finish(ka)

    # -- Anthropic Messages -----------------------------------------------------------------------------------
    def messages(self, req: Request, ka: bool):
        STATS["chat"] += 1
        if not req.headers.get(b"x-api-key") or not req.headers.get(b"anthropic-version"):
            STATS["unauthorized"] += 1
            return self.send(_response(401, b'{"type":"error","error":{"type":"authentication_error",'
                                            b'"message":"x-api-key and anthropic-version are required"}}',
                                       close=not ka), ka)
        try:
            body = _loads(req.body)
            model = body["model"]
            if not isinstance(model, str) or not isinstance(body.get("messages"), list) \
                    or not isinstance(body.get("max_tokens"), int):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            STATS["bad_request"] += 1
            return self.send(_response(400, b'{"type":"error","error":{"type":"invalid_request_error",'
                                            b'"message":"model, max_tokens and messages are required"}}',
                                       close=not ka), ka)
        rid = _next_id()
        input_tokens = 8 + len(req.body) // 16
        mid = "msg_%024x" % rid
        if body.get("stream") is True:
            STATS["streams"] += 1
            n = self._chunks(req)
            usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                     "output_tokens": 1}
            frames = [("message_start", {"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": usage}}),
                ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
                ("ping", {"type": "ping"})]
            for i in range(n):
                frames.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "text_delta", "text": STREAM_TOKENS[i % len(STREAM_TOKENS)]}}))
            frames += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                       ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                             "stop_sequence": None},
                                          "usage": {"output_tokens": n}}),
                       ("message_stop", {"type": "message_stop"})]
            events = [b"event: %s\ndata: %s\n\n" % (name.encode(), _dumps(data)) for name, data in frames]
            return self._stream_events(req, ka, rid, events)
        out = _dumps({"id": mid, "type": "message", "role": "assistant", "model": model,
                      "content": [{"type": "text", "text": REPLY_TEXT}], "stop_reason": "end_turn",
                      "stop_sequence": None,
                      "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                                "cache_read_input_tokens": 0, "output_tokens": REPLY_TOKENS}})
        data = _response(200, out, close=not ka, extra=b"request-id: req_%024x\r\n" % rid)
        try:
            delay = _param(req, "delay_ms", CONFIG["delay_ms"])
        except ValueError:
            delay = CONFIG["delay_ms"]
        if delay <= 0:
            return self.send(data, ka)
        self.busy = True
        self.handle = self.loop.call_later(delay / 1000.0, self._delayed_send, data, ka)

    # -- streaming -----------------------------------------------------------------------------------------------
    @staticmethod
    def _chunks(req) -> int:
        try:
            return max(2, int(_param(req, "chunks", CONFIG["chunks"])))
        except ValueError:
            return CONFIG["chunks"]

    def start_stream(self, req, ka, t, rid, prompt_tokens, include_usage):
        STATS["streams"] += 1
        n = self._chunks(req)
        cid = b"%024x" % rid
        events = []
        for i in range(n):
            events.append(b"".join((t.chunk_head, cid, t.chunk_mid, t.delta(i, n, include_usage))))
        if include_usage:
            ct = n - 2
            events.append(b"".join((t.chunk_head, cid, t.usage_chunk_mid,
                                    b'],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
                                    b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
                                    b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
                                    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n'
                                    % (prompt_tokens, ct, prompt_tokens + ct))))
        events.append(b"data: [DONE]\n\n")
        return self._stream_events(req, ka, rid, events)

    def _stream_events(self, req, ka, rid, events):
        try:
            first = _param(req, "first_delay_ms", CONFIG["first_delay_ms"]) / 1000.0
            gap = _param(req, "gap_ms", CONFIG["gap_ms"]) / 1000.0
        except ValueError:
            first, gap = CONFIG["first_delay_ms"] / 1000.0, CONFIG["gap_ms"] / 1000.0
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
                b"Cache-Control: no-cache\r\nx-request-id: req_%024x\r\n" % rid)
        head += b"\r\n" if ka else b"Connection: close\r\n\r\n"
        if first <= 0 and gap <= 0:
            # everything at once (each event still its own HTTP chunk)
            self.transport.write(b"".join([head] + [_chunk(e) for e in events] + [b"0\r\n\r\n"]))
            if not ka:
                self.transport.close()
                self.closed = True
            return
        self.busy = True
        self.transport.write(head)
        self.stream = (events, ka, self.loop.time() + first, gap)
        self._stream_step(0)

    def _stream_step(self, i: int):
        if self.closed or self.stream is None:
            return
        events, ka, t0, gap = self.stream
        # one event per write (never coalesced here, even when the loop runs late); the schedule is absolute
        if self.loop.time() < t0 + i * gap - 0.0002:  # woke up early
            self.handle = self.loop.call_at(t0 + i * gap, self._stream_step, i)
            return
        if i == len(events) - 1:
            self.transport.write(_chunk(events[i]) + b"0\r\n\r\n")
            self.finish(ka)
            return
        self.transport.write(_chunk(events[i]))
        self.handle = self.loop.call_at(t0 + (i + 1) * gap, self._stream_step, i + 1)


# ---------------------------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--first-delay-ms", type=float, default=0.0)
    ap.add_argument("--gap-ms", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    args = ap.parse_args(argv)
    CONFIG.update(chunks=args.chunks, first_delay_ms=args.first_delay_ms, gap_ms=args.gap_ms, delay_ms=args.delay_ms)

    loop_name = "asyncio"
    if args.loop in ("auto", "uvloop"):
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            loop_name = "uvloop"
        except ImportError:
            if args.loop == "uvloop":
                raise
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(lambda: MockProtocol(loop), args.host, args.port,
                                                        backlog=4096, reuse_address=True))
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print("mock upstream on http://%s:%d (pid %d, %s, json %s)" % (
        args.host, args.port, os.getpid(), loop_name, "orjson" if "orjson" in sys.modules else "json"),
        file=sys.stderr, flush=True)
    try:
        loop.run_until_complete(stop)
    finally:
        server.close()
        loop.close()


if __name__ == "__main__":
    main()
