"""The MCP clients of one worker: their connections, the tool catalog, and executing a tool.

Greenlets call the public methods; the connections live on the worker's asyncio thread
(app/aio.py) and are reached only through ``aio.call``. Each worker runs its own
connections (and so its own stdio server processes, see docs/architecture.md); the client
configs come from the shared store, polled for changes. The manager exists from boot, but
connection.py (and with it the MCP SDK) is imported only once there is a client to run.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import gevent
import gevent.lock
from gevent import monkey
import orjson
from marshmallow import ValidationError

from app import aio
from app.errors import GatewayError, bad_request
from app.mcp import Unavailable
from app.mcp.catalog import Access, Catalog, ToolEntry
from app.mcp.config import ClientConfig, ManagerConfig, first_error, parse_client, parse_manager
from app.mcp.store import ClientStore

if TYPE_CHECKING:
    from app.mcp.connection import Connection

log = logging.getLogger("bifrost.mcp")
# How long /api/mcp and a tool call wait for a connection's first attempt (a call: within its
# tool_execution_timeout). A worker learns of a new client from the store poll and connects it;
# a call in between waits for that attempt instead of answering 502 "not connected".
FIRST_ATTEMPT_WAIT = 10.0


@dataclass
class ToolExecution:
    """One tool execution, for logs and metrics (``Manager.listeners``)."""

    client: str
    tool: str
    arguments: dict | None  # None when content logging is off
    status: str  # success | error (the tool said isError) | unavailable | timeout
    seconds: float
    request_id: str | None
    source: str  # api (/v1/mcp/tool/execute), agent (agent mode), mcp_server (/mcp)
    error: str | None = None
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool
    entry: ToolEntry


class Manager:
    def __init__(self, settings: ManagerConfig, store: ClientStore, *, log_content: bool = True) -> None:
        self.settings = settings
        self.store = store
        self.log_content = log_content
        self.catalog = Catalog()
        self.connections: dict[str, Connection] = {}  # loop thread only
        self.configs: dict[str, ClientConfig] = {}  # what this worker runs
        self.version = -1
        self.listeners: list[Callable[[ToolExecution], None]] = [log_execution]
        self._poller: gevent.Greenlet | None = None
        self._sync_lock = gevent.lock.RLock()
        # Governance wires this (environ -> the virtual key's mcp_configs, or None) for the routes
        # without a Call: /v1/mcp/tool/execute and /mcp. It may raise GatewayError (invalid key).
        self.vk_resolver: Callable[[dict], Sequence[Mapping[str, Any]] | None] | None = None
        self.server_stateless = True  # mcp.server_stateless: /mcp without sessions (any worker serves any request)
        self._main_thread = _thread_id()
        self._reports: collections.deque = collections.deque()
        self._reports_watcher: Any = None

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], source: str) -> "Manager":
        section = raw.get("mcp") or {}
        try:
            settings = parse_manager(section)
        except ValidationError as exc:
            key, problem = first_error(exc)
            raise ValueError(f"{key}: {problem}") from None
        store = _retrying(lambda: ClientStore.from_config(raw.get("config_store")))
        documents = _unresolved_clients(source) or list(section.get("client_configs") or ())
        for index, document in enumerate(documents):
            try:
                parse_client(document)
            except ValidationError as exc:
                key, problem = first_error(exc)
                raise ValueError(f"mcp.client_configs[{index}].{key}: {problem}") from None
        _retrying(lambda: store.seed(documents))
        content_off = bool((raw.get("client") or {}).get("disable_content_logging"))
        manager = cls(settings, store, log_content=not content_off)
        manager.server_stateless = bool(section.get("server_stateless", True))
        return manager

    # -- keeping up with the store ---------------------------------------------------------------

    def start(self) -> None:
        self._reports_watcher = gevent.get_hub().loop.async_()  # the main thread's hub
        self._reports_watcher.start(self._drain_reports)
        self.sync()
        self._poller = gevent.spawn(self._poll)

    def report(self, record: ToolExecution) -> None:
        """Hand one execution to the listeners, always on the main thread (they may use gevent)."""
        if _thread_id() == self._main_thread:
            self._notify(record)
        else:  # the /mcp server runs on the loop thread
            self._reports.append(record)
            self._reports_watcher.send()

    def _drain_reports(self) -> None:
        while self._reports:
            self._notify(self._reports.popleft())

    def _notify(self, record: ToolExecution) -> None:
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:
                log.exception("mcp: execution listener failed")

    def _poll(self) -> None:
        while True:
            gevent.sleep(self.settings.store_poll_interval)
            try:
                if self.store.version() != self.version:
                    self.sync()
            except Exception:
                log.exception("mcp: reading the client store failed")

    def sync(self, wait: float = 0.0) -> None:
        """Make this worker's connections match the store (a new, changed or removed client)."""
        with self._sync_lock:  # the poller and API calls take turns
            self._sync(wait)

    def _sync(self, wait: float) -> None:
        version, documents = self.store.all()
        configs: dict[str, ClientConfig] = {}
        for document in documents:
            try:
                config = parse_client(document)
            except ValidationError as exc:
                log.error("mcp: stored client %s is invalid: %s", document.get("name"), first_error(exc))
                continue
            configs[config.name] = config
        self.version = version
        if configs == self.configs and not wait:
            return
        self.configs = configs
        if configs or self.connections:
            # The first client loads the SDK: here, in a greenlet of the main thread, never on the loop thread.
            connection_class = _connection_class() if configs else None
            aio.call(self._apply(configs, wait, connection_class), timeout=wait + 5 if wait else 30)

    async def _apply(self, configs: dict[str, ClientConfig], wait: float,
                     connection_class: "type[Connection] | None") -> None:
        for name in list(self.connections):
            old = self.connections[name]
            if name not in configs or configs[name] != old.config:
                del self.connections[name]
                await old.stop()
        started = []
        for name, config in configs.items():
            if name not in self.connections:
                connection = connection_class(config, self.settings, self._rebuild)
                self.connections[name] = connection
                connection.start()
                started.append(connection)
        self._rebuild()
        if wait and started:
            await asyncio.gather(*(c.settled(wait) for c in started))

    def _rebuild(self) -> None:
        """On the loop thread: a connection changed; publish a new catalog."""
        self.catalog = Catalog((c.config, c.tools) for c in self.connections.values() if c.state == "connected")

    def close(self) -> None:
        if self._poller is not None:
            self._poller.kill(block=False)
        if self.connections:
            async def stop_all() -> None:
                await asyncio.gather(*(c.stop() for c in list(self.connections.values())))
            try:
                aio.call(stop_all(), timeout=5)
            except Exception:
                log.warning("mcp: stopping connections timed out")

    # -- management (/api/mcp) --------------------------------------------------------------------

    def clients(self) -> list[dict]:
        def snapshot() -> list[dict]:
            return [describe_client(c) for c in self.connections.values()]

        listed = aio.run_sync(snapshot, timeout=10) if self.connections else []
        present = {item["name"] for item in listed}
        for name, config in self.configs.items():  # configured but not (yet) running here
            if name not in present:
                listed.append({"name": name, "config": redact(config.document), "type": config.connection_type,
                               "state": "disconnected", "tools": []})
        return sorted(listed, key=lambda item: item["name"])

    def client(self, name: str) -> dict:
        for item in self.clients():
            if item["name"] == name:
                return item
        raise GatewayError(f"MCP client {name} not found", 404, error_type="not_found_error", param="name")

    def add(self, document: Any, *, replace: str | None = None) -> dict:
        if replace is not None and isinstance(document, dict):
            document = {**document, "name": document.get("name", replace)}
            if document["name"] != replace:
                raise bad_request("the name of a client cannot change; delete it and add a new one", param="name")
        try:
            config = parse_client(document)
        except ValidationError as exc:
            key, problem = first_error(exc)
            raise bad_request(f"{key}: {problem}", param=key) from None
        try:
            config.resolved_url()
            config.resolved_headers()
            config.process_env()
        except ValueError as exc:
            raise bad_request(str(exc), param=str(exc).split(":")[0]) from None
        if not self.store.put(config.document, create=replace is None):
            if replace is None:
                raise GatewayError(f"MCP client {config.name} already exists", 409, error_type="invalid_request_error",
                                   param="name")
            raise GatewayError(f"MCP client {replace} not found", 404, error_type="not_found_error", param="name")
        self.sync(wait=FIRST_ATTEMPT_WAIT)
        return self.client(config.name)

    def remove(self, name: str) -> None:
        if not self.store.delete(name):
            raise GatewayError(f"MCP client {name} not found", 404, error_type="not_found_error", param="name")
        self.sync()

    def reconnect(self, name: str) -> dict:
        if name not in self.configs:
            self.sync()
        if name not in self.configs:
            raise GatewayError(f"MCP client {name} not found", 404, error_type="not_found_error", param="name")

        async def again() -> None:
            connection = self.connections.get(name)
            if connection is not None:
                await connection.reconnect(wait=FIRST_ATTEMPT_WAIT)

        aio.call(again(), timeout=FIRST_ATTEMPT_WAIT + 5)
        return self.client(name)

    # -- executing tools --------------------------------------------------------------------------

    def resolve(self, name: str, access: Access) -> ToolEntry:
        """<client>-<tool>, or a bare tool name that exactly one allowed tool has; 404 / 403 otherwise.

        A client this worker is still connecting (its first attempt) is waited for, not a 502.
        """
        entry = self._find(self.catalog, name, access)
        if entry is None and self._unconnected_client(name) and self._first_attempt_connected(name.split("-", 1)[0]):
            entry = self._find(self.catalog, name, access)
        if entry is not None:
            return entry
        if self._unconnected_client(name):
            raise GatewayError(f"MCP client {name.split('-', 1)[0]} is not connected", 502,
                               error_type="mcp_client_unavailable", code="mcp_client_unavailable",
                               is_bifrost_error=True)
        raise GatewayError(f"tool {name} not found", 404, error_type="not_found_error", code="tool_not_found",
                           param="function.name")

    @staticmethod
    def _find(catalog: Catalog, name: str, access: Access) -> ToolEntry | None:
        """The tool by its model name or its bare name; None if no tool has it (403, or 400 when ambiguous)."""
        entry = catalog.tools.get(name)
        if entry is not None:
            if not entry.executable or not access.allows(entry):
                raise tool_blocked(name)
            return entry
        candidates = catalog.by_tool.get(name) or []
        allowed = [e for e in candidates if e.executable and access.allows(e)]
        if len(allowed) == 1:
            return allowed[0]
        if len(allowed) > 1:
            raise bad_request(f"tool {name} is offered by several MCP clients "
                              f"({', '.join(sorted(e.client for e in allowed))}); name it as <client>-{name}",
                              param="function.name", code="ambiguous_tool")
        if candidates:
            raise tool_blocked(name)
        return None

    def _unconnected_client(self, name: str) -> bool:
        """<client>-<tool> of a configured client that has no tools in the catalog (not connected)."""
        client = name.split("-", 1)[0]
        return "-" in name and client in self.configs and client not in {e.client for e in self.catalog.tools.values()}

    def _first_attempt_connected(self, client: str) -> bool:
        """From a greenlet: wait while this worker makes its first attempt to connect a client (one it
        has just learned of, or that is reconnecting through the API); True if it is connected now."""
        with self._sync_lock:  # once free, a sync under way has created its connections
            pass
        wait = self._first_attempt_wait()

        async def settle() -> bool:
            connection = await self._connection(client, wait)
            return connection.state == "connected"

        try:
            return aio.call(settle(), timeout=wait + 1)
        except (Unavailable, TimeoutError):
            return False

    def _first_attempt_wait(self) -> float:
        return min(FIRST_ATTEMPT_WAIT, self.settings.tool_execution_timeout)

    async def _connection(self, client: str, wait: float) -> "Connection":
        """On the loop thread: the client's connection, after its first attempt if that is under way."""
        connection = self.connections.get(client)
        if connection is None:
            raise Unavailable(f"MCP client {client} is not connected")
        if connection.connecting:
            await connection.settled(wait)
        return connection

    async def first_attempts(self) -> None:
        """On the loop thread (the /mcp server): wait for every connection still making its first attempt."""
        pending = [c.settled(self._first_attempt_wait()) for c in self.connections.values() if c.connecting]
        if pending:
            await asyncio.gather(*pending)

    def execute(self, entry: ToolEntry, arguments: dict, *, request_id: str | None, source: str) -> ToolResult:
        """Run one tool (from a greenlet). 502 when the server is down, 504 past tool_execution_timeout."""
        started = time.perf_counter()
        status, error_text = "success", None
        try:
            result = aio.call(self._call(entry.client, entry.tool, arguments), self.settings.tool_execution_timeout)
            text, is_error = result
            if is_error:
                status, error_text = "error", text
            return ToolResult(text, is_error, entry)
        except TimeoutError:
            status = "timeout"
            error_text = f"tool {entry.name} did not answer within {self.settings.tool_execution_timeout:g}s"
            raise GatewayError(error_text, 504, error_type="mcp_tool_timeout", code="mcp_tool_timeout",
                               is_bifrost_error=True) from None
        except Unavailable as exc:
            status, error_text = "unavailable", str(exc)
            raise GatewayError(error_text, 502, error_type="mcp_client_unavailable", code="mcp_client_unavailable",
                               is_bifrost_error=True) from None
        finally:
            self.report(ToolExecution(entry.client, entry.tool, arguments if self.log_content else None, status,
                                      time.perf_counter() - started, request_id, source, error_text))

    async def _call(self, client: str, tool: str, arguments: dict) -> tuple[str, bool]:
        connection = await self._connection(client, self._first_attempt_wait())
        return await connection.call_tool_text(tool, arguments)

    async def call_async(self, client: str, tool: str, arguments: dict) -> Any:
        """For code already on the loop thread (the /mcp server): the raw CallToolResult."""
        connection = await self._connection(client, self._first_attempt_wait())
        return await connection.call_tool(tool, arguments)


_thread_id = monkey.get_original("_thread", "get_ident")  # the OS thread, not the greenlet


def _connection_class() -> "type[Connection]":
    """app.mcp.connection, which imports the MCP SDK (~20 MB): loaded with the first client, not at boot."""
    from app.mcp.connection import Connection

    return Connection


def tool_blocked(name: str) -> GatewayError:
    return GatewayError(f"tool {name} is not allowed for this request", 403, type="mcp_tool_blocked",
                        error_type="permission_error", code="mcp_tool_blocked", param="function.name")


def describe_client(connection: "Connection") -> dict:
    config = connection.config
    item: dict[str, Any] = {
        "name": config.name,
        "type": config.connection_type,
        "state": connection.state,
        "config": redact(config.document),
        "tools": [{"name": t.name, "description": t.description or "",
                   "executable": config.executes(t.name), "auto_execute": config.auto_executes(t.name)}
                  for t in connection.tools],
    }
    if connection.last_error:
        item["error"] = connection.last_error
    return item


def redact(document: Mapping[str, Any]) -> dict:
    """Header values are secrets unless they are env. references."""
    shown = dict(document)
    headers = shown.get("headers")
    if isinstance(headers, dict):
        shown["headers"] = {k: v if str(v).startswith("env.") else "<redacted>" for k, v in headers.items()}
    return shown


def log_execution(record: ToolExecution) -> None:
    arguments = orjson.dumps(record.arguments).decode() if record.arguments is not None else "-"
    log.info("mcp tool %s-%s %s in %.1f ms (%s, request %s) arguments=%s%s", record.client, record.tool,
             record.status, record.seconds * 1000, record.source, record.request_id or "-", arguments[:500],
             f" error={record.error[:200]}" if record.error else "")


def _unresolved_clients(source: str) -> list[dict] | None:
    """config.json's client configs with their env. references, so secrets are not copied into the store."""
    path = Path(source)
    if not path.is_file():
        return None
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    configs = (document.get("mcp") or {}).get("client_configs") if isinstance(document, dict) else None
    return list(configs) if isinstance(configs, list) else None


def _retrying(fn: Callable[[], Any], attempts: int = 5) -> Any:
    """Workers start together; table creation or seeding may race once."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception:
            if attempt == attempts - 1:
                raise
            gevent.sleep(0.05 * (attempt + 1))


__all__ = ["Manager", "ToolExecution", "ToolResult", "Access"]
