"""The ``mcp`` section of config.json (and of /api/mcp/client bodies), checked into frozen dataclasses.

One schema serves both, so a client added at run time is held to the same rules as one
from the file; a bad field is a ValidationError naming it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

CONNECTION_TYPES = ("stdio", "http", "sse")
NAME = re.compile(r"^[A-Za-z0-9_]+$")  # the tool prefix: no "-", which separates client and tool
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def seconds(value: Any, where: str) -> float:
    """30, 30.5, "30s", "10m", "1h", "500ms" -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValidationError(f"not a duration: {value!r} (seconds, or e.g. \"30s\", \"10m\")", where)
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


class StdioSchema(Schema):
    class Meta:
        unknown = RAISE

    command = fields.String(required=True, validate=validate.Length(min=1))
    args = fields.List(fields.String(), load_default=list)
    envs = fields.Raw(load_default=list)  # ["NAME", "NAME=value"] or {"NAME": "value"}
    cwd = fields.String()


class ClientConfigSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # Bifrost's other client fields (oauth, code mode, pricing) are accepted, unused

    name = fields.String(required=True, validate=validate.Regexp(NAME, error="use letters, digits and _ only"))
    connection_type = fields.String(required=True, validate=validate.OneOf(CONNECTION_TYPES))
    connection_string = fields.String()
    stdio_config = fields.Nested(StdioSchema)
    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    tools_to_execute = fields.List(fields.String(), load_default=lambda: ["*"])
    tools_to_auto_execute = fields.List(fields.String(), load_default=list)
    is_ping_available = fields.Boolean(load_default=True)

    @validates_schema
    def _transport(self, data: dict, **_: Any) -> None:
        if data["connection_type"] == "stdio" and not data.get("stdio_config"):
            raise ValidationError("required for a stdio client", "stdio_config")
        if data["connection_type"] != "stdio" and not data.get("connection_string"):
            raise ValidationError(f"required for a {data['connection_type']} client", "connection_string")


@dataclass(frozen=True)
class ClientConfig:
    name: str
    connection_type: str
    connection_string: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    envs: Any = ()
    cwd: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    tools_to_execute: tuple[str, ...] = ("*",)
    tools_to_auto_execute: tuple[str, ...] = ()
    is_ping_available: bool = True
    document: Mapping[str, Any] = field(default_factory=dict, compare=False)  # as given (env. refs kept)

    def executes(self, tool: str) -> bool:
        return "*" in self.tools_to_execute or tool in self.tools_to_execute

    def auto_executes(self, tool: str) -> bool:
        return self.executes(tool) and ("*" in self.tools_to_auto_execute or tool in self.tools_to_auto_execute)

    def resolved_url(self) -> str:
        return resolve_env(self.connection_string or "", "connection_string")

    def resolved_headers(self) -> dict[str, str]:
        return {name: resolve_env(value, f"headers.{name}") for name, value in self.headers.items()}

    def process_env(self) -> dict[str, str]:
        """The stdio server's extra environment: named variables passed through, or given values."""
        envs = self.envs
        if isinstance(envs, Mapping):
            return {str(k): resolve_env(str(v), f"stdio_config.envs.{k}") for k, v in envs.items()}
        out: dict[str, str] = {}
        for item in envs or ():
            name, sep, value = str(item).partition("=")
            if sep:
                out[name] = resolve_env(value, f"stdio_config.envs.{name}")
            elif name in os.environ:
                out[name] = os.environ[name]
        return out


def resolve_env(value: str, where: str) -> str:
    if isinstance(value, str) and value.startswith("env."):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    return value


def parse_client(document: Any) -> ClientConfig:
    """One client config (a config.json entry or an API body); ValidationError names the field."""
    if not isinstance(document, dict):
        raise ValidationError("must be a JSON object", "<body>")
    data = ClientConfigSchema().load(document)
    stdio = data.get("stdio_config") or {}
    envs = stdio.get("envs") or []
    if not isinstance(envs, (list, dict)):
        raise ValidationError("must be a list of names or an object", "stdio_config.envs")
    return ClientConfig(
        name=data["name"],
        connection_type=data["connection_type"],
        connection_string=data.get("connection_string"),
        command=stdio.get("command"),
        args=tuple(stdio.get("args") or ()),
        envs=envs,
        cwd=stdio.get("cwd"),
        headers=dict(data["headers"]),
        tools_to_execute=tuple(data["tools_to_execute"]),
        tools_to_auto_execute=tuple(data["tools_to_auto_execute"]),
        is_ping_available=data["is_ping_available"],
        document=dict(document),
    )


@dataclass(frozen=True)
class ManagerConfig:
    """``mcp.tool_manager_config`` and the timers of the connections."""

    max_agent_depth: int = 10
    tool_execution_timeout: float = 30.0
    disable_auto_tool_inject: bool = False
    tool_sync_interval: float = 300.0  # re-list every client's tools (seconds; 0 = never)
    health_check_interval: float = 10.0  # ping each client this often; a failed ping reconnects
    retry_backoff_initial: float = 1.0  # reconnect delays: doubled per failure, up to the max
    retry_backoff_max: float = 30.0
    store_poll_interval: float = 1.0  # how soon another worker's /api/mcp change is seen


def first_error(exc: ValidationError) -> tuple[str, str]:
    """marshmallow's nested messages -> (dotted field, problem)."""
    messages: Any = exc.normalized_messages()
    path = []
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        if key != "_schema":
            path.append(str(key))
    if isinstance(messages, list):
        messages = messages[0]
    return ".".join(path) or "<body>", str(messages).rstrip(".")


def parse_manager(section: Mapping[str, Any] | None) -> ManagerConfig:
    section = section or {}
    tm = section.get("tool_manager_config") or {}
    depth = int(tm.get("max_agent_depth", 10))
    if not 1 <= depth <= 50:
        raise ValidationError("must be between 1 and 50", "mcp.tool_manager_config.max_agent_depth")
    return ManagerConfig(
        max_agent_depth=depth,
        tool_execution_timeout=seconds(tm.get("tool_execution_timeout", 30), "mcp.tool_manager_config.tool_execution_timeout"),
        disable_auto_tool_inject=bool(tm.get("disable_auto_tool_inject", False)),
        tool_sync_interval=seconds(section.get("tool_sync_interval", 300), "mcp.tool_sync_interval"),
        health_check_interval=seconds(section.get("health_check_interval", 10), "mcp.health_check_interval"),
        retry_backoff_initial=seconds(section.get("retry_backoff_initial", 1), "mcp.retry_backoff_initial"),
        retry_backoff_max=seconds(section.get("retry_backoff_max", 30), "mcp.retry_backoff_max"),
        store_poll_interval=seconds(section.get("store_poll_interval", 1), "mcp.store_poll_interval"),
    )


def check_section(section: Any) -> None:
    """config.json's mcp section, checked at start-up (in gunicorn's master): ValueError names the key."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ValueError("mcp: must be an object")
    try:
        parse_manager(section)
    except ValidationError as exc:
        key, problem = first_error(exc)
        raise ValueError(f"{key}: {problem}") from None
    configs = section.get("client_configs") or []
    if not isinstance(configs, list):
        raise ValueError("mcp.client_configs: must be a list")
    names = set()
    for index, document in enumerate(configs):
        try:
            config = parse_client(document)
        except ValidationError as exc:
            key, problem = first_error(exc)
            raise ValueError(f"mcp.client_configs[{index}].{key}: {problem}") from None
        if config.name in names:
            raise ValueError(f"mcp.client_configs[{index}].name: {config.name} is used twice")
        names.add(config.name)
