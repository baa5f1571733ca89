"""The gateway's Flask application factory."""
from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from app.config import GatewayConfig, load_config
from app.context import RequestContext
from app.engine import Engine
from app.errors import GatewayError
from app.gateway import EXTENSION
from app.responses import error_response, internal_error

log = logging.getLogger("bifrost")

LOCAL_ORIGINS = ("http://localhost", "http://127.0.0.1", "https://localhost", "https://127.0.0.1")


def create_app(config: GatewayConfig | None = None) -> Flask:
    config = config or load_config()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.client.max_request_body_size_mb * 1024 * 1024
    app.extensions[EXTENSION] = Engine(config)

    from app.blueprints import health, inference

    app.register_blueprint(inference.bp)
    app.register_blueprint(health.bp)

    app.before_request(_open_context)
    app.after_request(_common_headers(config))
    app.register_error_handler(GatewayError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    log.info("gateway ready: %d provider(s) from %s", len(config.providers), config.source)
    return app


def _open_context() -> None:
    g.ctx = RequestContext.from_headers(request.headers)


def _common_headers(config: GatewayConfig):
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


def _http_error(exc: HTTPException) -> Response:
    if exc.code == 404:
        message = f"Route not found: {request.path}"
    elif exc.code == 405:
        message = f"Method {request.method} not allowed on {request.path}"
    elif exc.code == 413:
        message = "request body too large (client.max_request_body_size_mb)"
    else:
        message = exc.description or exc.name
    return error_response(GatewayError(message, exc.code or 500, error_type="invalid_request_error"))


def _unexpected_error(exc: Exception) -> Response:
    ctx = g.get("ctx")
    log.exception("request %s: unhandled error", ctx.request_id if ctx else "-")
    return error_response(internal_error(ctx))
