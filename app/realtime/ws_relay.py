"""The realtime WebSocket relay: client <-> gateway <-> provider, JSON events both ways.

Greenlets only (no aiortc): simple-websocket serves the client's upgrade on gunicorn's
gevent worker and dials the provider. The provider connection is opened first, so its
refusal is still an HTTP error. Pings go out every 15 s (client.realtime.ws_ping_interval_seconds)
on both sockets; no pong by the next ping closes the socket (1008). Whichever side closes,
the other is closed with the same code.
"""
from __future__ import annotations

import logging
import time

import gevent
import orjson
from flask import Response
from simple_websocket import Client, ConnectionClosed, Server
from simple_websocket import ConnectionError as HandshakeRefused

from app.errors import GatewayError
from app.realtime import upstream
from app.realtime.usage import CallUsage, open_call, report_call

log = logging.getLogger("bifrost.realtime")

UNSENDABLE = {1005, 1006, 1015}  # codes that only describe a close, never go on the wire


class _Server(Server):
    def choose_subprotocol(self, request):
        # The OpenAI SDK offers "realtime" plus "openai-insecure-api-key.<key>"; echo only the former.
        return "realtime" if "realtime" in request.subprotocols else None


class _Client(Client):
    def handshake(self):
        super().handshake()
        # simple-websocket 1.1 takes only the 101 from wsproto; frames that came in the same read
        # (OpenAI sends session.created at once) would wait for the next packet. Hand them on now.
        self.connected = self._handle_events()


def relay(environ: dict, target: upstream.Target, request_id: str, ping_seconds: float = 15.0,
          virtual_key: str | None = None, session: dict | None = None) -> Response:
    """Relay one client socket; ``session`` (a client secret's) is sent upstream first as session.update."""
    from app.gateway import current_context, current_engine

    # governance admits the call (provider, model, limits); logs and metrics see it start
    accounting = open_call(current_engine(), current_context(), target.provider.name, target.model, virtual_key)
    try:
        provider_ws = _connect_upstream(target, ping_seconds)
        if session:
            provider_ws.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        client_ws = _Server(environ, ping_interval=ping_seconds)
    except GatewayError as error:
        accounting.finish(error=error)
        raise
    except BaseException as exc:
        accounting.finish(error=GatewayError(f"realtime WebSocket failed: {exc.__class__.__name__}", 500,
                                             is_bifrost_error=True))
        raise
    usage = CallUsage()
    started = time.time()
    counts = {"to_upstream": 0, "to_client": 0}
    ends: list[str] = []
    pumps = [gevent.spawn(_pump, client_ws, provider_ws, "client", counts, "to_upstream", None, ends),
             gevent.spawn(_pump, provider_ws, client_ws, "upstream", counts, "to_client", usage, ends)]
    gevent.joinall(pumps, count=1)
    gevent.joinall(pumps, timeout=5)
    gevent.killall(pumps)
    report_call({"call_id": request_id, "transport": "websocket", "provider": target.provider.name,
                 "model": target.model, "request_id": request_id,
                 "key": target.key.name if target.key else None, "virtual_key": virtual_key,
                 "duration_s": round(time.time() - started, 3), "reason": ends[0] if ends else "closed",
                 **usage.as_dict(), **counts}, accounting)
    return _HandledResponse(client_ws)


def _connect_upstream(target: upstream.Target, ping_seconds: float) -> "_Client":
    try:
        return _Client.connect(upstream.websocket_url(target), headers=target.headers(), ping_interval=ping_seconds)
    except HandshakeRefused as exc:  # the provider answered the upgrade with an HTTP error
        raise GatewayError(f"{target.provider.name} refused the realtime WebSocket ({exc.status_code})", 502,
                           code=f"upstream_{exc.status_code}", provider=target.provider.name, model=target.model,
                           request_type="realtime") from None
    except OSError as exc:
        raise GatewayError(f"{target.provider.name} realtime WebSocket unreachable: {exc.__class__.__name__}", 502,
                           is_bifrost_error=True, provider=target.provider.name, model=target.model,
                           request_type="realtime") from None


def _pump(source, sink, name: str, counts: dict, counter: str, usage: CallUsage | None, ends: list) -> None:
    try:
        while True:
            message = source.receive()
            if message is None:
                continue
            if usage is not None and '"response.done"' in (message if isinstance(message, str) else ""):
                usage.add_event_text(message)
            sink.send(message)
            counts[counter] += 1
    except ConnectionClosed:
        code, text = source.close_reason, source.close_message
        ends.append(f"{name} closed ({code})")
        _close(sink, code, text)
    except Exception as exc:  # noqa: BLE001 - a broken socket on either side ends the relay
        ends.append(f"{name} failed ({exc.__class__.__name__})")
        _close(source, 1011, None)
        _close(sink, 1011, None)


def _close(ws, code, text) -> None:
    code = int(code) if code else 1000
    if code in UNSENDABLE:
        code = 1001 if code == 1006 else 1000
    try:
        ws.close(code, text)
    except ConnectionClosed:
        pass
    except OSError:
        pass


class _HandledResponse(Response):
    """gunicorn already gave the socket to the WebSocket; write nothing more (as flask-sock does)."""

    def __init__(self, ws) -> None:
        super().__init__()
        self.ws = ws

    def __call__(self, environ, start_response):
        if self.ws.mode == "gunicorn":
            raise StopIteration()
        return []
