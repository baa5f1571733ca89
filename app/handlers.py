"""Error handlers installed on the app by ``create_app``: every failure becomes BifrostError JSON."""
from __future__ import annotations

import logging

from flask import Response, request
from werkzeug.exceptions import HTTPException

from app.middleware import CONTEXT_KEY
from app.errors import GatewayError
from app.responses import error_response, internal_error

log = logging.getLogger("bifrost")

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
    ctx = request.environ.get(CONTEXT_KEY)
    log.exception("request %s: unhandled error", ctx.request_id if ctx else "-")
    return error_response(internal_error(ctx))
