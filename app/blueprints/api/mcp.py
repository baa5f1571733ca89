"""/api/mcp: list, add, change, remove and reconnect MCP clients (every worker follows the store)."""
from __future__ import annotations

from flask import Blueprint

from app.blueprints.inference import read_json
from app.gateway import current_engine
from app.mcp import manager_for
from app.responses import json_response

bp = Blueprint("api_mcp", __name__)


def _manager():
    return manager_for(current_engine().config)


@bp.get("/api/mcp/clients")
def list_clients():
    clients = _manager().clients()
    return json_response({"clients": clients, "count": len(clients)})


@bp.post("/api/mcp/client")
def add_client():
    client = _manager().add(read_json())
    return json_response({"message": "MCP client added", "client": client}, 201)


@bp.put("/api/mcp/client/<name>")
def update_client(name: str):
    client = _manager().add(read_json(), replace=name)
    return json_response({"message": "MCP client updated", "client": client})


@bp.delete("/api/mcp/client/<name>")
def delete_client(name: str):
    _manager().remove(name)
    return json_response({"message": f"MCP client {name} removed"})


@bp.post("/api/mcp/client/<name>/reconnect")
def reconnect_client(name: str):
    client = _manager().reconnect(name)
    return json_response({"message": "MCP client reconnected", "client": client})
