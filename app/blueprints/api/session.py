"""/api/session: log in (a 30-day session token and cookie), log out, and whether auth is on."""
from __future__ import annotations

from flask import Blueprint, current_app, request

from app.auth import SESSION_COOKIE, SESSION_SECONDS, Auth
from app.blueprints.inference import read_json
from app.errors import bad_request
from app.responses import json_response

bp = Blueprint("session", __name__, url_prefix="/api/session")
AUTH = "bifrost.auth"


def current_auth() -> Auth:
    return current_app.extensions[AUTH]


@bp.post("/login")
def login():
    auth = current_auth()
    body = read_json()
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    for field in ("username", "password"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise bad_request(f"{field} is required", param=field)
    if not auth.enabled:
        raise bad_request("authentication is not enabled (auth_config.is_enabled)")
    token, expires_at = auth.login(body["username"], body["password"])
    response = json_response({"message": "Login successful", "token": token, "expires_at": int(expires_at)})
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="Lax",
                        secure=request.is_secure, path="/")
    return response


@bp.post("/logout")
def logout():
    current_auth().logout(request.environ)
    response = json_response({"message": "Logout successful"})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@bp.get("/is-auth-enabled")
def is_auth_enabled():
    auth = current_auth()
    return json_response({"is_auth_enabled": auth.enabled,
                          "has_valid_token": bool(auth.enabled and auth.admin_ok(request.environ))})
