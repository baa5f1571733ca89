"""Access to the running gateway's engine and the current request's context from handlers."""
from __future__ import annotations

from flask import current_app, request

from app.context import RequestContext
from app.engine import Engine
from app.middleware import CONTEXT_KEY

EXTENSION = "bifrost"


def current_engine() -> Engine:
    return current_app.extensions[EXTENSION]


def current_context() -> RequestContext:
    return request.environ[CONTEXT_KEY]
