"""Realtime routes: WebRTC calls, hangup, client secrets and the WebSocket relay.

Thin: auth (app/realtime/auth.py), parsing (signalling), then the call registry or the
relay. The realtime package is imported with this module only, off the chat hot path, and
what it imports at boot holds no network or crypto library: the call registry (requests) and
the WebSocket relay (simple-websocket, wsproto, h11) are imported by the first request that
needs them (``_calls``, ``_ws_relay``), in its greenlet on the worker's main thread, as the
media modules are (app/realtime/calls.py ``_media``) and cryptography is (secrets ``_fernet``).
"""
from __future__ import annotations

import orjson
from flask import Blueprint, Response, request

from app.errors import bad_request
from app.gateway import current_context, current_engine
from app.realtime import secrets, upstream
from app.realtime.auth import authenticate, bound_model
from app.realtime.signalling import read_call_request
from app.responses import json_response

bp = Blueprint("realtime", __name__)


def _calls():
    """The WebRTC call registry, with requests (~3 MB): loaded by a worker's first call or hangup."""
    from app.realtime import calls

    return calls


def _ws_relay():
    """The WebSocket relay, with simple-websocket, wsproto and h11 (~1 MB): loaded by a worker's first upgrade."""
    from app.realtime import ws_relay

    return ws_relay


# /openai/... serves the OpenAI SDK pointed at base_url ".../openai/v1" or ".../openai" (a bare model means OpenAI)
@bp.post("/v1/realtime/calls")
@bp.post("/openai/v1/realtime/calls")
@bp.post("/openai/realtime/calls")
def create_call():
    return _call(openai_route=request.path.startswith("/openai/"))


@bp.post("/v1/realtime")
@bp.post("/openai/v1/realtime")
@bp.post("/openai/realtime")
def create_call_legacy():
    return _call(openai_route=request.path.startswith("/openai/"))


def _call(*, openai_route: bool) -> Response:
    engine = current_engine()
    caller = authenticate(request.headers)
    parsed = read_call_request(request, engine.config, caller, openai_route=openai_route)
    call_id, answer = _calls().open_call(engine.config.client.realtime, parsed.target, parsed.offer, parsed.session,
                                      current_context(), caller.virtual_key)
    base = request.path[: request.path.index("/realtime")]  # /v1, /openai/v1 or /openai
    return Response(answer, status=200, mimetype="application/sdp",
                    headers={"Location": f"{base}/realtime/calls/{call_id}",
                             "x-bifrost-provider": parsed.target.provider.name})


@bp.post("/v1/realtime/calls/<call_id>/hangup")
@bp.post("/openai/v1/realtime/calls/<call_id>/hangup")
@bp.post("/openai/realtime/calls/<call_id>/hangup")
def hangup(call_id: str):
    authenticate(request.headers)
    _calls().end_call(current_engine().config, call_id)
    return Response(status=200)


@bp.post("/v1/realtime/client_secrets")
@bp.post("/openai/v1/realtime/client_secrets")
@bp.post("/openai/realtime/client_secrets")
def client_secrets():
    caller = authenticate(request.headers)
    raw = request.get_data(cache=False)
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Invalid request format: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    session = body.get("session") or {}
    if not isinstance(session, dict):
        raise bad_request("session must be an object", param="session")
    ttl = secrets.ttl_from(body)
    target = upstream.resolve(current_engine().config, session.get("model"), param="session.model",
                              default_provider="openai" if request.path.startswith("/openai/") else None)
    bound = {**session, "model": f"{target.provider.name}/{target.model}"}
    bound.setdefault("type", "realtime")
    value, expires_at = secrets.mint(target.provider.name, target.model, bound, ttl, caller.virtual_key)
    return json_response({"value": value, "expires_at": expires_at, "session": bound})


@bp.get("/v1/realtime", websocket=True)  # werkzeug routes Upgrade: websocket requests only to such rules
@bp.get("/openai/v1/realtime", websocket=True)
@bp.get("/openai/realtime", websocket=True)
def websocket():
    caller = authenticate(request.headers)
    model = request.args.get("model")
    openai_route = request.path.startswith("/openai/")
    model = bound_model(caller, model, "model")
    target = upstream.resolve(current_engine().config, model, param="model",
                              default_provider="openai" if openai_route else None,
                              pinned_key=request.headers.get("x-bf-api-key"))
    return _ws_relay().relay(request.environ, target, current_context().request_id,
                          ping_seconds=current_engine().config.client.realtime.ws_ping_interval_seconds,
                          virtual_key=caller.virtual_key, session=_secret_session(caller))


def _secret_session(caller) -> dict | None:
    """What a client secret configured beyond its model, to apply before the client speaks."""
    if caller.secret is None:
        return None
    session = {k: v for k, v in caller.secret.session.items() if k != "model"}
    return session if set(session) - {"type"} else None


@bp.get("/v1/realtime")
@bp.get("/openai/v1/realtime")
@bp.get("/openai/realtime")
def websocket_required():
    raise bad_request("this route is a WebSocket: send an Upgrade: websocket request", param="Upgrade")
