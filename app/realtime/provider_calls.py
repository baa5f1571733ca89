"""OpenAI's WebRTC call endpoints: create a call with the gateway's offer, hang one up.

Over requests (gevent-cooperative), off the chat hot path. This module, and requests with it
(about 3 MB of RSS with charset_normalizer and certifi), is imported with app/realtime/calls.py,
which the first WebRTC call or hangup of a worker loads (app/blueprints/realtime.py ``_calls``).
OpenAI's contract: ``POST {base}/v1/realtime/calls`` multipart (``sdp``, ``session`` JSON) with
the API key, answered ``201`` + ``Location: /v1/realtime/calls/{id}`` + the SDP answer;
``POST {base}/v1/realtime/calls/{id}/hangup``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import requests

from app.errors import GatewayError
from app.providers.openai import parse_error
from app.realtime import upstream

log = logging.getLogger("bifrost.realtime")

_session = requests.Session()


@dataclass(frozen=True)
class UpstreamCall:
    call_id: str
    answer: str


def create_call(target: upstream.Target, offer_sdp: str, session: dict, timeout: float) -> UpstreamCall:
    """Send the gateway's offer; 502 when the provider refuses, 504 when it does not answer in time."""
    files = {"sdp": (None, offer_sdp), "session": (None, orjson.dumps(session).decode(), "application/json")}
    try:
        reply = _session.post(target.base_url + "/v1/realtime/calls", files=files, headers=target.headers(),
                              timeout=max(timeout, 0.1))
    except requests.Timeout:
        raise upstream.timeout_error(target, "the provider did not answer the SDP exchange in time") from None
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
