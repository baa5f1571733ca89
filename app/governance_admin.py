"""Managing governance entities: validation, references, generated values, and usage in replies.

Used by /api/governance/* and by the seeding of config.json's governance section. The
schemas name the bad field; references to entities that do not exist are refused; the
usage shown with budgets and rate limits is read from the counters that enforce them.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.errors import GatewayError, bad_request
from app.governance import Governance, budget_meters, parse_time, rate_limit_meters
from app.stores.counters import NANO_USD, StoreUnavailable, Window

VK_PREFIX = "sk-bf-"


def _duration(value: str) -> None:
    try:
        Window.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _time(value: Any) -> None:
    try:
        parse_time(value)
    except (ValueError, TypeError):
        raise ValidationError("must be an RFC 3339 time or epoch seconds") from None


class _Entity(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(validate=validate.Length(min=1, max=255))
    created_at = fields.Raw()
    updated_at = fields.Raw()


class BudgetSchema(_Entity):
    max_limit = fields.Float(required=True, validate=validate.Range(min=0))
    reset_duration = fields.String(required=True, validate=_duration)
    calendar_aligned = fields.Boolean(load_default=False)
    current_usage = fields.Raw(load_only=True)  # reported from the counters, never stored
    last_reset = fields.Raw(load_only=True)


class RateLimitSchema(_Entity):
    token_max_limit = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    token_reset_duration = fields.String(allow_none=True, validate=_duration)
    request_max_limit = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    request_reset_duration = fields.String(allow_none=True, validate=_duration)
    calendar_aligned = fields.Boolean(load_default=False)
    token_current_usage = fields.Raw(load_only=True)
    request_current_usage = fields.Raw(load_only=True)
    token_last_reset = fields.Raw(load_only=True)
    request_last_reset = fields.Raw(load_only=True)

    @validates_schema
    def _one_limit(self, data: dict, partial: Any = None, **_: Any) -> None:
        if not partial and data.get("token_max_limit") is None and data.get("request_max_limit") is None:
            raise ValidationError("set token_max_limit or request_max_limit", "request_max_limit")


class _Owner(_Entity):
    budget_id = fields.String(allow_none=True)
    rate_limit_id = fields.String(allow_none=True)
    budget = fields.Nested(BudgetSchema)  # inline: created with the owner
    budgets = fields.List(fields.Raw())  # the newer form: several budgets, as ids or inline objects
    rate_limit = fields.Nested(RateLimitSchema)


class CustomerSchema(_Owner):
    name = fields.String(required=True, validate=validate.Length(min=1))


class TeamSchema(_Owner):
    name = fields.String(required=True, validate=validate.Length(min=1))
    customer_id = fields.String(allow_none=True)


class ProviderConfigSchema(_Owner):
    provider = fields.String(required=True, validate=validate.Length(min=1))
    weight = fields.Float(load_default=1.0, validate=validate.Range(min=0))
    allowed_models = fields.List(fields.String(), load_default=list)
    blacklisted_models = fields.List(fields.String(), load_default=list)
    key_ids = fields.List(fields.String(), load_default=list)


class VirtualKeySchema(_Owner):
    name = fields.String(required=True, validate=validate.Length(min=1))
    value = fields.String(validate=validate.Length(min=8))
    description = fields.String(allow_none=True)
    is_active = fields.Boolean(load_default=True)
    team_id = fields.String(allow_none=True)
    customer_id = fields.String(allow_none=True)
    allow_all_providers = fields.Boolean(load_default=False)
    expires_at = fields.Raw(allow_none=True, validate=_time)
    disable_content_logging = fields.Boolean()
    provider_configs = fields.List(fields.Nested(ProviderConfigSchema), load_default=list)
    mcp_configs = fields.List(fields.Dict(), load_default=list)

    @validates_schema
    def _one_owner(self, data: dict, **_: Any) -> None:
        if data.get("team_id") and data.get("customer_id"):
            raise ValidationError("a virtual key belongs to a team or to a customer, not both", "customer_id")


SCHEMAS = {"budgets": BudgetSchema, "rate_limits": RateLimitSchema, "customers": CustomerSchema,
           "teams": TeamSchema, "virtual_keys": VirtualKeySchema}
SINGULAR = {"budgets": "budget", "rate_limits": "rate limit", "customers": "customer", "teams": "team",
            "virtual_keys": "virtual key"}
REFERENCES = {"team_id": "teams", "customer_id": "customers", "budget_id": "budgets", "rate_limit_id": "rate_limits"}


def first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """marshmallow's nested messages down to the first (dotted field, problem)."""
    if isinstance(messages, dict):
        name, inner = next(iter(messages.items()))
        if name == "_schema":
            return first_error(inner, path)
        key = f"{path}[{name}]" if isinstance(name, int) else (f"{path}.{name}" if path else str(name))
        return first_error(inner, key)
    if isinstance(messages, list) and messages:
        if isinstance(messages[0], (dict, list)):
            return first_error(messages[0], path)
        return path or "body", str(messages[0])
    return path or "body", str(messages)


def load(kind: str, body: Any, *, partial: bool = False, where: str = "") -> dict:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        return SCHEMAS[kind]().load(body, partial=partial)
    except ValidationError as exc:
        field, problem = first_error(exc.messages)
        field = f"{where}{field}"
        raise bad_request(f"{field}: {problem.rstrip('.')}", param=field) from None


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
        changes = self._inline(data)
        self._check_references(data, changes)
        if kind == "virtual_keys":
            self._check_unique_value(data)
        changes.setdefault(kind, []).append(data)
        self.store.put_many(changes)
        self.gov.refresh(force=True)
        return self.present(kind, data, reveal=generated or kind == "virtual_keys")

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
        changes = self._inline(data)
        self._check_references(data, changes)
        if kind == "virtual_keys":
            self._check_unique_value(data)
        changes.setdefault(kind, []).append(data)
        self.store.put_many(changes)
        self.gov.refresh(force=True)
        return self.present(kind, data)

    def rotate(self, entity_id: str) -> dict:
        current = self._existing("virtual_keys", entity_id)
        current["value"] = f"{VK_PREFIX}{uuid.uuid4()}"
        current["updated_at"] = now_text()
        self.store.put("virtual_keys", [current])
        self.gov.refresh(force=True)
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
        self.gov.refresh(force=True)

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


def validate_seed(section: Mapping[str, Any]) -> None:
    """config.json's governance entities, checked with the API's schemas (a ValueError names the key)."""
    for kind in SCHEMAS:
        for index, item in enumerate(section.get(kind) or ()):
            try:
                SCHEMAS[kind]().load(item)
            except ValidationError as exc:
                field, problem = first_error(exc.messages)
                raise ValueError(f"governance.{kind}[{index}].{field}: {problem.rstrip('.')}") from None
            if kind == "virtual_keys" and not item.get("value"):
                raise ValueError(f"governance.virtual_keys[{index}].value: is required in config.json")
