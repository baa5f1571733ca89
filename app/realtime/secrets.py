"""Gateway-minted realtime client secrets, and the gateway's signing key.

A browser gets a short-lived ``ek_bf_…`` token from ``POST /v1/realtime/client_secrets``
instead of a provider key. The token is a Fernet token (encrypted and authenticated, from
``cryptography``) that carries the model, the session, the virtual key and the expiry, so
every worker can check it without shared state and the holder cannot read the virtual key.
The gateway calls the provider with its real key; the client never sees it. cryptography is
imported by ``_fernet``, on the first client secret a worker mints or verifies, so a worker
that never sees one does not load it. Call ids are signed with itsdangerous (Flask's own), so
any worker can act on a hangup.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets as _random
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import orjson
from itsdangerous import BadSignature, URLSafeSerializer

from app.config import app_dir
from app.errors import GatewayError, bad_request

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

PREFIX = "ek_bf_"
MIN_TTL, MAX_TTL, DEFAULT_TTL = 10, 7200, 600
KEY_ENV = "BIFROST_REALTIME_SECRET"


@dataclass(frozen=True)
class ClientSecret:
    provider: str
    model: str
    session: dict  # as given, with the model in provider/model form
    expires_at: int
    virtual_key: str | None = None


@lru_cache(maxsize=1)
def signing_key() -> bytes:
    """BIFROST_REALTIME_SECRET, else a random key kept in the app dir (shared by the workers)."""
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return explicit.encode()
    path = app_dir() / "realtime.key"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may be writing it right now
            data = path.read_bytes()
            if data:
                return data
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty")
    with os.fdopen(fd, "wb") as out:
        out.write(_random.token_hex(32).encode())
    return path.read_bytes()


def _serializer(salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(signing_key(), salt=salt)


def ttl_from(body: dict) -> int:
    expires = body.get("expires_after")
    if expires is None:
        return DEFAULT_TTL
    if not isinstance(expires, dict):
        raise bad_request("expires_after must be an object", param="expires_after")
    anchor = expires.get("anchor", "created_at")
    if anchor != "created_at":
        raise bad_request("expires_after.anchor must be created_at", param="expires_after.anchor")
    seconds = expires.get("seconds", DEFAULT_TTL)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_TTL <= seconds <= MAX_TTL:
        raise bad_request(f"expires_after.seconds must be an integer from {MIN_TTL} to {MAX_TTL}",
                          param="expires_after.seconds")
    return seconds


@lru_cache(maxsize=1)
def _fernet() -> tuple[Fernet, type[Exception]]:
    """The client-secret cipher and the error of a token it rejects.

    cryptography (about 7 MB of RSS, its Rust extension) is imported here, by the request greenlet of the first
    mint or verify, on the worker's main thread; later calls are a cache hit.
    """
    from cryptography.fernet import Fernet, InvalidToken

    key = base64.urlsafe_b64encode(hashlib.sha256(b"realtime-client-secret:" + signing_key()).digest())
    return Fernet(key), InvalidToken


def mint(provider: str, model: str, session: dict, ttl: int, virtual_key: str | None = None) -> tuple[str, int]:
    expires_at = int(time.time()) + ttl
    payload = {"p": provider, "m": model, "s": session, "e": expires_at, "vk": virtual_key}
    # without base64 padding: "=" may not appear in a WebSocket subprotocol (an RFC 7230 token)
    return PREFIX + _fernet()[0].encrypt(orjson.dumps(payload)).decode().rstrip("="), expires_at


def verify(token: str) -> ClientSecret:
    """The secret behind ``token``, or a 401 (forged, damaged or expired)."""
    fernet, invalid_token = _fernet()
    try:
        body = token[len(PREFIX):]
        payload = orjson.loads(fernet.decrypt((body + "=" * (-len(body) % 4)).encode()))
    except (invalid_token, ValueError):
        raise GatewayError("invalid realtime client secret", 401, error_type="invalid_request_error",
                           code="invalid_client_secret") from None
    if payload["e"] <= time.time():
        raise GatewayError("realtime client secret has expired", 401, error_type="invalid_request_error",
                           code="client_secret_expired")
    return ClientSecret(payload["p"], payload["m"], payload["s"], payload["e"], payload.get("vk"))


def is_client_secret(token: str | None) -> bool:
    return bool(token) and token.startswith(PREFIX)


def call_id(provider: str, upstream_id: str) -> str:
    """The gateway's call id: signed, so whichever worker gets a hangup can act on it."""
    return "rtc_bf_" + _serializer("realtime-call").dumps([provider, upstream_id, _random.token_hex(4)])


def parse_call_id(value: str) -> tuple[str, str]:
    if not value.startswith("rtc_bf_"):
        raise GatewayError(f"realtime call {value} not found", 404, error_type="invalid_request_error")
    try:
        provider, upstream_id, _nonce = _serializer("realtime-call").loads(value[len("rtc_bf_"):])
    except (BadSignature, ValueError):
        raise GatewayError(f"realtime call {value} not found", 404, error_type="invalid_request_error") from None
    return provider, upstream_id
