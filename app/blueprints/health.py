"""GET /health: the process is up, its configuration is loaded, and its log store answers."""
from __future__ import annotations

from flask import Blueprint

from app.gateway import current_engine
from app.plugins.request_logs import find
from app.responses import json_response

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    engine = current_engine()
    body = {"status": "ok", "providers": sorted(engine.providers)}
    logs = find(engine.plugins)
    if logs is not None and not engine.config.client.disable_db_pings_in_health:
        reachable = logs.healthy()  # cached for a moment, so /health stays cheap
        body["components"] = {"logs_store": "ok" if reachable else "unreachable"}
        if not reachable:
            body["status"] = "error"
            return json_response(body, 503)
    return json_response(body)
