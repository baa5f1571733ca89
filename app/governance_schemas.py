"""The shapes of governance entities: the marshmallow schemas of /api/governance and of config.json.

Kept free of the stores so that gunicorn's master can check config.json's governance section
before it forks (app.config imports it), without importing database or network libraries.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.errors import bad_request
from app.stores.counters import Window

VK_PREFIX = "sk-bf-"


def parse_time(value: Any) -> float | None:
    """expires_at: RFC 3339 text or epoch seconds."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


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
