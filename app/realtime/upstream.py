"""The provider side of realtime: which providers have it, and OpenAI's call endpoints.

Uses requests (gevent-cooperative), off the chat hot path. OpenAI's contract:
``POST {base}/v1/realtime/calls`` multipart (``sdp``, ``session`` JSON) with the API key,
answered ``201`` + ``Location: /v1/realtime/calls/{id}`` + the SDP answer;
``POST {base}/v1/realtime/calls/{id}/hangup``; the WebSocket at ``{base}/v1/realtime?model=``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import requests

from app.config import GatewayConfig, Key, ProviderConfig
from app.errors import GatewayError, bad_request
from app.keys import select_key
from app.providers.catalog import OPENAI_COMPATIBLE
from app.providers.openai import parse_error

log = logging.getLogger("bifrost.realtime")

REALTIME_KINDS = frozenset({"openai"})  # adapters whose upstream speaks OpenAI Realtime
_session = requests.Session()


@dataclass(frozen=True)
class Target:
    provider: ProviderConfig
    model: str
    key: Key | None

    @property
    def base_url(self) -> str:
        spec = OPENAI_COMPATIBLE.get(self.provider.kind)
        return (self.provider.network.base_url or (spec.base_url if spec else "")).rstrip("/")

    def headers(self) -> dict[str, str]:
        headers = dict(self.provider.network.extra_headers)
        if self.key is not None and self.key.value:
            headers["Authorization"] = f"Bearer {self.key.value}"
        return headers


def resolve(config: GatewayConfig, model: object, *, param: str, default_provider: str | None = None,
            pinned_key: str | None = None) -> Target:
    """``provider/model`` to a configured realtime provider, its bare model and a key."""
    if not isinstance(model, str) or not model.strip():
        raise bad_request(f"{param} is required", param=param)
    provider_name, sep, bare = model.partition("/")
    if not sep:
        if default_provider is None:
            raise bad_request(f"{param} must be in provider/model form (e.g. openai/gpt-realtime), got {model!r}",
                              param=param)
        provider_name, bare = default_provider, model
    if not provider_name or not bare:
        raise bad_request(f"{param} must be in provider/model form, got {model!r}", param=param)
    provider = config.providers.get(provider_name)
    if provider is None:
        raise bad_request(f"provider {provider_name} not found", param=param)
    if provider.kind not in REALTIME_KINDS:  # openai, and custom providers built on it
        raise GatewayError(f"realtime is not supported by {provider_name} provider", 400,
                           error_type="invalid_request_error", code="unsupported_operation", param=param,
                           provider=provider_name, model=bare, request_type="realtime")
    key = None if provider.keyless else select_key(provider.keys, bare, pinned=pinned_key)
    return Target(provider, bare, key)


@dataclass(frozen=True)
class UpstreamCall:
    call_id: str
    answer: str


def create_call(target: Target, offer_sdp: str, session: dict, timeout: float) -> UpstreamCall:
    """Send the gateway's offer; 502 when the provider refuses, 504 when it does not answer in time."""
    files = {"sdp": (None, offer_sdp), "session": (None, orjson.dumps(session).decode(), "application/json")}
    try:
        reply = _session.post(target.base_url + "/v1/realtime/calls", files=files, headers=target.headers(),
                              timeout=max(timeout, 0.1))
    except requests.Timeout:
        raise timeout_error(target, "the provider did not answer the SDP exchange in time") from None
    except requests.RequestException as exc:
        raise GatewayError(f"realtime call to {target.provider.name} failed: {exc.__class__.__name__}", 502,
                           is_bifrost_error=True, provider=target.provider.name, model=target.model,
                           request_type="realtime") from None
    if reply.status_code not in (200, 201):
        try:
            message, error_type, code, param = parse_error(reply.json())
        except ValueError:
            message, error_type, code, param = reply.text[:200] or reply.reason, None, None, None
        raise GatewayError(f"{target.provider.name} rejected the realtime call ({reply.status_code}): {message}",
                           502, error_type=error_type, code=code or f"upstream_{reply.status_code}", param=param,
                           provider=target.provider.name, model=target.model, request_type="realtime")
    location = reply.headers.get("Location") or ""
    upstream_id = location.rstrip("/").rsplit("/", 1)[-1]
    if not upstream_id or "sdp" not in (reply.headers.get("Content-Type") or "") or not reply.text.startswith("v=0"):
        raise GatewayError(f"{target.provider.name} answered the realtime call without an SDP answer and Location",
                           502, is_bifrost_error=True, provider=target.provider.name, model=target.model,
                           request_type="realtime")
    return UpstreamCall(upstream_id, reply.text)


def hangup(target_base_url: str, headers: dict, upstream_id: str) -> bool:
    try:
        reply = _session.post(f"{target_base_url}/v1/realtime/calls/{upstream_id}/hangup", headers=headers, timeout=5)
    except requests.RequestException as exc:
        log.warning("realtime: hangup of upstream call %s failed: %s", upstream_id, exc)
        return False
    if reply.status_code >= 300:
        log.warning("realtime: hangup of upstream call %s answered %d", upstream_id, reply.status_code)
    return reply.status_code < 300


def timeout_error(target: Target, message: str) -> GatewayError:
    return GatewayError(message, 504, type="request_timed_out", is_bifrost_error=True,
                        provider=target.provider.name, model=target.model, request_type="realtime",
                        allow_fallbacks=False)


def websocket_url(target: Target) -> str:
    base = target.base_url
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/realtime?model={requests.utils.quote(target.model)}"
