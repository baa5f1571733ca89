"""The gunicorn worker: gevent's, with bounded request reads and a shutdown that ends streams cleanly.

gunicorn's gevent worker lets a client take forever to send a request, keeps a stopping
worker waiting on idle keep-alive connections, and cuts streams at the graceful timeout
without a word. The master imports this module, so it stays free of Flask and urllib3.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from functools import partial

import gevent
from gevent import socket as gsocket
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn import util
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from app.errors import GatewayError, server_shutting_down

READ_TIMEOUT_ENV = "BIFROST_READ_TIMEOUT"
DEFAULT_READ_TIMEOUT = 60.0
ECHO_LIMIT = 200  # characters of a protocol error message sent back


class ReadDeadlineExceeded(Exception):
    """The client did not send its whole request (headers and body) within the read timeout.

    Not an OSError: werkzeug would turn that into "client disconnected".
    """


def read_timeout_from_env(environ=os.environ) -> float:
    raw = environ.get(READ_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_READ_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{READ_TIMEOUT_ENV}: must be a number of seconds above 0, got {raw!r}")
    return value


class ClientSocket(gsocket.socket):
    """A client connection whose reads share one deadline per request.

    The deadline starts with a request's first byte and bounds every later read of its
    headers and body through the socket timeout, which costs nothing until a read would
    block: no timer or greenlet per request. Between requests the connection is idle, and
    the keep-alive timeout bounds that wait the same way (gunicorn's gevent worker starts a
    gevent.Timeout per request for it instead). Writes are never bounded, as in gunicorn.
    """

    __slots__ = ("read_until", "idle", "plain")
    read_timeout = DEFAULT_READ_TIMEOUT  # set by the worker
    idle_timeout = 75.0  # gunicorn's keepalive, set by the worker
    closing = False  # the worker is stopping: idle connections end at once

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_until: float | None = None
        self.idle = False
        self.plain = False  # an HTTP/2 connection (opt-in h2c): gunicorn's own timing, none of ours

    def recv(self, *args):
        if self.plain:
            return _recv(self, *args)
        read_until = self.read_until
        if read_until is None:  # waiting for the next request
            if ClientSocket.closing:
                return b""
            if self.timeout != self.idle_timeout:
                self.settimeout(self.idle_timeout)
            self.idle = True
            try:
                data = _recv(self, *args)  # another error ends the connection: idle needs no reset
            except socket.timeout:
                data = b""  # the keep-alive timeout: end the connection as if the client had closed it
            self.idle = False
            self.read_until = _monotonic() + self.read_timeout
            return data
        remaining = read_until - _monotonic()
        if remaining <= 0:
            raise ReadDeadlineExceeded()
        self.settimeout(remaining)
        try:
            return _recv(self, *args)
        except socket.timeout:
            raise ReadDeadlineExceeded() from None

    def sendall(self, *args):
        if self.timeout and not self.plain:  # a read's deadline; 0.0 (non-blocking) is gunicorn's error write
            self.settimeout(None)
        return _sendall(self, *args)



_NO_TIMEOUT = contextlib.nullcontext()
_recv = gsocket.socket.recv
_sendall = gsocket.socket.sendall
_monotonic = time.monotonic


class _Server(StreamServer):
    def do_read(self):
        listener = self.socket
        try:
            fd, address = listener._accept()
        except BlockingIOError:
            if not listener.timeout:
                return None
            raise
        return ClientSocket(listener.family, listener.type, listener.proto, fileno=fd), address


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error reply (bad framing, header too large, ...) as BifrostError JSON."""
    message = mesg or reason
    if len(message) > ECHO_LIMIT:
        message = message[:ECHO_LIMIT] + "..."
    body = json.dumps({
        "is_bifrost_error": status_int >= 500,
        "status_code": status_int,
        "error": {"message": message, "type": "internal_error" if status_int >= 500 else "invalid_request_error"},
    }).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1", "replace")
    util.write_nonblock(sock, head + body)


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker with a request read deadline and a clean shutdown."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout_from_env()
        self.connections: set[ClientSocket] = set()
        self.stop_requested: float | None = None

    def init_process(self) -> None:
        ClientSocket.read_timeout = self.read_timeout
        ClientSocket.idle_timeout = float(self.cfg.keepalive or self.read_timeout)
        util.write_error = write_json_error  # the one place gunicorn writes its own error pages
        super().init_process()

    def timeout_ctx(self):
        if self.cfg.is_ssl:  # TLS sockets are gevent's own: keep gunicorn's timer
            return super().timeout_ctx()
        return _NO_TIMEOUT  # ClientSocket bounds the keep-alive wait with its socket timeout

    def handle_exit(self, sig, frame) -> None:
        self.stop_requested = time.monotonic()
        super().handle_exit(sig, frame)

    def handle(self, listener, client, addr) -> None:
        if type(client) is not ClientSocket:  # gunicorn's own TLS wraps it: no deadline, no idle close
            super().handle(listener, client, addr)
            return
        self.connections.add(client)
        try:
            super().handle(listener, client, addr)
        finally:
            self.connections.discard(client)

    def handle_http2(self, listener, client, addr, *args, **kwargs):
        if type(client) is ClientSocket:
            client.plain = True
            client.read_until = None
            client.settimeout(None)
        return super().handle_http2(listener, client, addr, *args, **kwargs)

    def handle_request(self, listener_name, req, sock, addr):
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if type(sock) is ClientSocket:
                sock.read_until = None

    def handle_error(self, req, client, addr, exc) -> None:
        if isinstance(exc, ReadDeadlineExceeded):
            self.log.warning("bifrost: request from %s not received within %gs (%s): 408",
                             (addr or ("-",))[0], self.read_timeout, READ_TIMEOUT_ENV)
            self._reply_error(client, 408, "Request Timeout",
                              f"request not received within {self.read_timeout:g}s")
            return
        if isinstance(exc, GatewayError):  # the shutdown cut reached a request still being read
            self._reply_error(client, exc.http_status, "Service Unavailable", exc.message)
            return
        super().handle_error(req, client, addr, exc)

    @staticmethod
    def _reply_error(client, status: int, reason: str, message: str) -> None:
        try:
            write_json_error(client, status, reason, message)
        except OSError:
            pass

    # -- serving and stopping ----------------------------------------------------------------

    def run(self) -> None:
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = _Server(listener, handle=partial(self.handle, listener), spawn=Pool(self.worker_connections),
                             **ssl_args)
            if self.cfg.workers > 1:
                server.max_accept = 1
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        try:
            self.shutdown(servers)
        except Exception:  # noqa: BLE001 - the worker is exiting either way
            self.log.exception("bifrost: error during worker shutdown")

    def shutdown(self, servers: list[_Server]) -> None:
        """Stop accepting, end idle connections now, let requests finish until the deadline.

        Streams still running just before the graceful timeout get a
        ``server_shutting_down`` error event, so their clients know the answer was cut.
        """
        started = self.stop_requested or time.monotonic()
        graceful = float(self.cfg.graceful_timeout)
        margin = min(5.0, max(1.0, graceful * 0.1))  # time to write the error events before the master's kill
        cut_at = started + max(0.0, graceful - margin)
        for server in servers:
            server.close()
        ClientSocket.closing = True
        self._close_idle()
        while self._busy(servers):
            now = time.monotonic()
            if now >= cut_at:
                break
            self.notify()
            gevent.sleep(min(0.5, cut_at - now))
        else:
            return
        greenlets = [g for server in servers for g in list(server.pool.greenlets)]
        self.log.warning("bifrost: graceful timeout (%ss): ending %d request(s) with server_shutting_down",
                         self.cfg.graceful_timeout, len(greenlets))
        for greenlet in greenlets:
            greenlet.kill(server_shutting_down(), block=False)
        give_up = time.monotonic() + margin - 0.5
        while self._busy(servers) and time.monotonic() < give_up:
            gevent.sleep(0.05)
        for server in servers:
            server.stop(timeout=0.5)

    def _close_idle(self) -> None:
        for client in list(self.connections):
            if client.idle:
                try:
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _busy(servers: list[_Server]) -> bool:
        return any(server.pool.free_count() != server.pool.size for server in servers)
