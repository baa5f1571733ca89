"""HTTP plumbing for the fake upstreams: server thread, request recording, planned behaviours.

One FakeUpstream serves every dialect (OpenAI-compatible incl. Azure/Perplexity paths, and
Anthropic); the dialect modules decide routes, validation and replies.
"""
from __future__ import annotations

import io
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import anthropic, gemini, openai
from .behaviours import Behaviour, as_behaviour
from .common import Response

_wall_clock = time.time
DIALECTS = (anthropic.DIALECT, gemini.DIALECT, openai.DIALECT)   # first match wins (the first two claim only theirs)
MAX_BODY = 64 * 1024 * 1024


@dataclass
class Recorded:
    """One request as the fake received it (recorded before validation, so rejected ones too)."""
    method: str
    path: str
    query: dict                 # name -> last value
    headers: dict               # lower-case name -> value
    body: object                # dict when the body is a JSON object, else the raw bytes
    api_key: str | None
    model: str | None = None    # body "model", or the Azure deployment
    dialect: str | None = None  # "openai" / "anthropic" / None (unknown route)
    time: float = field(default_factory=_wall_clock)   # when it arrived (time.time())

    def json(self):
        """The body parsed as JSON whatever its type (raises on invalid JSON)."""
        return self.body if isinstance(self.body, dict) else json.loads(self.body)


class _Stopped(Exception):
    """The server is stopping: abandon the request."""


@dataclass
class _Plan:
    behaviour: Behaviour
    model: str | None
    api_key: str | None
    path: str | None

    def matches(self, req: Recorded) -> bool:
        return ((self.model is None or self.model == req.model)
                and (self.api_key is None or self.api_key == req.api_key)
                and (self.path is None or self.path == req.path))


class Exchange:
    """One request being answered; the verbs behaviours use (see behaviours.py)."""

    def __init__(self, handler: "_Handler", req: Recorded, dialect, endpoint):
        self.handler = handler
        self.request = req
        self.dialect = dialect
        self.endpoint = endpoint
        self.options: dict = {}
        self.done = False

    # -- verbs -------------------------------------------------------------------------------
    def wait(self, seconds: float) -> None:
        if seconds and seconds > 0 and self.handler.server.stopping.wait(seconds):
            raise _Stopped()
        if self.handler.server.stopping.is_set():
            raise _Stopped()

    def respond(self, **options) -> None:
        self.options.update(options)
        self._send(self.dialect.build(self.request, self.endpoint, self.options, self.handler.server.fake))

    def send_error(self, status: int, message: str | None = None, headers: dict | None = None,
                   error_type: str | None = None) -> None:
        resp = self.dialect.error(status, message, error_type=error_type, request=self.request)
        if headers:
            resp.headers.update(headers)
        self._send(resp)

    def reset(self) -> None:
        self.done = True
        self.handler.abort(rst=True)

    def close(self) -> None:
        self.done = True
        self.handler.abort(rst=False)

    # -- writing -----------------------------------------------------------------------------
    def _send(self, resp: Response) -> None:
        self.done = True
        if resp.events is not None:
            self._stream(resp)
            return
        opts = self.options
        data = json.dumps(resp.body).encode()
        if opts.get("malformed_after") is not None:
            data = b"{not json"         # MalformedChunk on a plain JSON reply
        cut = opts.get("cut_after") is not None     # CutStream on a plain JSON reply: half the body
        self.handler.send_json(resp.status, data, resp.headers, cut=cut, rst=bool(opts.get("cut_reset")))

    def _stream(self, resp: Response) -> None:
        h, opts = self.handler, self.options
        events = resp.events
        cut = opts.get("cut_after")
        limit = len(events) if cut is None else max(0, min(cut, len(events) - 1))
        bad_at = opts.get("malformed_after")
        error_at = opts.get("error_after")
        h.start_stream(resp.status, resp.headers)
        for i, event in enumerate(events):
            if i >= limit:
                h.abort(rst=bool(opts.get("cut_reset")))
                return
            self.wait(opts.get("first_delay", 0) if i == 0 else opts.get("gap", 0))
            if i == error_at:
                h.write_chunk(resp.error_event)
                break
            if i == bad_at:
                h.write_chunk(opts.get("malformed_event") or resp.malformed)
                if not opts.get("malformed_resume", True):
                    break
            h.write_chunk(event)
        else:
            if bad_at is not None and bad_at >= len(events):
                h.write_chunk(opts.get("malformed_event") or resp.malformed)
        h.end_stream()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeUpstream/1.0"
    server: "_Server"

    # -- connection lifecycle ----------------------------------------------------------------
    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError, _Stopped):
            self.close_connection = True
        except OSError:
            if not self.server.stopping.is_set():
                raise

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read fake.requests instead
        pass

    def do_GET(self):
        self._dispatch_safely()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- request -----------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ConnectionResetError("client went away mid-body")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline(1024)
                if len(data) > MAX_BODY:
                    return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise ConnectionResetError("client went away mid-body")
        return data

    def _dispatch(self):
        fake = self.server.fake
        try:
            raw = self._read_body()
        except ValueError:                  # garbage chunk size / Content-Length
            raw = None
        if raw is None:
            self.close_connection = True
            self.send_json(413, openai.DIALECT.error(413, "Request too large or badly framed.").body, {})
            return
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else raw
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}

        dialect = endpoint = None
        for d in DIALECTS:
            endpoint = d.match(self.command, url.path, headers)
            if endpoint is not None:
                dialect = d
                break
        req = Recorded(self.command, url.path, query, headers, body,
                       api_key=(dialect or openai.DIALECT).api_key(headers, endpoint),
                       model=dialect.model(body, endpoint) if dialect else None,
                       dialect=dialect.name if dialect else None)
        fake._record(req)

        if dialect is None:
            resp = openai.DIALECT.error(404, f"Invalid URL ({self.command} {url.path})", request=req, code=None)
            self.send_json(resp.status, resp.body, resp.headers)
            return
        rejection = dialect.check(req, endpoint, fake)
        if rejection is not None:
            self.send_json(rejection.status, rejection.body, rejection.headers)
            return
        ex = Exchange(self, req, dialect, endpoint)
        behaviour = fake._take_behaviour(req)
        if behaviour is None:
            ex.respond()
        else:
            behaviour.run(ex)
            if not ex.done:     # a behaviour that only prepared: finish with a normal reply
                ex.respond()

    def _dispatch_safely(self):
        try:
            self._dispatch()
        except (ConnectionError, TimeoutError, _Stopped):
            raise
        except Exception:
            # A bug in the fake itself: say so loudly, and answer 500 rather than hang up.
            traceback.print_exc()
            self.close_connection = True
            try:
                self.send_json(500, {"error": {"message": "fake upstream bug: " + traceback.format_exc(limit=1),
                                               "type": "fake_upstream_bug", "param": None, "code": None}}, {})
            except OSError:
                pass

    # -- response ----------------------------------------------------------------------------
    def _status_line(self, status: int):
        reason = self.responses.get(status, ("Overloaded" if status == 529 else "Error",))[0]
        self.send_response(status, reason)

    def send_json(self, status: int, body, headers: dict, cut: bool = False, rst: bool = False):
        """Send a JSON reply (body: object or already-encoded bytes); cut=True sends the headers and
        half the body, then drops the connection."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._status_line(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:
            self.wfile.write(data[:len(data) // 2])
            self.abort(rst=rst)
        else:
            self.wfile.write(data)

    def start_stream(self, status: int, headers: dict):
        self.chunked = self.request_version != "HTTP/1.0"
        self._status_line(status)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()

    def write_chunk(self, data: bytes):
        if self.chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)

    def end_stream(self):
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def abort(self, rst: bool):
        """Drop the connection now: RST (SO_LINGER 0) or a plain close (FIN)."""
        self.close_connection = True
        sock = self.connection
        try:
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except OSError:
                pass
        sock.close()            # no file objects left, so this really closes the fd now
        # BaseHTTPRequestHandler still flushes/closes these after the method returns.
        self.wfile, self.rfile = io.BytesIO(), io.BytesIO()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, fake: "FakeUpstream", host: str):
        self.fake = fake
        self.stopping = threading.Event()
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, conn, add: bool):
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, _Stopped)) or self.stopping.is_set():
            return      # client went away or we are stopping: not worth a traceback
        super().handle_error(request, client_address)


class FakeUpstream:
    """A fake LLM provider on 127.0.0.1:<random port>, serving the OpenAI-compatible routes
    (incl. Azure and Perplexity paths) and Anthropic's /v1/messages.

        with FakeUpstream(api_keys={"sk-good"}) as fake:
            fake.plan(Status(429, headers={"retry-after": "1"}))
            ... point the gateway at fake.url ...
            assert fake.requests[-1].body["model"] == "gpt-4o-mini"
    """

    def __init__(self, api_keys=("sk-good",), models=None, host: str = "127.0.0.1"):
        self.api_keys: set = set(api_keys)
        self.models = list(models) if models else list(openai.DEFAULT_MODELS)
        self.host = host
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests: list[Recorded] = []
        self._plans: list[_Plan] = []
        self._defaults: list[_Plan] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeUpstream":
        if self._server is not None:
            return self
        self._server = _Server(self, self.host)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()          # wakes Stall / Delay / stream gaps
        server.shutdown()
        server.close_connections()     # unblocks keep-alive readers
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- recording ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least `count` requests were recorded (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {count} requests arrived")
                self._cond.wait(left)
            return list(self._requests)

    def _record(self, req: Recorded) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    # -- planning ----------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget recorded requests, pending plans and defaults."""
        with self._lock:
            self._requests.clear()
            self._plans.clear()
            self._defaults.clear()

    def plan(self, *behaviours, model: str | None = None, api_key: str | None = None,
             path: str | None = None) -> None:
        """Queue behaviours; each matching request consumes the next one (FIFO).  A tuple/list
        item is several behaviours for one request (Combine)."""
        with self._lock:
            for b in behaviours:
                self._plans.append(_Plan(as_behaviour(b), model, api_key, path))

    def set_default(self, behaviour, model: str | None = None, api_key: str | None = None,
                    path: str | None = None) -> None:
        """Apply `behaviour` to every matching request that has no pending plan, until clear()."""
        with self._lock:
            self._defaults = [d for d in self._defaults if (d.model, d.api_key, d.path) != (model, api_key, path)]
            self._defaults.append(_Plan(as_behaviour(behaviour), model, api_key, path))

    @property
    def pending(self) -> int:
        """How many planned behaviours are still waiting for a request."""
        with self._lock:
            return len(self._plans)

    def _take_behaviour(self, req: Recorded) -> Behaviour | None:
        with self._lock:
            for i, plan in enumerate(self._plans):
                if plan.matches(req):
                    del self._plans[i]
                    return plan.behaviour
            for plan in reversed(self._defaults):      # the latest matching default wins
                if plan.matches(req):
                    return plan.behaviour
        return None
