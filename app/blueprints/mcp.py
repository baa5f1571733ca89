"""MCP over HTTP: POST /v1/mcp/tool/execute (run one tool call) and /mcp (the gateway as an MCP server)."""
from __future__ import annotations

import orjson
from flask import Blueprint, Response, request

from app.blueprints.inference import read_json
from app.errors import bad_request
from app.gateway import current_context, current_engine
from app.mcp import manager_for, server_for
from app.mcp.catalog import Access
from app.responses import json_response

bp = Blueprint("mcp", __name__)


def request_access(manager) -> Access:
    """The include headers, or the virtual key's mcp_configs when governance resolves one."""
    environ = request.environ
    vk = manager.vk_resolver(environ) if manager.vk_resolver is not None else None
    return Access(environ.get("HTTP_X_BF_MCP_INCLUDE_CLIENTS"), environ.get("HTTP_X_BF_MCP_INCLUDE_TOOLS"), vk)


@bp.post("/v1/mcp/tool/execute")
def execute_tool():
    form = request.args.get("format") or "chat"
    if form not in ("chat", "responses"):
        raise bad_request(f"unknown format {form!r}; use chat or responses", param="format")
    body = read_json()
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object (one tool call)")
    if form == "responses":
        if body.get("type", "function_call") != "function_call":
            raise bad_request("type must be function_call", param="type")
        call_id, name, raw, where = body.get("call_id"), body.get("name"), body.get("arguments"), ""
    else:
        function = body.get("function")
        if not isinstance(function, dict):
            raise bad_request("Tool function name is required: function must be an object with a name",
                              param="function")
        call_id, name, raw, where = body.get("id"), function.get("name"), function.get("arguments"), "function."
    if not isinstance(name, str) or not name:
        raise bad_request("Tool function name is required", param=f"{where}name")
    arguments = parse_arguments(raw, f"{where}arguments")
    manager = manager_for(current_engine().config)
    entry = manager.resolve(name, request_access(manager))
    result = manager.execute(entry, arguments, request_id=current_context().request_id, source="api")
    if form == "responses":
        return json_response({"type": "function_call_output", "call_id": call_id, "output": result.text})
    return json_response({"role": "tool", "content": {"content_str": result.text}, "tool_call_id": call_id})


def parse_arguments(raw: object, param: str) -> dict:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"{param} is not valid JSON: {exc}", param=param) from None
    if not isinstance(raw, dict):
        raise bad_request(f"{param} must be a JSON object", param=param)
    return raw


@bp.route("/mcp", methods=["GET", "POST", "DELETE"])
def mcp_server():
    manager = manager_for(current_engine().config)
    status, headers, body = server_for(manager).handle(request.environ, request_access(manager))
    response = Response(body, status=status)
    response.headers.clear()
    for name, value in headers:
        if name.lower() != "content-length":
            response.headers.add(name, value)
    return response
