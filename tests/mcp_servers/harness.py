"""Starting the test MCP servers (tests/mcp_servers/servers.py) and a gateway configured with them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.gateway_process import ROOT, free_port


class ServerProcess:
    """One test MCP server over HTTP (streamable or SSE) on a free port."""

    def __init__(self, transport: str, cwd: str, port: int | None = None) -> None:
        self.transport = transport
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}" + ("/mcp" if transport == "http" else "/sse")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.mcp_servers.servers", transport, str(self.port)],
                                        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"MCP {transport} server exited with {self.process.returncode}")
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"MCP {transport} server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def stdio_client(name: str, cwd: str, **extra) -> dict:
    return {"name": name, "connection_type": "stdio",
            "stdio_config": {"command": sys.executable, "args": ["-m", "tests.mcp_servers.servers", "stdio"],
                             "envs": {"PYTHONPATH": str(ROOT), **extra.pop("envs", {})}, "cwd": cwd},
            **extra}


def read_pid(path: Path, old: int | None = None, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(path.read_text())
            if pid != old:
                return pid
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no new pid in {path}")


async def mcp_round_trip(url: str, headers: dict | None = None):
    """The official MCP client against `url`: initialize, tools/list, tools/call (an echo tool), ping."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                listed = await session.list_tools()
                names = [t.name for t in listed.tools]
                called = await session.call_tool(names[0], {"text": "over mcp"}) if "echo" in names[0] else None
                echo = await session.call_tool("web-echo", {"text": "over mcp"}) if "web-echo" in names else None
                await session.send_ping()
                return init, listed, called, echo
