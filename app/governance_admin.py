"""Managing governance entities for /api/governance/*: references, generated values, usage in replies.

Bodies are checked by app/governance_schemas.py (a 400 names the bad field); references to
entities that do not exist are refused; the usage shown with budgets and rate limits is read
from the counters that enforce them.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from app.errors import GatewayError, bad_request
from app.governance import Governance, budget_meters, rate_limit_meters
from app.governance_schemas import REFERENCES, SINGULAR, VK_PREFIX, load
from app.stores.counters import NANO_USD, StoreUnavailable


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Admin:
    """The operations behind /api/governance/*, on one worker's Governance."""

    def __init__(self, governance: Governance) -> None:
        self.gov = governance
        self.store = governance.store

    # -- writing ------------------------------------------------------------------------------------

    def create(self, kind: str, body: Any) -> dict:
        data = load(kind, body)
        data.setdefault("id", str(uuid.uuid4()))
        if self.store.get(kind, data["id"]) is not None:
            raise GatewayError(f"{SINGULAR[kind]} {data['id']} already exists", 409, param="id")
        data["created_at"] = data["updated_at"] = now_text()
        generated = False
        if kind == "virtual_keys" and not data.get("value"):
            data["value"] = f"{VK_PREFIX}{uuid.uuid4()}"
            generated = True
        self._save(kind, data)
        return self.present(kind, data, reveal=generated or kind == "virtual_keys")

    def _save(self, kind: str, data: dict) -> None:
        """Check and store an entity with the ones it defines inline; every worker sees it at once."""
        changes = self._inline(data)
        self._check_references(data, changes)
        if kind == "virtual_keys":
            self._check_unique_value(data)
        changes.setdefault(kind, []).append(data)
        self.store.put_many(changes)
        self.gov.refresh()

    def _check_unique_value(self, data: dict) -> None:
        other = self.store.find_virtual_key(data["value"])
        if other is not None and other["id"] != data["id"]:
            raise GatewayError("another virtual key has this value", 409, param="value")

    def update(self, kind: str, entity_id: str, body: Any) -> dict:
        current = self._existing(kind, entity_id)
        changes_in = load(kind, body, partial=True)
        changes_in.pop("id", None)
        merged = {k: v for k, v in {**current, **changes_in}.items() if k not in ("created_at", "updated_at")}
        data = load(kind, merged)  # the whole entity is checked again, e.g. team_id XOR customer_id
        data.update(id=entity_id, created_at=current.get("created_at"), updated_at=now_text())
        self._save(kind, data)
        return self.present(kind, data)

    def rotate(self, entity_id: str) -> dict:
        current = self._existing("virtual_keys", entity_id)
        current["value"] = f"{VK_PREFIX}{uuid.uuid4()}"
        current["updated_at"] = now_text()
        self.store.put("virtual_keys", [current])
        self.gov.refresh()
        return self.present("virtual_keys", current, reveal=True)

    def delete(self, kind: str, entity_id: str) -> None:
        self._existing(kind, entity_id)
        field = {"teams": "team_id", "customers": "customer_id", "budgets": "budget_id",
                 "rate_limits": "rate_limit_id"}.get(kind)
        if field:
            for owner_kind in ("customers", "teams", "virtual_keys"):
                for entity in self.store.list(owner_kind):
                    holders = [entity, *(entity.get("provider_configs") or ())]
                    if any(h.get(field) == entity_id or entity_id in (h.get("budgets") or ()) for h in holders):
                        raise GatewayError(f"{SINGULAR[kind]} {entity_id} is used by {SINGULAR[owner_kind]} "
                                           f"{entity['id']}", 409, param="id")
        self.store.delete(kind, entity_id)
        self.gov.refresh()

    def _existing(self, kind: str, entity_id: str) -> dict:
        entity = self.store.get(kind, entity_id)
        if entity is None:
            raise GatewayError(f"{SINGULAR[kind]} {entity_id} not found", 404, error_type="not_found")
        return entity

    def _inline(self, data: dict) -> dict[str, list[dict]]:
        """Budgets and rate limits given inline become entities of their own, referenced by id."""
        changes: dict[str, list[dict]] = {}
        for holder in (data, *(data.get("provider_configs") or ())):
            for field, kind in (("budget", "budgets"), ("rate_limit", "rate_limits")):
                inline = holder.pop(field, None)
                if inline:
                    inline.setdefault("id", holder.get(f"{field}_id") or str(uuid.uuid4()))
                    holder[f"{field}_id"] = inline["id"]
                    changes.setdefault(kind, []).append(inline)
            many = holder.get("budgets")
            if many:
                ids = []
                for index, item in enumerate(many):
                    if isinstance(item, dict):
                        inline = load("budgets", item, where=f"budgets[{index}].")
                        inline.setdefault("id", str(uuid.uuid4()))
                        changes.setdefault("budgets", []).append(inline)
                        item = inline["id"]
                    if not isinstance(item, str):
                        raise bad_request("budgets: each item is a budget id or a budget object", param=f"budgets[{index}]")
                    ids.append(item)
                holder["budgets"] = ids
        for index, pc in enumerate(data.get("provider_configs") or ()):
            pc.setdefault("id", f"{data['id']}-{index}")
        return changes

    def _check_references(self, data: dict, changes: Mapping[str, list[dict]]) -> None:
        new = {kind: {e["id"] for e in items} for kind, items in changes.items()}
        holders = [("", data)] + [(f"provider_configs[{i}].", pc) for i, pc in enumerate(data.get("provider_configs") or ())]
        for prefix, holder in holders:
            refs = [(field, kind, holder.get(field)) for field, kind in REFERENCES.items()]
            refs += [(f"budgets[{i}]", "budgets", ref) for i, ref in enumerate(holder.get("budgets") or ())]
            for field, kind, ref in refs:
                if ref and ref not in new.get(kind, ()) and self.store.get(kind, ref) is None:
                    raise bad_request(f"{prefix}{field}: {SINGULAR[kind]} {ref} does not exist", param=prefix + field)

    # -- reading ------------------------------------------------------------------------------------

    def listing(self, kind: str, limit: int, offset: int) -> dict:
        items = self.store.list(kind)
        page = items[offset:offset + limit] if limit else items[offset:]
        return {kind: [self.present(kind, e) for e in page], "count": len(page), "total_count": len(items),
                "limit": limit, "offset": offset}

    def get(self, kind: str, entity_id: str) -> dict:
        return self.present(kind, self._existing(kind, entity_id))

    def present(self, kind: str, entity: dict, *, reveal: bool = False) -> dict:
        """The entity as replies show it: usage from the counters, a virtual key's value masked."""
        out = dict(entity)
        if kind == "budgets":
            out.update(self._budget_usage(entity))
        elif kind == "rate_limits":
            out.update(self._rate_usage(entity))
        elif kind == "virtual_keys" and not reveal:
            value = out.get("value") or ""
            out["value"] = value[:len(VK_PREFIX)] + "****" + value[-4:]
        if kind != "budgets" and kind != "rate_limits":
            for field, ref_kind in (("budget_id", "budgets"), ("rate_limit_id", "rate_limits")):
                ref = entity.get(field) and self.store.get(ref_kind, entity[field])
                if ref:
                    out[field[:-3]] = self.present(ref_kind, ref)
        return out

    def _read(self, meters: list) -> list:
        try:
            return self.gov.usage(meters)
        except StoreUnavailable:
            return [None] * len(meters)

    def _budget_usage(self, budget: dict) -> dict:
        (reading,) = self._read(budget_meters(budget, "budget"))
        if reading is None:
            return {"current_usage": None, "last_reset": None}
        return {"current_usage": reading.usage / NANO_USD, "last_reset": _when(reading.start)}

    def _rate_usage(self, limit: dict) -> dict:
        out: dict[str, Any] = {}
        meters = rate_limit_meters(limit, "rate limit")
        for meter, reading in zip(meters, self._read(meters)):
            prefix = "request" if meter.decision == "request_limited" else "token"
            out[f"{prefix}_current_usage"] = reading.usage if reading else None
            out[f"{prefix}_last_reset"] = _when(reading.start) if reading else None
        return out

    def quota(self, value: str) -> dict:
        """What a virtual key has used of each limit in its chain (GET .../virtual-keys/quota)."""
        vk = self.gov.authenticate(value)
        entity = self.store.get("virtual_keys", vk.id) or {}
        meters = list(vk.meters) + [m for route in vk.routes for m in route.meters]
        readings = self._read(meters)
        budgets, limits = [], []
        for meter, reading in zip(meters, readings):
            used = None if reading is None else reading.usage
            row = {"scope": meter.label.rsplit(" ", 2 if meter.decision != "budget_exceeded" else 1)[0],
                   "id": meter.key.split(":")[1], "reset_duration": meter.window.text,
                   "last_reset": _when(reading.start) if reading else None}
            if meter.decision == "budget_exceeded":
                row.update(max_limit=meter.limit / NANO_USD, current_usage=None if used is None else used / NANO_USD)
                budgets.append(row)
            else:
                kind = "requests" if meter.decision == "request_limited" else "tokens"
                row.update(kind=kind, max_limit=meter.limit, current_usage=used,
                           in_flight_reserved=reading.reserved if reading and kind == "tokens" else None)
                limits.append(row)
        return {"virtual_key": {"id": vk.id, "name": vk.name, "is_active": vk.is_active,
                                "team_id": entity.get("team_id"), "customer_id": entity.get("customer_id")},
                "budgets": budgets, "rate_limits": limits}


def _when(start: float) -> str | None:
    if not start:
        return None
    return datetime.fromtimestamp(start, timezone.utc).isoformat().replace("+00:00", "Z")


