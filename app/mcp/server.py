"""/mcp: the gateway as an MCP server (streamable HTTP), built on the SDK's server side.

The SDK's session manager is an ASGI app on asyncio; it runs on the worker's loop thread
and each WSGI request is bridged to it: the body goes in whole, the ASGI messages come
back through an ``aio.Channel`` and stream out as the WSGI response (SSE included). The
tools are the connected clients' tools, filtered by the include headers (and the virtual
key, when governance supplies ``Manager.vk_resolver``).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

import mcp_types
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from app import aio
from app.mcp import Unavailable
from app.mcp.catalog import Access
from app.mcp.connection import result_text  # also anyio's asyncio backend, imported in this thread
from app.mcp.manager import ToolExecution

if TYPE_CHECKING:
    from app.mcp.manager import Manager

log = logging.getLogger("bifrost.mcp")
ACCESS_KEY = "bifrost.mcp_access"  # ASGI scope entry: the Access of the HTTP request


class GatewayMCPServer:
    def __init__(self, manager: "Manager", *, stateless: bool = False) -> None:
        self.manager = manager
        self.server = Server("bifrost-py", version="0.1.0", on_list_tools=self._list_tools,
                             on_call_tool=self._call_tool)
        self.sessions = StreamableHTTPSessionManager(self.server, json_response=False, stateless=stateless)
        self._running = False
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()  # patched: greenlets of this worker

    # -- the SDK's handlers (loop thread) ---------------------------------------------------------

    @staticmethod
    def _access(ctx: Any) -> Access:
        request = getattr(ctx, "request", None)
        scope = getattr(request, "scope", None) or {}
        return scope.get(ACCESS_KEY) or Access()

    async def _list_tools(self, ctx: Any, params: Any) -> mcp_types.ListToolsResult:
        access = self._access(ctx)
        await self.manager.first_attempts()  # a client this worker is still connecting is listed once it is
        tools = [mcp_types.Tool(name=e.name, description=e.mcp.description, input_schema=e.mcp.input_schema)
                 for e in self.manager.catalog.allowed(access)]
        return mcp_types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        access = self._access(ctx)
        entry = self.manager.catalog.tools.get(params.name)
        if entry is None:
            await self.manager.first_attempts()
            entry = self.manager.catalog.tools.get(params.name)
        if entry is None or not entry.executable or not access.allows(entry):
            return _error(f"tool {params.name} not found or not allowed")
        arguments = dict(params.arguments or {})
        started, status, error = time.perf_counter(), "success", None
        try:
            result = await asyncio.wait_for(self.manager.call_async(entry.client, entry.tool, arguments),
                                            self.manager.settings.tool_execution_timeout)
            if result.is_error:
                status, error = "error", result_text(result)
            return result
        except asyncio.TimeoutError:
            status = "timeout"
            error = f"tool {entry.name} did not answer within {self.manager.settings.tool_execution_timeout:g}s"
            return _error(error)
        except Unavailable as exc:
            status, error = "unavailable", str(exc)
            return _error(error)
        finally:
            self.manager.report(ToolExecution(entry.client, entry.tool,
                                              arguments if self.manager.log_content else None, status,
                                              time.perf_counter() - started, None, "mcp_server", error))

    # -- running the session manager and bridging WSGI requests (greenlets) ----------------------

    def _ensure_running(self) -> None:
        with self._lock:
            if self._running:
                return

            async def start() -> None:
                started = asyncio.Event()

                async def hold() -> None:
                    async with self.sessions.run():
                        started.set()
                        await asyncio.Event().wait()  # for the worker's lifetime

                self._task = asyncio.get_running_loop().create_task(hold())
                await started.wait()

            aio.call(start(), timeout=10)
            self._running = True

    def handle(self, environ: dict, access: Access) -> tuple[str, list[tuple[str, str]], Iterator[bytes]]:
        """One WSGI request through the ASGI app: (status line, headers, body iterator)."""
        self._ensure_running()
        body = environ["wsgi.input"].read() if environ.get("REQUEST_METHOD") == "POST" else b""
        scope = asgi_scope(environ)
        scope[ACCESS_KEY] = access
        channel = aio.Channel()
        gone_holder: list[asyncio.Event] = []

        async def receive() -> dict:
            if not gone_holder:
                gone_holder.append(asyncio.Event())
                return {"type": "http.request", "body": body, "more_body": False}
            await gone_holder[0].wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            channel.put(message)

        async def run() -> None:
            try:
                await self.sessions.handle_request(scope, receive, send)
            finally:
                channel.close()

        future = aio.submit(run())
        try:
            start = channel.get(timeout=60)
        except (StopIteration, TimeoutError):
            future.cancel()
            channel.dispose()
            raise RuntimeError("the MCP server gave no response")
        status = int(start.get("status", 500))
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", ())]

        # WSGI servers send the headers with the first body bytes: a GET stream that has no event
        # yet opens with an SSE comment (ignored by clients) so that the client sees the 200 at once.
        opening = environ.get("REQUEST_METHOD") == "GET" and status == 200

        def chunks() -> Iterator[bytes]:
            try:
                if opening:
                    yield b": stream open\n\n"
                for message in channel:
                    if message.get("type") != "http.response.body":
                        continue
                    data = message.get("body") or b""
                    if data:
                        yield data
                    if not message.get("more_body"):
                        return
            finally:
                loop = aio.loop()
                if gone_holder:
                    loop.call_soon_threadsafe(gone_holder[0].set)
                channel.dispose()

        return f"{status} {_reason(status)}", headers, chunks()


def asgi_scope(environ: dict) -> dict:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower().encode("latin-1"), value.encode("latin-1")))
    if environ.get("CONTENT_TYPE"):
        headers.append((b"content-type", environ["CONTENT_TYPE"].encode("latin-1")))
    if environ.get("CONTENT_LENGTH"):
        headers.append((b"content-length", environ["CONTENT_LENGTH"].encode("latin-1")))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": environ.get("REQUEST_METHOD", "GET"), "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": environ.get("PATH_INFO", "/mcp"), "raw_path": environ.get("PATH_INFO", "/mcp").encode(),
        "query_string": environ.get("QUERY_STRING", "").encode("latin-1"), "root_path": "",
        "headers": headers,
        "server": (environ.get("SERVER_NAME", "127.0.0.1"), int(environ.get("SERVER_PORT") or 80)),
        "client": (environ.get("REMOTE_ADDR", "127.0.0.1"), int(environ.get("REMOTE_PORT") or 0)),
    }


def _error(text: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)], is_error=True)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
