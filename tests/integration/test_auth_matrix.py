"""The auth matrix: admin auth on/off x virtual keys enforced or not x each credential header x each /v1 route.

Each cell is one request to the real gateway (gunicorn, 2 gevent workers) in front of the fake upstream;
the expected status and error type come from one rule (``expected``). No secret may appear in a reply or
in the gateway's log.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import pytest

from tests.gateway_process import GatewayProcess
from tests.governance_support import get, post

VK = "sk-bf-matrix-0000-valid"
ADMIN_USER, ADMIN_PASSWORD = "admin", "Correct-Horse-9b1"
PROVIDER_KEY = "sk-openai-1"


@dataclass(frozen=True)
class Mode:
    auth: bool
    enforce: bool
    inference_open: bool = False  # auth_config.disable_auth_on_inference

    def __str__(self) -> str:
        return f"auth={'on' if self.auth else 'off'}{'+inference-open' if self.inference_open else ''}," \
               f"vk={'enforced' if self.enforce else 'optional'}"


MODES = [Mode(False, False), Mode(False, True), Mode(True, False), Mode(True, True), Mode(True, False, True)]


def basic(user: str, password: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


VK_CREDENTIALS = {
    "x-bf-vk": {"x-bf-vk": VK},
    "bearer-vk": {"authorization": f"Bearer {VK}"},
    "x-api-key-vk": {"x-api-key": VK},
    "x-goog-api-key-vk": {"x-goog-api-key": VK},
    "api-key-vk": {"api-key": VK},
}
OTHER_CREDENTIALS = {
    "none": {},
    "basic-admin": basic(ADMIN_USER, ADMIN_PASSWORD),
    "basic-wrong-password": basic(ADMIN_USER, "wrong-password"),
    "bearer-session": None,  # filled with a fresh session token when auth is on
    "bearer-provider-key": {"authorization": f"Bearer {PROVIDER_KEY}"},  # not sk-bf-: not a virtual key
    "x-api-key-not-vk": {"x-api-key": "plain-key"},
    "unknown-vk": {"x-bf-vk": "sk-bf-does-not-exist"},
    "unknown-bearer-vk": {"authorization": "Bearer sk-bf-does-not-exist"},
}
SURFACES = {
    "chat": ("POST", "/v1/chat/completions", {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    "chat-stream": ("POST", "/v1/chat/completions", {"model": "openai/gpt-4o-mini", "stream": True,
                                                     "messages": [{"role": "user", "content": "hi"}]}),
    "text": ("POST", "/v1/completions", {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
    "models": ("GET", "/v1/models", None),
}


def expected(mode: Mode, credential: str) -> tuple[int, str | None]:
    if credential in VK_CREDENTIALS:
        return 200, None
    if credential.startswith("unknown"):
        return 403, "virtual_key_not_found"
    admin = mode.auth and credential in ("basic-admin", "bearer-session")
    if mode.auth and not mode.inference_open and not admin:
        return 401, "unauthorized"
    if mode.enforce:
        return 401, "virtual_key_required"
    return 200, None


def config(fake_url: str, mode: Mode) -> dict:
    return {
        "providers": {"openai": {"keys": [{"name": "oa", "value": PROVIDER_KEY, "models": ["*"]}],
                                 "network_config": {"base_url": fake_url}}},
        "client": {"enforce_auth_on_inference": mode.enforce, "whitelisted_routes": ["/open-area/*", "/exact-open"]},
        "auth_config": {"is_enabled": mode.auth, "admin_username": ADMIN_USER, "admin_password": "env.TEST_ADMIN_PASSWORD",
                        "disable_auth_on_inference": mode.inference_open},
        "governance": {"virtual_keys": [{"id": "vk-matrix", "name": "matrix", "value": VK}]},
    }


@pytest.fixture(scope="module", params=MODES, ids=str)
def server(request, fake):
    mode = request.param
    gateway = GatewayProcess(config(fake.url, mode), workers=2, env={"TEST_ADMIN_PASSWORD": ADMIN_PASSWORD})
    gateway.start()
    token = None
    if mode.auth:
        status, body = post(gateway.url, "/api/session/login", {"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert status == 200 and body["token"]
        token = body["token"]
    yield mode, gateway, token
    gateway.stop()
    log = gateway.log()
    for secret in (ADMIN_PASSWORD, VK, PROVIDER_KEY) + ((token,) if token else ()):
        assert secret not in log, "a secret reached the gateway log"


def headers_for(credential: str, token: str | None) -> dict:
    if credential in VK_CREDENTIALS:
        return VK_CREDENTIALS[credential]
    if credential == "bearer-session":
        return {"authorization": f"Bearer {token or 'no-session-token'}"}
    return OTHER_CREDENTIALS[credential]


@pytest.mark.integration
@pytest.mark.parametrize("surface", list(SURFACES))
@pytest.mark.parametrize("credential", list(VK_CREDENTIALS) + list(OTHER_CREDENTIALS))
def test_auth_matrix_cell(server, surface, credential):
    mode, gateway, token = server
    method, path, body = SURFACES[surface]
    status, reply = post(gateway.url, path, body, headers_for(credential, token), method=method)
    want_status, want_type = expected(mode, credential)
    assert status == want_status, (mode, credential, surface, reply)
    if status == 200 and surface == "chat-stream":
        assert reply["raw"].rstrip().endswith("data: [DONE]")
    if want_type:
        assert reply["type"] == want_type and reply["is_bifrost_error"] is False and reply["status_code"] == status
    text = str(reply)
    for secret in (ADMIN_PASSWORD, VK, PROVIDER_KEY, token or "\0"):
        assert secret not in text


@pytest.mark.integration
@pytest.mark.parametrize("credential", ["none", "basic-admin", "basic-wrong-password", "bearer-session", "x-bf-vk",
                                        "bearer-vk"])
def test_management_api_needs_admin_credentials(server, credential):
    mode, gateway, token = server
    status, reply = get(gateway.url, "/api/governance/virtual-keys", headers_for(credential, token))
    admin = credential in ("basic-admin", "bearer-session")
    if not mode.auth or admin:
        assert status == 200 and reply["count"] == 1
        assert reply["virtual_keys"][0]["value"] != VK  # masked outside creation and rotation
    else:
        assert status == 401 and reply["type"] == "unauthorized"


@pytest.mark.integration
def test_open_routes_and_whitelist(server):
    mode, gateway, _ = server
    assert get(gateway.url, "/health")[0] == 200
    status, body = get(gateway.url, "/api/session/is-auth-enabled")
    assert status == 200 and body["is_auth_enabled"] is mode.auth and body["has_valid_token"] is False
    assert get(gateway.url, "/open-area/anything")[0] == 404  # whitelisted prefix: routing answers
    assert get(gateway.url, "/exact-open")[0] == 404
    assert get(gateway.url, "/not-open")[0] == (401 if mode.auth and not mode.inference_open else 404)
    assert get(gateway.url, "/api/not-a-route")[0] == (401 if mode.auth else 404)


@pytest.mark.integration
def test_session_cookie_login_and_logout_on_every_worker(server):
    mode, gateway, _ = server
    if not mode.auth:
        status, body = post(gateway.url, "/api/session/login", {"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert status == 400
        return
    status, body = post(gateway.url, "/api/session/login", {"username": ADMIN_USER, "password": "nope"})
    assert status == 401 and "nope" not in str(body)
    assert post(gateway.url, "/api/session/login", {"username": ADMIN_USER})[1]["error"]["param"] == "password"
    import requests

    reply = requests.post(gateway.url + "/api/session/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
                          timeout=10)
    assert reply.status_code == 200
    cookie = reply.cookies.get("token")
    assert cookie == reply.json()["token"] and "HttpOnly" in reply.headers["set-cookie"]
    assert "Max-Age=2592000" in reply.headers["set-cookie"]  # 30 days
    # A fresh session works at once on both workers (new connections spread over them).
    for _ in range(6):
        assert get(gateway.url, "/api/governance/teams", {"cookie": f"token={cookie}"})[0] == 200
    status, body = get(gateway.url, "/api/session/is-auth-enabled", {"authorization": f"Bearer {cookie}"})
    assert body["has_valid_token"] is True
    assert post(gateway.url, "/api/session/logout", {}, {"authorization": f"Bearer {cookie}"})[0] == 200
    time.sleep(1.0)
    for _ in range(6):
        assert get(gateway.url, "/api/governance/teams", {"authorization": f"Bearer {cookie}"})[0] == 401
