"""Admin and inference authentication (auth_config), checked once per request before routing.

/api/* needs Basic credentials or a session token; inference routes need the same
unless auth_config.disable_auth_on_inference is set or the request carries a virtual
key (which the governance plugin then judges). The admin password is kept only as an
argon2 hash; a password once verified is remembered as an HMAC so Basic auth does not
pay argon2's cost on every request. Every comparison is constant-time.
"""
from __future__ import annotations

import base64
import hmac
import logging
import os
import secrets
import time
from typing import Any, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import GatewayError

log = logging.getLogger("bifrost.auth")

SESSION_SECONDS = 30 * 86400
SESSION_COOKIE = "token"
ALWAYS_OPEN = frozenset({"/health", "/api/session/login", "/api/session/is-auth-enabled", "/api/oauth/callback"})
QUOTA_PATH = "/api/governance/virtual-keys/quota"  # authenticated by the virtual key itself
PASSWORD_HASH_KEY = "admin_password_hash"
# Decided by app/realtime/auth.py: client secrets and keys in the WebSocket subprotocol (browsers send no headers)
REALTIME_PREFIXES = ("/v1/realtime", "/openai/v1/realtime", "/openai/realtime")


def unauthorized(message: str = "Unauthorized: send Basic credentials or a session token") -> GatewayError:
    return GatewayError(message, 401, type="unauthorized", error_type="authentication_error")


class Auth:
    def __init__(self, raw: Mapping[str, Any], store) -> None:
        section = raw.get("auth_config") or {}
        client = raw.get("client") or {}
        self.store = store
        self.enabled = bool(section.get("is_enabled"))
        self.inference_open = bool(section.get("disable_auth_on_inference"))
        routes = [str(r) for r in client.get("whitelisted_routes") or ()]
        self.open_exact = ALWAYS_OPEN | {r for r in routes if not r.endswith("*")}
        self.open_prefixes = tuple(r[:-1] for r in routes if r.endswith("*"))
        self.username = str(section.get("admin_username") or "")
        self.hasher = PasswordHasher()
        self.password_hash = self._password_hash(str(section.get("admin_password") or "")) if self.enabled else ""
        self._hmac_key = os.urandom(32)
        self._verified: bytes | None = None  # HMAC of the password last verified against the hash
        self._sessions: dict[str, float] = {}  # token -> expiry, dropped whenever the store changes
        if self.enabled and not (self.username and self.password_hash):
            raise ValueError("auth_config: is_enabled needs admin_username and admin_password")

    def _password_hash(self, configured: str) -> str:
        """The stored argon2 hash; config.json may hold the hash itself or the password (or env.VAR)."""
        if not configured:
            return ""
        if configured.startswith("$argon2"):
            return configured
        stored = self.store.meta_get(PASSWORD_HASH_KEY)
        if stored:
            try:
                self.hasher.verify(stored, configured)
                return stored
            except (VerificationError, InvalidHashError):
                pass  # config.json has a new password
        hashed = self.hasher.hash(configured)
        self.store.meta_set(PASSWORD_HASH_KEY, hashed)
        return hashed

    def forget_sessions(self) -> None:
        self._sessions = {}

    # -- checks -------------------------------------------------------------------------------------

    def check_password(self, username: str, password: str) -> bool:
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        mac = hmac.new(self._hmac_key, password.encode(), "sha256").digest()
        if self._verified is not None and hmac.compare_digest(mac, self._verified):
            return user_ok
        try:
            self.hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        self._verified = mac
        return user_ok

    def session_valid(self, token: str) -> bool:
        if not token or len(token) > 200:
            return False
        now = time.time()
        expiry = self._sessions.get(token)
        if expiry is None:
            expiry = self.store.session_expiry(token)  # made a moment ago by another worker?
            if expiry is None:
                return False
            self._sessions[token] = expiry
        return now < expiry

    def admin_ok(self, environ: dict) -> bool:
        header = environ.get("HTTP_AUTHORIZATION") or ""
        scheme, _, credential = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                username, _, password = base64.b64decode(credential.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return self.check_password(username, password)
        if scheme == "bearer" and self.session_valid(credential.strip()):
            return True
        return self.session_valid(cookie(environ, SESSION_COOKIE) or "")

    def check(self, environ: dict, virtual_key: str | None) -> None:
        """Raise 401 unless this request may go on (the hot path: a few set and string checks)."""
        path = environ.get("PATH_INFO") or "/"
        if environ.get("REQUEST_METHOD") == "OPTIONS":  # CORS preflights carry no credentials
            return
        if path in self.open_exact or (self.open_prefixes and path.startswith(self.open_prefixes)):
            return
        if path.startswith("/api/"):
            if path == QUOTA_PATH or self.admin_ok(environ):
                return
            raise unauthorized()
        if self.inference_open or virtual_key is not None or path.startswith(REALTIME_PREFIXES):
            return
        if self.admin_ok(environ):
            return
        raise unauthorized("Unauthorized: send a virtual key, Basic credentials or a session token")

    # -- sessions -----------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> tuple[str, float]:
        if not self.check_password(username, password):
            raise unauthorized("Invalid username or password")
        token = secrets.token_urlsafe(32)
        expires_at = time.time() + SESSION_SECONDS
        self.store.create_session(token, expires_at)
        return token, expires_at

    def logout(self, environ: dict) -> None:
        header = environ.get("HTTP_AUTHORIZATION") or ""
        token = header[7:].strip() if header[:7].lower() == "bearer " else cookie(environ, SESSION_COOKIE)
        if token:
            self._sessions.pop(token, None)
            self.store.delete_session(token)


def cookie(environ: dict, name: str) -> str | None:
    raw = environ.get("HTTP_COOKIE")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
