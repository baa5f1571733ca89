"""Request hooks and error handlers installed on the app by ``create_app``."""
from __future__ import annotations

import logging

from flask import Response, g, request
from werkzeug.exceptions import HTTPException

from app.config import GatewayConfig
from app.context import RequestContext
from app.errors import GatewayError
from app.responses import error_response, internal_error

log = logging.getLogger("bifrost")

LOCAL_ORIGINS = ("http://localhost", "http://127.0.0.1", "https://localhost", "https://127.0.0.1")


def open_context() -> None:
    g.ctx = RequestContext.from_environ(request.environ)


def common_headers(config: GatewayConfig):
    allowed = config.client.allowed_origins
    allow_any = "*" in allowed
    extra_headers = ", ".join(config.client.allowed_headers)

    def add_headers(response: Response) -> Response:
        ctx: RequestContext | None = g.get("ctx")
        if ctx is not None:
            response.headers["x-request-id"] = ctx.request_id
            response.headers["x-bifrost-overhead-ms"] = f"{ctx.overhead_ms():.3f}"
            response.headers["x-bifrost-upstream-latency-ms"] = f"{ctx.upstream_seconds * 1000:.3f}"
        origin = request.headers.get("Origin")
        if origin and (allow_any or origin in allowed or origin.startswith(LOCAL_ORIGINS)):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            requested = request.headers.get("Access-Control-Request-Headers")
            allow_headers = requested or "Content-Type, Authorization, X-Request-Id"
            if extra_headers:
                allow_headers += ", " + extra_headers
            response.headers["Access-Control-Allow-Headers"] = allow_headers
            response.headers["Access-Control-Expose-Headers"] = "x-request-id, x-bifrost-provider, x-bifrost-overhead-ms"
        return response

    return add_headers


def http_error(exc: HTTPException) -> Response:
    if exc.code == 404:
        message = f"Route not found: {request.path}"
    elif exc.code == 405:
        message = f"Method {request.method} not allowed on {request.path}"
    elif exc.code == 413:
        message = "request body too large (client.max_request_body_size_mb)"
    else:
        message = exc.description or exc.name
    return error_response(GatewayError(message, exc.code or 500, error_type="invalid_request_error"))


def unexpected_error(exc: Exception) -> Response:
    ctx = g.get("ctx")
    log.exception("request %s: unhandled error", ctx.request_id if ctx else "-")
    return error_response(internal_error(ctx))
