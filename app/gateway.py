"""Access to the running gateway's engine from request handlers."""
from __future__ import annotations

from flask import current_app

from app.engine import Engine

EXTENSION = "bifrost"


def current_engine() -> Engine:
    return current_app.extensions[EXTENSION]
