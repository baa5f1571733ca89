"""/api/logs: search, inspect and delete the request logs (logs-api.md's shapes).

Thin: it checks the query parameters (a bad one is a 400 naming it), asks the log store
of the logging plugin, and formats the reply.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, request
from sqlalchemy.exc import SQLAlchemyError

from app.errors import GatewayError, bad_request
from app.gateway import current_engine
from app.plugins.metrics import dropped_total
from app.plugins.request_logs import RequestLogs, find
from app.responses import json_response
from app.stores.logs import SORT_COLUMNS, LogFilter, LogStore

bp = Blueprint("api_logs", __name__)


@bp.errorhandler(SQLAlchemyError)
def _store_unreachable(exc: SQLAlchemyError):
    from app.responses import error_response

    return error_response(GatewayError(f"the log store cannot be reached: {exc.__class__.__name__}", 503,
                                       error_type="service_unavailable", code="log_store_unavailable"))

LIST_PARAMS = ("providers", "models", "status", "objects", "stop_reasons", "selected_key_ids", "virtual_key_ids",
               "team_ids", "customer_ids")
TEXT_PARAMS = ("parent_request_id", "request_id", "content_search")
TIME_PARAMS = ("start_time", "end_time")
FLOAT_PARAMS = ("min_latency", "max_latency", "min_cost", "max_cost")
INT_PARAMS = ("min_tokens", "max_tokens")
PAGE_PARAMS = ("limit", "offset", "sort_by", "order")
STATUSES = frozenset({"processing", "success", "error"})
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
BUCKET_SIZES = (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800)
MAX_BUCKETS = 120


@bp.get("/api/logs")
def search():
    store = _store()
    where = _filters(extra=PAGE_PARAMS)
    limit = _int("limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    offset = _int("offset", 0, low=0)
    sort_by = request.args.get("sort_by") or "timestamp"
    if sort_by not in SORT_COLUMNS:
        raise bad_request(f"sort_by must be one of {', '.join(SORT_COLUMNS)}", param="sort_by")
    order = request.args.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise bad_request("order must be asc or desc", param="order")
    rows, stats, has_logs = store.page(where, sort_by, order, limit, offset)
    return json_response({
        "logs": rows,
        "pagination": {"limit": limit, "offset": offset, "sort_by": sort_by, "order": order,
                       "total_count": stats["total_requests"]},
        "stats": stats,
        "has_logs": has_logs,
    })


@bp.get("/api/logs/stats")
def stats():
    return json_response(_store().stats(_filters()))


@bp.get("/api/logs/histogram")
def histogram():
    store = _store()
    where = _filters(extra=("bucket_size",))
    size = _int("bucket_size", 0, low=1) if request.args.get("bucket_size") else _bucket_for(store, where)
    return json_response({"buckets": store.histogram(where, size), "bucket_size": size})


@bp.get("/api/logs/filterdata")
def filterdata():
    return json_response(_store().filterdata())


@bp.get("/api/logs/dropped")
def dropped():
    _plugin()
    return json_response({"dropped_requests": int(dropped_total())})


MCP_LIST_PARAMS = ("clients", "tools", "status", "sources")


@bp.get("/api/logs/mcp")
def mcp_executions():
    """MCP tool executions (their own table): filters request_id, clients, tools, status, sources; newest first."""
    store = _store()
    args = request.args
    for name in args:
        if name not in MCP_LIST_PARAMS + ("request_id", "limit", "offset"):
            raise bad_request(f"unknown query parameter {name}", param=name)
    where: dict = {name: [v.strip() for v in args[name].split(",") if v.strip()] for name in MCP_LIST_PARAMS
                   if args.get(name)}
    if args.get("request_id", "").strip():
        where["request_id"] = args["request_id"].strip()
    limit = _int("limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    offset = _int("offset", 0, low=0)
    rows, total, has_logs = store.mcp_page(where, limit, offset)
    return json_response({"logs": rows, "pagination": {"limit": limit, "offset": offset, "sort_by": "timestamp",
                                                       "order": "desc", "total_count": total},
                          "has_logs": has_logs})


@bp.get("/api/logs/<path:log_id>")
def one(log_id: str):
    row = _store().get(log_id)
    if row is None:
        raise GatewayError(f"log {log_id} not found", 404, error_type="not_found", code="log_not_found")
    return json_response(row)


@bp.delete("/api/logs")
def remove():
    store = _store()
    body = request.get_json(silent=True)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise bad_request('the body must be {"ids": ["<request id>", ...]}', param="ids")
    return json_response({"deleted": store.delete(ids)})


# -- parameters --------------------------------------------------------------------------------


def _plugin() -> RequestLogs:
    plugin = find(current_engine().plugins)
    if plugin is None:
        raise GatewayError("request logging is disabled (client.enable_logging is false)", 404,
                           error_type="invalid_request_error", code="logging_disabled")
    return plugin


def _store() -> LogStore:
    return _plugin().store


def _filters(extra: tuple[str, ...] = ()) -> LogFilter:
    args = request.args
    known = set(LIST_PARAMS + TEXT_PARAMS + TIME_PARAMS + FLOAT_PARAMS + INT_PARAMS + extra) | {"missing_cost_only"}
    for name in args:
        if name not in known:
            raise bad_request(f"unknown query parameter {name}", param=name)
    where = LogFilter()
    for name in LIST_PARAMS:
        if args.get(name):
            setattr(where, name, [item.strip() for item in args[name].split(",") if item.strip()])
    bad = [value for value in where.status if value not in STATUSES]
    if bad:
        raise bad_request(f"status must be processing, success or error, not {bad[0]!r}", param="status")
    where.objects = [value.replace("_", ".") for value in where.objects]
    for name in TEXT_PARAMS:
        value = args.get(name, "").strip()
        setattr(where, name, value or None)
    for name in TIME_PARAMS:
        if args.get(name):
            setattr(where, name, _time(name, args[name]))
    for name in FLOAT_PARAMS:
        if args.get(name):
            setattr(where, name, _number(name, args[name], float))
    for name in INT_PARAMS:
        if args.get(name):
            setattr(where, name, _number(name, args[name], int))
    flag = args.get("missing_cost_only", "").strip().lower()
    if flag not in ("", "true", "false", "1", "0"):
        raise bad_request("missing_cost_only must be true or false", param="missing_cost_only")
    where.missing_cost_only = flag in ("true", "1")
    return where


def _time(name: str, value: str) -> float:
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise bad_request(f"{name} must be an RFC 3339 time, e.g. 2026-12-01T08:00:00Z", param=name) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _number(name: str, value: str, kind: type):
    try:
        number = kind(value)
    except ValueError:
        raise bad_request(f"{name} must be a{'n integer' if kind is int else ' number'}", param=name) from None
    if number < 0 or number != number:
        raise bad_request(f"{name} must not be negative", param=name)
    return number


def _int(name: str, default: int, *, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer", param=name) from None
    if value < low or (high is not None and value > high):
        limits = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise bad_request(f"{name} must be {limits}", param=name)
    return value


def _bucket_for(store: LogStore, where: LogFilter) -> int:
    low, high = where.start_time, where.end_time
    if low is None or high is None:
        found_low, found_high = store.time_range(where)
        low = low if low is not None else found_low
        high = high if high is not None else found_high
    span = (high - low) if low is not None and high is not None else 0
    for size in BUCKET_SIZES:
        if span / size <= MAX_BUCKETS:
            return size
    return BUCKET_SIZES[-1]
