"""WSGI middleware: the request context and the headers that every reply carries.

It wraps Flask's ``wsgi_app`` (as werkzeug's ProxyFix does) rather than using
before/after-request hooks: the headers are appended to the raw header list when the
status line goes out, which is also the moment the overhead of a stream is known.
"""
from __future__ import annotations

from typing import Callable, Iterable

from app.config import ClientConfig
from app.context import RequestContext

CONTEXT_KEY = "bifrost.context"
LOCAL_ORIGINS = ("http://localhost", "http://127.0.0.1", "https://localhost", "https://127.0.0.1")
EXPOSED_HEADERS = "x-request-id, x-bifrost-provider, x-bifrost-fallback-index, x-bifrost-overhead-ms, location"


class GatewayMiddleware:
    def __init__(self, wsgi_app: Callable, client: ClientConfig) -> None:
        self.wsgi_app = wsgi_app
        self.allowed_origins = frozenset(client.allowed_origins)
        self.allow_any_origin = "*" in self.allowed_origins
        self.extra_allowed_headers = ", ".join(client.allowed_headers)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        ctx = RequestContext.from_environ(environ)
        environ[CONTEXT_KEY] = ctx
        origin = environ.get("HTTP_ORIGIN")
        cors = self.cors_headers(environ, origin) if origin else ()

        def start(status: str, headers: list, exc_info=None):
            headers.append(("x-request-id", ctx.request_id))
            headers.append(("x-bifrost-overhead-ms", f"{ctx.overhead_ms():.3f}"))
            headers.append(("x-bifrost-upstream-latency-ms", f"{ctx.upstream_seconds * 1000:.3f}"))
            headers.extend(cors)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)

    def cors_headers(self, environ: dict, origin: str) -> list[tuple[str, str]]:
        if not (self.allow_any_origin or origin in self.allowed_origins or origin.startswith(LOCAL_ORIGINS)):
            return []
        allow_headers = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or "Content-Type, Authorization, X-Request-Id"
        if self.extra_allowed_headers:
            allow_headers += ", " + self.extra_allowed_headers
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Vary", "Origin"),
            ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", allow_headers),
            ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
        ]
