"""/api/governance: virtual keys, teams, customers, budgets and rate limits (app/governance_admin.py does the work)."""
from __future__ import annotations

import logging

from flask import Blueprint, request
from sqlalchemy.exc import SQLAlchemyError

from app.blueprints.inference import read_json
from app.errors import GatewayError, bad_request
from app.gateway import current_context, current_engine
from app.governance_admin import Admin
from app.governance import refusal
from app.responses import error_response, json_response

bp = Blueprint("governance", __name__, url_prefix="/api/governance")
log = logging.getLogger("bifrost.governance")
ROUTES = {"virtual-keys": "virtual_keys", "teams": "teams", "customers": "customers", "budgets": "budgets",
          "rate-limits": "rate_limits"}
CREATED = {"virtual_keys": ("Virtual key created successfully", "virtual_key"),
           "teams": ("Team created successfully", "team"), "customers": ("Customer created successfully", "customer"),
           "budgets": ("Budget created successfully", "budget"),
           "rate_limits": ("Rate limit created successfully", "rate_limit")}


def admin() -> Admin:
    return Admin(current_engine().plugins.get("governance").service)


def kind_of(route: str) -> str:
    kind = ROUTES.get(route)
    if kind is None:
        raise bad_request(f"unknown governance collection {route!r}")
    return kind


def page_args() -> tuple[int, int]:
    values = []
    for name, default in (("limit", 0), ("offset", 0)):
        raw = request.args.get(name)
        try:
            value = int(raw) if raw not in (None, "") else default
        except ValueError:
            raise bad_request(f"{name} must be an integer", param=name) from None
        if value < 0:
            raise bad_request(f"{name} cannot be negative", param=name)
        values.append(value)
    return values[0], values[1]


@bp.get("/virtual-keys/quota")
def quota():
    value = current_context().virtual_key
    if value is None:
        raise refusal("virtual_key_required", 401, "virtual key is required: send it in x-bf-vk")
    return json_response(admin().quota(value))


@bp.get("/<route>")
def listing(route: str):
    limit, offset = page_args()
    return json_response(admin().listing(kind_of(route), limit, offset))


@bp.post("/<route>")
def create(route: str):
    kind = kind_of(route)
    entity = admin().create(kind, read_json())
    message, name = CREATED[kind]
    return json_response({"message": message, name: entity})


@bp.get("/<route>/<entity_id>")
def get(route: str, entity_id: str):
    kind = kind_of(route)
    return json_response({CREATED[kind][1]: admin().get(kind, entity_id)})


@bp.put("/<route>/<entity_id>")
def update(route: str, entity_id: str):
    kind = kind_of(route)
    name = CREATED[kind][1]
    return json_response({"message": f"{name.replace('_', ' ').capitalize()} updated successfully",
                          name: admin().update(kind, entity_id, read_json())})


@bp.delete("/<route>/<entity_id>")
def delete(route: str, entity_id: str):
    kind = kind_of(route)
    admin().delete(kind, entity_id)
    name = CREATED[kind][1]
    return json_response({"message": f"{name.replace('_', ' ').capitalize()} deleted successfully"})


@bp.post("/virtual-keys/<entity_id>/rotate")
def rotate(entity_id: str):
    return json_response({"message": "Virtual key rotated successfully", "virtual_key": admin().rotate(entity_id)})


@bp.errorhandler(SQLAlchemyError)
def store_down(exc: SQLAlchemyError):
    log.error("config store: %s", type(exc).__name__)
    return error_response(GatewayError("config store unavailable; try again shortly", 503,
                                       type="config_store_unavailable", is_bifrost_error=True))
