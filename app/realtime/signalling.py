"""Reading a client's call request: the GA multipart/urlencoded form or the legacy raw SDP.

Returns the offer (already checked), the target and the session to send upstream. Model
rules: ``session.model`` (GA) or ``?model=`` (legacy) in ``provider/model`` form; on the
``/openai`` routes a bare model means OpenAI; with a gateway client secret the secret's
model and session apply, and a different model is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from flask import Request

from app.config import GatewayConfig
from app.errors import bad_request
from app.realtime import upstream
from app.realtime.auth import Caller, bound_model
from app.realtime.sdp import Offer, check_offer


@dataclass(frozen=True)
class CallRequest:
    offer: Offer
    target: upstream.Target
    session: dict  # what goes upstream: the client's session with the bare model


def read_call_request(request: Request, config: GatewayConfig, caller: Caller, *, openai_route: bool) -> CallRequest:
    content_type = (request.mimetype or "").lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        sdp = _field(request, "sdp")
        raw_session = _field(request, "session")
        if raw_session is None and caller.secret is not None:
            session = dict(caller.secret.session)
        elif raw_session is None:
            raise bad_request("session is required (a JSON object with model)", param="session")
        else:
            try:
                session = orjson.loads(raw_session)
            except orjson.JSONDecodeError as exc:
                raise bad_request(f"session is not valid JSON: {exc}", param="session") from None
            if not isinstance(session, dict):
                raise bad_request("session must be a JSON object", param="session")
        if sdp is None:
            raise bad_request("sdp is required (the client's SDP offer)", param="sdp")
        model, param = session.get("model"), "session.model"
    elif content_type == "application/sdp" or (not content_type and request.content_length):
        sdp = request.get_data(as_text=True)
        session = dict(caller.secret.session) if caller.secret else {}
        model, param = request.args.get("model") or session.get("model"), "model"
    else:
        raise bad_request("Content-Type must be multipart/form-data (sdp, session), "
                          "application/x-www-form-urlencoded, or application/sdp with ?model=",
                          param="Content-Type")
    model = bound_model(caller, model, param)
    if model is None:
        raise bad_request(f"{param} is required (provider/model)", param=param)
    offer = check_offer(sdp)
    target = upstream.resolve(config, model, param=param, default_provider="openai" if openai_route else None,
                              pinned_key=request.headers.get("x-bf-api-key"))
    session = {**session, "model": target.model}
    session.setdefault("type", "realtime")
    return CallRequest(offer, target, session)


def _field(request: Request, name: str) -> str | None:
    if name in request.form:
        return request.form[name]
    upload = request.files.get(name)
    if upload is not None:
        return upload.read().decode("utf-8", "replace")
    return None
