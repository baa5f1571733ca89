"""Governance state of one worker: the snapshot of virtual keys it enforces, and the counters.

The hot path reads an immutable in-memory snapshot built from the config store; a
greenlet polls the store's version number and rebuilds the snapshot when another
worker or instance changed something, and a request with a key the snapshot lacks
catches up with the store before it is refused (one read at a time, shared). Limits
are counters in the counter store (app/stores/counters.py), admitted before a call and
settled after it.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import gevent
from gevent.event import AsyncResult

from app.config import app_dir
from app.errors import GatewayError
from app.governance_schemas import parse_time
from app.stores.config_store import ConfigStore
from app.stores.counters import AMOUNT, COUNT, NANO_USD, Counters, Meter, StoreUnavailable, Window, make_counters

log = logging.getLogger("bifrost.governance")

POLL_SECONDS = 0.25
CHECKPOINT_SECONDS = 1.0  # how often the embedded counters are flushed (LMDB) or checkpointed (SQLite), in a thread
OUTAGE_LOG_EVERY = 60.0
RETRY_AFTER = 1.0  # seconds an unreachable counter store is not asked again
RELOAD_WAIT = 5.0  # seconds a request waits for a read of the config store before it counts as unreachable


class StoreUnreachable(Exception):
    """The config store could not answer a lookup."""


def refusal(decision: str, status: int, message: str) -> GatewayError:
    """A governance decision as the reference sends it: top-level type, no fallback."""
    return GatewayError(message, status, type=decision, is_bifrost_error=False, allow_fallbacks=False)


# -- the snapshot: entities resolved into what a request needs ------------------------------------


@dataclass(frozen=True)
class ProviderRoute:
    """One provider config of a virtual key."""

    id: str
    provider: str
    weight: float
    allowed_models: frozenset[str] | None  # None: every model
    blacklisted_models: frozenset[str]
    key_ids: frozenset[str] | None  # None: every key of the provider
    meters: tuple[Meter, ...]

    def allows(self, model: str) -> bool:
        if model in self.blacklisted_models:
            return False
        return self.allowed_models is None or model in self.allowed_models


@dataclass(frozen=True)
class VirtualKey:
    id: str
    name: str
    value: str
    is_active: bool
    expires_at: float | None
    allow_all_providers: bool
    team: tuple[str, str] | None  # (id, name)
    customer: tuple[str, str] | None
    routes: tuple[ProviderRoute, ...]
    meters: tuple[Meter, ...]  # the key's own, its team's and its customer's
    attribution: Mapping[str, Any] = field(default_factory=dict)
    chains: Mapping[str | None, tuple[Meter, ...]] = field(default_factory=dict)  # provider -> ordered meters
    key_filter: Mapping[str, frozenset[str]] | None = None  # provider -> the key_ids its config allows
    mcp_configs: tuple[Mapping[str, Any], ...] = ()  # the MCP clients and tools it may use (app/mcp/catalog.Access)

    def chain(self, route: ProviderRoute | None) -> tuple[Meter, ...]:
        """Every meter a request through ``route`` is admitted against, in the order they are checked."""
        return self.chains[route.provider if route is not None else None]

    def route(self, provider: str) -> ProviderRoute | None:
        for route in self.routes:
            if route.provider == provider:
                return route
        return None


def rate_limit_meters(limit: Mapping[str, Any] | None, label: str) -> list[Meter]:
    if not limit:
        return []
    meters = []
    aligned = bool(limit.get("calendar_aligned"))
    if limit.get("request_max_limit") is not None:
        meters.append(Meter(f"rl:{limit['id']}:requests", COUNT, int(limit["request_max_limit"]),
                            Window.parse(limit.get("request_reset_duration") or "1m", aligned),
                            "request_limited", f"{label} request limit"))
    if limit.get("token_max_limit") is not None:
        meters.append(Meter(f"rl:{limit['id']}:tokens", AMOUNT, int(limit["token_max_limit"]),
                            Window.parse(limit.get("token_reset_duration") or "1m", aligned),
                            "token_limited", f"{label} token limit"))
    return meters


def budget_meters(budget: Mapping[str, Any] | None, label: str) -> list[Meter]:
    if not budget:
        return []
    return [Meter(f"budget:{budget['id']}", AMOUNT, round(float(budget["max_limit"]) * NANO_USD),
                  Window.parse(budget.get("reset_duration") or "1M", bool(budget.get("calendar_aligned"))),
                  "budget_exceeded", f"{label} budget")]


_ORDER = {"request_limited": 0, "token_limited": 1, "budget_exceeded": 2}


def ordered(meters: Sequence[Meter]) -> tuple[Meter, ...]:
    """Request limits first, then token limits, then budgets: the reference's order of checks."""
    return tuple(sorted(meters, key=lambda m: _ORDER[m.decision]))


class Snapshot:
    def __init__(self, version: int, entities: Mapping[str, list[dict]]) -> None:
        self.version = version
        self.entities = {kind: {e["id"]: e for e in items} for kind, items in entities.items()}
        self.by_value: dict[str, VirtualKey] = {}
        for vk in self.entities.get("virtual_keys", {}).values():
            try:
                self.by_value[vk["value"]] = self._resolve(vk)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("virtual key %s is unusable and refused: %s", vk.get("id"), exc)

    def _get(self, kind: str, entity_id: Any) -> dict | None:
        return self.entities.get(kind, {}).get(entity_id) if entity_id else None

    def _budgets(self, holder: Mapping[str, Any], label: str) -> list[Meter]:
        """budget_id, and the newer budgets[] (ids, or inline objects from config.json)."""
        meters = budget_meters(self._get("budgets", holder.get("budget_id")), label)
        for item in holder.get("budgets") or ():
            budget = item if isinstance(item, dict) else self._get("budgets", item)
            if budget and budget.get("id") != holder.get("budget_id"):
                meters += budget_meters(budget, label)
        return meters

    def _resolve(self, vk: dict) -> VirtualKey:
        team = self._get("teams", vk.get("team_id"))
        customer = self._get("customers", vk.get("customer_id") or (team or {}).get("customer_id"))
        meters = rate_limit_meters(self._get("rate_limits", vk.get("rate_limit_id")), "virtual key")
        meters += self._budgets(vk, "virtual key")
        for owner, label in ((team, "team"), (customer, "customer")):
            if owner:
                meters += rate_limit_meters(self._get("rate_limits", owner.get("rate_limit_id")), label)
                meters += self._budgets(owner, label)
        routes = []
        for index, pc in enumerate(vk.get("provider_configs") or ()):
            allowed = pc.get("allowed_models") or []
            keys = pc.get("key_ids") or []
            label = f"provider config {pc['provider']}"
            routes.append(ProviderRoute(
                id=str(pc.get("id") or index), provider=pc["provider"], weight=float(pc.get("weight", 1.0) or 0.0),
                allowed_models=None if not allowed or "*" in allowed else frozenset(allowed),
                blacklisted_models=frozenset(pc.get("blacklisted_models") or ()),
                key_ids=frozenset(keys) if keys else None,
                meters=tuple(rate_limit_meters(self._get("rate_limits", pc.get("rate_limit_id")), label)
                             + self._budgets(pc, label)),
            ))
        attribution = {"virtual_key_id": vk["id"], "virtual_key_name": vk.get("name") or ""}
        if vk.get("disable_content_logging"):
            attribution["disable_content_logging"] = True
        if team:
            attribution.update(team_id=team["id"], team_name=team.get("name") or "")
        if customer:
            attribution.update(customer_id=customer["id"], customer_name=customer.get("name") or "")
        return VirtualKey(
            id=vk["id"], name=vk.get("name") or "", value=vk["value"], is_active=vk.get("is_active", True) is not False,
            expires_at=parse_time(vk.get("expires_at")), allow_all_providers=bool(vk.get("allow_all_providers")),
            team=(team["id"], team.get("name") or "") if team else None,
            customer=(customer["id"], customer.get("name") or "") if customer else None,
            routes=tuple(routes), meters=tuple(meters), attribution=attribution,
            chains={None: ordered(meters), **{r.provider: ordered(meters + list(r.meters)) for r in routes}},
            key_filter={r.provider: r.key_ids for r in routes if r.key_ids is not None} or None,
            mcp_configs=tuple(item for item in vk.get("mcp_configs") or () if isinstance(item, dict)),
        )


# -- the worker's governance service ------------------------------------------------------------------


@dataclass
class StoreRead:
    """A read of the config store in flight; its result is True once its snapshot is installed."""

    number: int  # reads begun before it, plus one
    result: AsyncResult = field(default_factory=AsyncResult)


@dataclass
class Admission:
    """What one request holds in the counters until it is settled."""

    meters: tuple[Meter, ...]
    reserves: tuple[int, ...]
    route: ProviderRoute | None = None  # the provider config it was admitted through


class Governance:
    def __init__(self, config: Any, *, clock: Callable[[], float] = time.time, poll: bool = True) -> None:
        raw = config.raw or {}
        section = raw.get("governance") or {}
        client = raw.get("client") or {}
        self.enforce = bool(client.get("enforce_auth_on_inference") or client.get("enforce_governance_header"))
        self.on_store_error = str(section.get("on_store_error") or "deny")
        self.clock = clock
        self.store = ConfigStore(raw.get("config_store"))
        self.counters: Counters = make_counters(raw.get("kv_store"), app_dir())
        self.counters.on_lost_settle = self._keep
        self.store.seed(section)  # checked by app.config at load time
        self.snapshot = Snapshot(*self.store.load_all())
        self.on_change: list[Callable[[], None]] = []  # e.g. auth drops its cached sessions
        self._pending: deque[tuple[tuple[Meter, ...], tuple[int, ...], tuple[int, ...]]] = deque(maxlen=100_000)
        self._outage_logged = 0.0
        self._down_until = 0.0
        self._reads_begun = 0
        self._read_in_flight: StoreRead | None = None
        self._poller = gevent.spawn(self._poll) if poll else None

    # -- snapshot ---------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Catch up with the store (every write bumps its version); True when a newer snapshot came of it."""
        before = self.snapshot
        return self._catch_up() is not before

    def _catch_up(self) -> Snapshot:
        """The current snapshot, once it holds every change committed before this call.

        One read of the store at a time: callers that come while one is in flight wait for it
        rather than read too. That read may have begun before a change they must see, so it does
        not count for them: they share the next one, begun after they came.
        """
        needed = self._reads_begun + 1
        deadline = time.monotonic() + RELOAD_WAIT
        while True:
            read = self._read_in_flight
            if read is None:
                return self._read_store()
            try:
                done = read.result.get(timeout=max(0.0, deadline - time.monotonic()))
            except gevent.Timeout:
                raise StoreUnreachable(f"config store: no answer within {RELOAD_WAIT:g} s") from None
            except Exception:
                if read.number >= needed:
                    raise
                continue
            if done and read.number >= needed:
                return self.snapshot

    def _read_store(self) -> Snapshot:
        self._reads_begun += 1
        read = self._read_in_flight = StoreRead(self._reads_begun)
        try:
            # Unmoved: the current snapshot was read at this version, after every change it counts.
            if self.store.version() != self.snapshot.version:
                self._install(Snapshot(*self.store.load_all()))
        except Exception as exc:
            read.result.set_exception(exc)
            raise
        except BaseException:  # this greenlet was killed or timed out: the others read again
            read.result.set(False)
            raise
        finally:
            self._read_in_flight = None
        read.result.set(True)
        return self.snapshot

    def _install(self, snapshot: Snapshot) -> Snapshot:
        """Make ``snapshot`` current unless a newer one already is; returns the current one."""
        if snapshot.version < self.snapshot.version:
            return self.snapshot
        self.snapshot = snapshot
        for callback in self.on_change:
            callback()
        return snapshot

    def _poll(self) -> None:
        checkpointed = time.monotonic()
        while True:
            gevent.sleep(POLL_SECONDS)
            try:
                self.refresh()
                self._retry_pending()
            except Exception as exc:  # the store is down: keep the last snapshot
                self._outage(f"config store poll failed: {type(exc).__name__}")
            if time.monotonic() - checkpointed >= CHECKPOINT_SECONDS:
                checkpointed = time.monotonic()
                try:  # the embedded counters' fsync or WAL checkpoint, off the event loop (app/stores/counters*.py)
                    gevent.get_hub().threadpool.apply(self.counters.checkpoint)
                except Exception as exc:
                    log.warning("governance counters: checkpoint failed: %s", exc)

    def lookup(self, value: str) -> VirtualKey | None:
        """The virtual key with this value; raises the store's error when a miss cannot be checked."""
        found = self.snapshot.by_value.get(value)
        if found is None:
            # Created a moment ago on another worker? Ask the store, then look in whatever snapshot
            # is current by then: the poller's read may have installed the key meanwhile.
            found = self._catch_up().by_value.get(value)
        return found

    def authenticate(self, value: str) -> VirtualKey:
        """The virtual key a request presents, or the refusal: not found, inactive, expired, store down."""
        try:
            vk = self.lookup(value)
        except Exception as exc:  # a miss we cannot check is not an invalid key
            refused = self.unavailable(StoreUnreachable(f"config store unreachable: {type(exc).__name__}"))
            if refused is not None:
                raise refused from None
            vk = None  # on_store_error: allow admits known keys only; this one cannot be known
        if vk is None:
            raise refusal("virtual_key_not_found", 403, "Invalid virtual key")
        if not vk.is_active:
            raise refusal("virtual_key_blocked", 403, "virtual key is inactive")
        if vk.expires_at is not None and self.clock() >= vk.expires_at:
            raise refusal("virtual_key_blocked", 403, "virtual key has expired")
        return vk

    # -- counters ---------------------------------------------------------------------------------

    def _outage(self, message: str) -> None:
        now = time.monotonic()
        if now - self._outage_logged >= OUTAGE_LOG_EVERY:
            self._outage_logged = now
            log.error("governance: %s (logged once a minute while it lasts)", message)

    def unavailable(self, exc: Exception) -> GatewayError | None:
        """The store is down: the refusal to send, or None when admitting anyway (on_store_error: allow)."""
        self._outage(str(exc))
        if self.on_store_error == "allow":
            return None
        return refusal("governance_store_unavailable", 503, "governance store unavailable; try again shortly")

    def admit(self, meters: Sequence[Meter], reserves: Sequence[int]) -> int:
        """-1 admitted, else the index of the refusing meter. Raises StoreUnavailable."""
        if not meters:
            return -1
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable("counter store unreachable (retrying within a second)")
        try:
            return self.counters.admit(meters, reserves, self.clock())
        except StoreUnavailable:
            # Requests fail fast for a second instead of each waiting for a connect timeout.
            self._down_until = time.monotonic() + RETRY_AFTER
            raise

    def settle(self, meters: Sequence[Meter], releases: Sequence[int], adds: Sequence[int]) -> None:
        if not meters:
            return
        try:
            self.counters.settle(meters, releases, adds, self.clock())
        except StoreUnavailable as exc:
            self._keep(meters, releases, adds, exc)

    def _keep(self, meters: Sequence[Meter], releases: Sequence[int], adds: Sequence[int],
              exc: StoreUnavailable) -> None:
        """A settlement the store did not take: retried by the poller, so no usage is lost to an outage."""
        self._outage(str(exc))
        self._pending.append((tuple(meters), tuple(releases), tuple(adds)))

    def _retry_pending(self) -> None:
        while self._pending:
            meters, releases, adds = self._pending[0]
            self.counters.settle(meters, releases, adds, self.clock())  # raises while still down
            self._pending.popleft()

    def flush(self) -> None:
        try:
            self._retry_pending()
        except StoreUnavailable as exc:
            log.error("governance: %d settlement(s) could not be written at shutdown: %s", len(self._pending), exc)

    def usage(self, meters: Sequence[Meter]) -> list:
        return self.counters.read(meters, self.clock())

    def close(self) -> None:
        if self._poller is not None:
            self._poller.kill(block=False)
        self.flush()
        self.counters.close()
        self.store.close()
