"""WebRTC calls of this worker: opening one, watching it, ending it, and the worker's stop.

The gevent side (this module) does HTTP with the provider; the media loop does the peers.
Each call has a watcher greenlet that waits for its bridge to end, then hangs up upstream
and reports the call. ``shutdown`` (gunicorn's worker_exit hook) ends every call, so a
reload or ``max_requests`` never leaves a provider call billing. This module (with requests,
through provider_calls) is imported by a worker's first WebRTC call or hangup
(app/blueprints/realtime.py ``_calls``), the media modules by its first call (``_media``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gevent

from app.config import GatewayConfig, RealtimeConfig
from app.context import RequestContext
from app.errors import GatewayError
from app.realtime import provider_calls, secrets, upstream, usage
from app.realtime.sdp import Offer
from app.realtime.usage import report_call

if TYPE_CHECKING:
    from app.realtime import bridge as bridge_mod


def _media():
    """The media modules (aiortc, PyAV, the asyncio thread; ~46 MB), imported on the first WebRTC call.

    Called from request greenlets, which run on the worker's main thread, never from the media
    thread itself (see app/realtime/loop.py); after the first call it is a sys.modules look-up.
    """
    from app.realtime import bridge, loop
    return loop, bridge

log = logging.getLogger("bifrost.realtime")


@dataclass
class Call:
    id: str
    target: upstream.Target
    upstream_id: str
    bridge: bridge_mod.Bridge
    started: float = field(default_factory=time.time)
    virtual_key: str | None = None
    request_id: str | None = None
    finishing: bool = False
    hung_up: bool = False  # set once the provider was told
    watcher: gevent.Greenlet | None = None
    accounting: usage.Accounting | None = None  # the call through the plugins (logs, metrics, budgets)


_calls: dict[str, Call] = {}  # this worker's live calls (media state is per process by nature)
_reserved = 0


def active() -> int:
    return len(_calls) + _reserved


def open_call(settings: RealtimeConfig, target: upstream.Target, offer: Offer, session: dict,
              ctx: RequestContext | None = None, virtual_key: str | None = None) -> tuple[str, str]:
    """Relay a new call; returns the gateway's call id and the SDP answer for the client.

    The provider's share of the time (its HTTP answer, its ICE/DTLS) goes to ``ctx.upstream_seconds``;
    ``virtual_key`` is kept for the call's summary (budgets attribute usage by it).
    """
    loop, bridge_mod = _media()
    global _reserved
    if active() >= settings.max_sessions_per_worker:
        raise GatewayError(f"realtime capacity reached ({settings.max_sessions_per_worker} calls per worker)", 503,
                           type="request_dropped", code="realtime_capacity", is_bifrost_error=True)
    accounting = None
    if ctx is not None:  # governance admits the call (provider, model, limits); logs and metrics see it start
        from app.gateway import current_engine

        accounting = usage.open_call(current_engine(), ctx, target.provider.name, target.model, virtual_key)
    _reserved += 1
    deadline = time.monotonic() + settings.handshake_timeout_seconds
    bridge = upstream_call = None
    try:
        bridge = loop.run(bridge_mod.create("pending", offer, settings))
        try:
            offer_sdp = loop.run(bridge.make_upstream_offer(), timeout=_left(deadline))
        except bridge_mod.OfferRejected as exc:  # aiortc refused the offer after our checks (e.g. no common codec)
            raise GatewayError(f"sdp offer cannot be answered: {exc}", 400, error_type="invalid_request_error",
                               param="sdp") from None
        waited = time.perf_counter()
        upstream_call = provider_calls.create_call(target, offer_sdp, session, timeout=_left(deadline))
        try:
            answer = loop.run(bridge.finish(upstream_call.answer, timeout=_left(deadline)), timeout=_left(deadline) + 1)
            if ctx is not None:
                ctx.upstream_seconds += time.perf_counter() - waited
        except (TimeoutError, gevent.Timeout):
            raise upstream.timeout_error(target, "upstream ICE/DTLS did not complete in time") from None
        except ConnectionError as exc:
            raise GatewayError(f"realtime media connection to {target.provider.name} failed: {exc}", 502,
                               is_bifrost_error=True, provider=target.provider.name, model=target.model,
                               request_type="realtime") from None
    except gevent.Timeout:
        _abandon(bridge, target, upstream_call)
        raise upstream.timeout_error(target, "the realtime exchange did not complete in time") from None
    except BaseException as exc:
        _abandon(bridge, target, upstream_call)
        if accounting is not None:
            accounting.finish(error=exc if isinstance(exc, GatewayError) else GatewayError(
                f"realtime call failed: {exc.__class__.__name__}", 500, is_bifrost_error=True))
        raise
    finally:
        _reserved -= 1
    call_id = secrets.call_id(target.provider.name, upstream_call.call_id)
    bridge.call_id = call_id
    call = _calls[call_id] = Call(call_id, target, upstream_call.call_id, bridge, virtual_key=virtual_key,
                                  request_id=ctx.request_id if ctx else None, accounting=accounting)
    call.watcher = gevent.spawn(_watch, call)
    log.info("realtime call %s opened (%s/%s, upstream %s, passthrough=%s)", call_id, target.provider.name,
             target.model, upstream_call.call_id, bridge.passthrough)
    return call_id, answer


def _left(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


def _abandon(bridge: bridge_mod.Bridge | None, target: upstream.Target, upstream_call) -> None:
    loop = _media()[0]
    try:
        if bridge is not None:
            loop.run(bridge.close(), timeout=5)
    except BaseException:  # noqa: BLE001 - cleanup must not hide the original error
        log.exception("realtime: closing a failed bridge")
    if upstream_call is not None:
        provider_calls.hangup(target.base_url, target.headers(), upstream_call.call_id)


def _watch(call: Call) -> None:
    loop = _media()[0]
    try:
        reason = loop.run(call.bridge.wait_ended(), timeout=None)
    except BaseException as exc:  # noqa: BLE001
        reason = f"watcher stopped: {exc.__class__.__name__}"
    _finish(call, reason)


def _finish(call: Call, reason: str) -> None:
    if call.finishing:
        return
    call.finishing = True
    _calls.pop(call.id, None)
    provider_calls.hangup(call.target.base_url, call.target.headers(), call.upstream_id)
    call.hung_up = True
    bridge = call.bridge
    report_call({
        "call_id": call.id, "transport": "webrtc", "provider": call.target.provider.name,
        "model": call.target.model, "upstream_call_id": call.upstream_id, "request_id": call.request_id,
        "key": call.target.key.name if call.target.key else None, "virtual_key": call.virtual_key,
        "duration_s": round(time.time() - call.started, 3), "reason": reason,
        **bridge.usage.as_dict(), **bridge.summary(),
    }, call.accounting)


def end_call(config: GatewayConfig, call_id: str, reason: str = "client hangup") -> None:
    """``POST /v1/realtime/calls/{id}/hangup``: end it here, or upstream if another worker holds it."""
    call = _calls.get(call_id)
    if call is None:
        provider, upstream_id = secrets.parse_call_id(call_id)  # 404 unless the id is one of ours
        _hang_up_elsewhere(config, provider, upstream_id)
        return
    loop = _media()[0]
    loop.run(_end(call.bridge, reason), timeout=5)
    if call.watcher is not None:
        call.watcher.join(timeout=5)


async def _end(bridge: bridge_mod.Bridge, reason: str) -> None:
    bridge.end(reason)
    await bridge.wait_ended()


def _hang_up_elsewhere(config: GatewayConfig, provider: str, upstream_id: str) -> None:
    """The call lives in another worker (or is over): hanging up upstream ends it there too."""
    provider_config = config.providers.get(provider)
    if provider_config is None:
        raise GatewayError("realtime call not found", 404, error_type="invalid_request_error")
    target = upstream.Target(provider_config, "", None if provider_config.keyless else provider_config.keys[0])
    log.info("realtime: call of %s/%s is not in this worker; hanging it up upstream", provider, upstream_id)
    if not provider_calls.hangup(target.base_url, target.headers(), upstream_id):
        raise GatewayError("realtime call not found or already ended", 404, error_type="invalid_request_error")


def shutdown(reason: str = "worker stopping") -> None:
    """End every call of this worker and hang each one up upstream (gunicorn worker_exit)."""
    calls = list(_calls.values())
    if calls:
        log.info("realtime: ending %d call(s): %s", len(calls), reason)
        gevent.joinall([gevent.spawn(_shutdown_one, call, reason) for call in calls], timeout=10)


def _shutdown_one(call: Call, reason: str) -> None:
    loop = _media()[0]
    try:
        loop.run(_end(call.bridge, reason), timeout=3)
    except BaseException:  # noqa: BLE001 - hang up upstream whatever happened to the media
        log.exception("realtime: closing call %s", call.id)
    if call.watcher is not None:
        call.watcher.join(timeout=5)  # it hangs up and reports
    if not call.hung_up:
        provider_calls.hangup(call.target.base_url, call.target.headers(), call.upstream_id)
        call.hung_up = True
