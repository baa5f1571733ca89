"""The tools of every connected MCP client as one immutable catalog, and who may use which.

A catalog is rebuilt (on the loop thread) whenever a connection's state or tools change,
and swapped in whole, so greenlets read it without locks. It precomputes what the hot
path needs: each tool's OpenAI function form and the default injection list. The tools are
the SDK's ``mcp_types.Tool`` objects, read by attribute only, so this module does not import the
SDK (a worker without clients never loads it).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from app.mcp.config import ClientConfig

if TYPE_CHECKING:
    import mcp_types

log = logging.getLogger("bifrost.mcp")
_VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names (Anthropic's too)
_INVALID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ToolEntry:
    client: str
    tool: str  # the name on the MCP server
    name: str  # what models see: <client>-<tool>
    function: dict  # {"type": "function", "function": {name, description, parameters}}
    executable: bool  # in the client's tools_to_execute
    auto: bool  # in the client's tools_to_auto_execute (agent mode)
    mcp: mcp_types.Tool = field(compare=False)


def model_name(client: str, tool: str) -> str:
    """<client>-<tool>, in the characters and length every provider accepts for a function name."""
    name = f"{client}-{tool}"
    if _VALID.match(name):
        return name
    return _INVALID.sub("_", name)[:64]


def openai_function(name: str, tool: mcp_types.Tool) -> dict:
    schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    parameters = dict(schema) or {"type": "object", "properties": {}}
    parameters.setdefault("type", "object")
    if parameters.get("type") == "object":
        parameters.setdefault("properties", {})
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


class Catalog:
    def __init__(self, clients: Iterable[tuple[ClientConfig, Sequence[mcp_types.Tool]]] = ()) -> None:
        self.tools: dict[str, ToolEntry] = {}
        self.by_tool: dict[str, list[ToolEntry]] = {}
        for config, tools in clients:
            for tool in tools:
                name = model_name(config.name, tool.name)
                if name in self.tools:  # two tools that differ only in characters models cannot take
                    log.warning("mcp %s: tool %s skipped: its name %s is taken", config.name, tool.name, name)
                    continue
                entry = ToolEntry(config.name, tool.name, name, openai_function(name, tool),
                                  config.executes(tool.name), config.auto_executes(tool.name), tool)
                self.tools[name] = entry
                self.by_tool.setdefault(tool.name, []).append(entry)
        self.default: tuple[ToolEntry, ...] = tuple(e for e in self.tools.values() if e.executable)
        self.default_functions: tuple[dict, ...] = tuple(e.function for e in self.default)
        self.any_auto = any(e.auto for e in self.default)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def allowed(self, access: "Access") -> tuple[ToolEntry, ...]:
        if access.is_default:
            return self.default
        return tuple(e for e in self.default if access.allows(e))


class Access:
    """What one request may use: the include headers, or the virtual key's mcp_configs (which win).

    ``None`` for a header means it was not sent; an empty value denies everything.
    """

    __slots__ = ("clients", "tools", "vk", "is_default", "sent_headers")

    def __init__(self, include_clients: str | None = None, include_tools: str | None = None,
                 vk_mcp_configs: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.sent_headers = include_clients is not None or include_tools is not None
        self.clients = None if include_clients is None else frozenset(_split(include_clients))
        self.tools = None if include_tools is None else tuple(_split(include_tools))
        self.vk: dict[str, tuple[str, ...]] | None = None
        if vk_mcp_configs:
            self.vk = {}
            for item in vk_mcp_configs:
                name = item.get("mcp_client_name") or item.get("mcp_client_id") or ""
                self.vk[str(name)] = tuple(item.get("tools_to_execute") or ())
        self.is_default = self.vk is None and not self.sent_headers

    def allows(self, entry: ToolEntry) -> bool:
        if self.vk is not None:
            tools = self.vk.get(entry.client)
            return tools is not None and ("*" in tools or entry.tool in tools or entry.name in tools)
        if self.clients is not None and entry.client not in self.clients and "*" not in self.clients:
            return False
        if self.tools is not None:
            return any(p == entry.name or p == "*" or (p.endswith("-*") and p[:-2] == entry.client)
                       for p in self.tools)
        return True


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
