"""MCP: the gateway as an MCP client (tools injected into chats, executed on request or in agent mode)
and as an MCP server (/mcp).

    config.py      the mcp section of config.json / the /api/mcp bodies
    connection.py  one server connection on the asyncio thread (official SDK), reconnects
    catalog.py     every connected tool, <client>-<tool> names, who may use which
    store.py       client configs shared by the workers (config store), versioned
    manager.py     one worker's connections, management, executing a tool
    server.py      /mcp: the SDK's streamable HTTP server, bridged into the WSGI worker
The chat side is the plugin in app/plugins/mcp.py; the HTTP routes are in app/blueprints/.

The MCP SDK (mcp, mcp_types, anyio, starlette, uvicorn...: ~20 MB of a worker's RSS) is
imported only by connection.py and server.py: the manager loads connection.py with the first
client it runs (at boot when config.json or the store has clients), and server.py loads with
the first /mcp request. A worker without clients never imports the SDK.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import GatewayConfig
    from app.mcp.manager import Manager


class Unavailable(Exception):
    """The server cannot take the call now (not connected, or the connection broke during it)."""


_managers: dict[int, "Manager"] = {}  # one per GatewayConfig (one per worker in production)


def manager_for(config: "GatewayConfig") -> "Manager":
    """The worker's MCP manager for this config, created (and started) on first use."""
    manager = _managers.get(id(config))
    if manager is None:
        from app.mcp.manager import Manager

        manager = Manager.from_config(config.raw, config.source)
        _managers[id(config)] = manager
        manager.start()
    return manager


_servers: dict[int, object] = {}


def server_for(manager: "Manager"):
    """The /mcp server of this manager (its SDK session manager starts on first request)."""
    server = _servers.get(id(manager))
    if server is None:
        from app.mcp.server import GatewayMCPServer

        server = GatewayMCPServer(manager, stateless=bool(manager.server_stateless))
        _servers[id(manager)] = server
    return server


def close_all() -> None:
    while _managers:
        _, manager = _managers.popitem()
        manager.close()
