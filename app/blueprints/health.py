"""GET /health: the process is up and its configuration is loaded."""
from __future__ import annotations

from flask import Blueprint

from app.gateway import current_engine
from app.responses import json_response

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    return json_response({"status": "ok", "providers": sorted(current_engine().providers)})
