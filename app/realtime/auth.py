"""Who is calling a realtime route: the one place realtime auth is decided.

A gateway client secret (``ek_bf_…``, from a Bearer header or the OpenAI SDK's
``openai-insecure-api-key.<key>`` WebSocket subprotocol) is verified and carries the
virtual key of whoever minted it. A virtual key (the inference credential headers, or the
subprotocol) must be known and active (governance's refusals). With auth_config on, any
other caller needs the admin credentials, as on the inference routes (app/auth.py leaves
the realtime paths to this module, since browsers can only authenticate in the subprotocol).
The key's providers, models and limits are judged when the call starts (app/realtime/usage.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from app.context import VIRTUAL_KEY_PREFIX, virtual_key_of
from app.errors import GatewayError
from app.realtime import secrets

SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."


@dataclass(frozen=True)
class Caller:
    token: str | None  # what the client presented (Bearer / x-api-key / subprotocol)
    secret: secrets.ClientSecret | None = None  # set when the token is a gateway client secret
    virtual_key: str | None = None


def presented_token(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("Authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    for name in ("x-api-key", "x-bf-vk"):
        if headers.get(name):
            return headers[name].strip()
    for protocol in (headers.get("Sec-WebSocket-Protocol") or "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(SUBPROTOCOL_KEY_PREFIX):
            return protocol[len(SUBPROTOCOL_KEY_PREFIX):] or None
    return None


def authenticate(headers: Mapping[str, str]) -> Caller:
    """Raise a GatewayError (401) for a caller who may not use realtime inference."""
    token = presented_token(headers)
    if secrets.is_client_secret(token):
        secret = secrets.verify(token)
        return Caller(token, secret=secret, virtual_key=secret.virtual_key)  # the minting caller's key
    virtual_key = headers.get("x-bf-vk") or (token if token and token.startswith(VIRTUAL_KEY_PREFIX) else None)
    if virtual_key is None:
        from flask import request

        virtual_key = virtual_key_of(request.environ)  # Gemini's ?key=, x-goog-api-key, ...
    if virtual_key is not None:
        _governance().service.authenticate(virtual_key)  # unknown, inactive, expired: governance's 403
    else:
        _admin_gate()
    return Caller(token, virtual_key=virtual_key)


def _governance():
    from app.gateway import current_engine

    return current_engine().plugins.get("governance")


def _admin_gate() -> None:
    """auth_config on and inference not left open: a caller without a key needs admin credentials."""
    from flask import current_app, request

    from app.auth import unauthorized
    from app.blueprints.api.session import AUTH

    auth = current_app.extensions.get(AUTH)
    if auth is not None and auth.enabled and not auth.inference_open and not auth.admin_ok(request.environ):
        raise unauthorized("Unauthorized: send a virtual key, a client secret, Basic credentials or a session token")


def bound_model(caller: Caller, model: str | None, param: str) -> str | None:
    """The model a call may use: a client secret's own model; another one is refused."""
    if caller.secret is None:
        return model
    bound = f"{caller.secret.provider}/{caller.secret.model}"
    if model and model not in (bound, caller.secret.model):
        raise GatewayError(f"the client secret is bound to model {bound}, not {model}", 401,
                           error_type="invalid_request_error", code="client_secret_model_mismatch", param=param)
    return bound
