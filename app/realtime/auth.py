"""Who is calling a realtime route: the one place realtime auth is decided.

Today: a gateway client secret (``ek_bf_…``, from a Bearer header or the OpenAI SDK's
``openai-insecure-api-key.<key>`` WebSocket subprotocol) is verified; any other caller
passes, as on the other inference routes. Governance's virtual-key check goes here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

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
    virtual_key = headers.get("x-bf-vk") or (token if token and token.startswith("sk-bf-") else None)
    # Governance (virtual keys, enforce_auth_on_inference) hooks in here.
    return Caller(token, virtual_key=virtual_key)


def bound_model(caller: Caller, model: str | None, param: str) -> str | None:
    """The model a call may use: a client secret's own model; another one is refused."""
    if caller.secret is None:
        return model
    bound = f"{caller.secret.provider}/{caller.secret.model}"
    if model and model not in (bound, caller.secret.model):
        raise GatewayError(f"the client secret is bound to model {bound}, not {model}", 401,
                           error_type="invalid_request_error", code="client_secret_model_mismatch", param=param)
    return bound
