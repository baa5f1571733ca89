"""One MCP server connection, kept alive on the worker's asyncio thread with the official SDK.

Everything here runs on the loop thread (app/aio.py). A connection lists its tools on
connect, on ``notifications/tools/list_changed`` and every ``tool_sync_interval``; it pings
the server every ``health_check_interval`` and, when the server is gone (a crashed stdio
process, a dropped HTTP stream), reconnects with doubling delays. Greenlets read
``state``, ``last_error`` and ``tools``, which are replaced whole, never mutated.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, AsyncIterator, Callable

import anyio
import anyio._backends._asyncio  # noqa: F401 - here, in the main thread (see app/aio.py and Manager._sync)
import mcp_types
import orjson
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from app.mcp import Unavailable
from app.mcp.config import ClientConfig, ManagerConfig

log = logging.getLogger("bifrost.mcp")

CLIENT_INFO = mcp_types.Implementation(name="bifrost-py", version="0.1.0")
CONNECT_TIMEOUT = 30.0
PING_TIMEOUT = 5.0


class Connection:
    def __init__(self, config: ClientConfig, settings: ManagerConfig, on_change: Callable[[], None]) -> None:
        self.config = config
        self.settings = settings
        self.on_change = on_change  # called on the loop thread when state or tools change
        self.state = "disconnected"  # connected | disconnected | error
        self.last_error: str | None = None
        self.tools: tuple[mcp_types.Tool, ...] = ()
        self.connected_at: float | None = None
        self.session: ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._relist: asyncio.Event | None = None
        self._retry_now: asyncio.Event | None = None
        self._settled: asyncio.Event | None = None  # set after each connect attempt ends (either way)

    @property
    def connecting(self) -> bool:
        """Started, and the first attempt is not over yet (the retries after an error are not this)."""
        return self._task is not None and self.state == "disconnected"

    # -- lifecycle (loop thread) ------------------------------------------------------------------

    def start(self) -> None:
        self._relist, self._retry_now, self._settled = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mcp:{self.config.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._set("disconnected", None, ())

    async def reconnect(self, wait: float = CONNECT_TIMEOUT) -> None:
        """Drop the session (if any) and connect again now; returns once the attempt settled."""
        await self.stop()
        self.start()
        await self.settled(wait)

    async def settled(self, wait: float) -> None:
        assert self._settled is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), wait)

    def _set(self, state: str, error: str | None, tools: tuple | None = None) -> None:
        self.state, self.last_error = state, error
        if tools is not None:
            self.tools = tools
        self.on_change()

    async def _run(self) -> None:
        delay = self.settings.retry_backoff_initial
        while True:
            try:
                async with self._transport() as (read, write):
                    async with ClientSession(read, write, message_handler=self._on_message,
                                             client_info=CLIENT_INFO) as session:
                        with anyio.fail_after(CONNECT_TIMEOUT):
                            await session.initialize()
                            tools = await self._list(session)
                        self.session, self.connected_at = session, time.time()
                        self._set("connected", None, tools)
                        self._settled.set()
                        delay = self.settings.retry_backoff_initial
                        log.info("mcp %s: connected, %d tool(s)", self.config.name, len(tools))
                        await self._watch(session)
            except asyncio.CancelledError:
                self.session = None
                raise
            except BaseException as exc:  # noqa: BLE001 - ExceptionGroups from the SDK's task groups too
                self.session = None
                message = describe(exc)
                log.warning("mcp %s: %s; reconnecting in %.1fs", self.config.name, message, delay)
                self._set("error", message, ())
                self._settled.set()
            self._retry_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay)
            self._settled.clear()
            delay = min(delay * 2, self.settings.retry_backoff_max)

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        config = self.config
        if config.connection_type == "stdio":
            params = StdioServerParameters(command=config.command or "", args=list(config.args),
                                           env=config.process_env() or None, cwd=config.cwd)
            async with stdio_client(params, errlog=sys.stderr) as streams:
                yield streams
        elif config.connection_type == "sse":
            async with sse_client(config.resolved_url(), headers=config.resolved_headers()) as streams:
                yield streams[0], streams[1]
        else:
            async with create_mcp_http_client(headers=config.resolved_headers()) as http:
                async with streamable_http_client(config.resolved_url(), http_client=http) as streams:
                    yield streams[0], streams[1]

    async def _list(self, session: ClientSession) -> tuple[mcp_types.Tool, ...]:
        tools: list[mcp_types.Tool] = []
        cursor = None
        while True:
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = getattr(page, "next_cursor", None)
            if not cursor:
                return tuple(tools)

    async def _watch(self, session: ClientSession) -> None:
        """Until the connection is lost: re-list on notice and on schedule, ping for liveness."""
        settings = self.settings
        next_sync = time.monotonic() + settings.tool_sync_interval if settings.tool_sync_interval else None
        while True:
            waits = [settings.health_check_interval if self.config.is_ping_available else 3600.0]
            if next_sync is not None:
                waits.append(max(0.0, next_sync - time.monotonic()))
            relist = False
            try:
                await asyncio.wait_for(self._relist.wait(), min(waits))
                relist = True
            except asyncio.TimeoutError:
                pass
            self._relist.clear()
            if next_sync is not None and time.monotonic() >= next_sync:
                relist = True
                next_sync = time.monotonic() + settings.tool_sync_interval
            if relist:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    tools = await self._list(session)
                if tools != self.tools:
                    log.info("mcp %s: tools changed, %d tool(s)", self.config.name, len(tools))
                    self._set("connected", None, tools)
            elif self.config.is_ping_available:
                with anyio.fail_after(PING_TIMEOUT):
                    await session.send_ping()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification) and self._relist is not None:
            self._relist.set()

    def lost(self, why: str) -> None:
        """A call found the connection broken: reconnect at once instead of waiting for a ping."""
        if self.state == "connected":
            log.warning("mcp %s: connection lost: %s", self.config.name, why)
            task = self._task
            if task is not None:
                task.cancel()
            self.session = None
            self._set("error", why, ())
            self.start()

    # -- calls (loop thread) ----------------------------------------------------------------------

    async def call_tool(self, name: str, arguments: dict) -> mcp_types.CallToolResult:
        session = self.session
        if session is None or self.state != "connected":
            raise Unavailable(f"MCP client {self.config.name} is {self.state}"
                              + (f": {self.last_error}" if self.last_error else ""))
        try:
            return await session.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self.lost(exc.message)
                raise Unavailable(f"MCP client {self.config.name}: {exc.message}") from None
            raise
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.lost(describe(exc))
            raise Unavailable(f"MCP client {self.config.name}: {describe(exc)}") from None

    async def call_tool_text(self, name: str, arguments: dict) -> tuple[str, bool]:
        """call_tool as (text, is_error): a call the server refused (bad arguments...) is an error text
        the model may read."""
        try:
            result = await self.call_tool(name, arguments)
        except MCPError as exc:
            return exc.message, True
        return result_text(result), bool(result.is_error)


def result_text(result: Any) -> str:
    """A CallToolResult as one text: text blocks joined; other blocks described."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource":
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        else:
            parts.append(f"[{kind} {getattr(block, 'mime_type', '') or ''}]".replace(" ]", "]"))
    if not parts and result.structured_content is not None:
        return orjson.dumps(result.structured_content).decode()
    return "\n".join(parts)


def describe(exc: BaseException) -> str:
    """The innermost useful message of an exception (the SDK wraps failures in ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
