"""Real MCP servers for the tests, written with the SDK's MCPServer (FastMCP in mcp 1.x).

    python -m tests.mcp_servers.servers stdio            over stdin/stdout
    python -m tests.mcp_servers.servers http PORT        streamable HTTP at /mcp
    python -m tests.mcp_servers.servers sse PORT         SSE at /sse

The files read by read_file are relative to the working directory. MCP_PID_FILE, when set,
receives the process id (the tests kill the server); MCP_CALLS_FILE gets one line per
`record` call (to count side effects).
"""
from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("testfs")


@server.tool()
def read_file(path: str) -> str:
    """Read a text file and return its content."""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)  # an anticipated failure: its text reaches the client (isError)


@server.tool()
async def hang(seconds: float) -> str:
    """Sleep for the given number of seconds, then answer."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def record(note: str) -> str:
    """Append a note to the calls file (a side effect the tests count)."""
    with open(os.environ.get("MCP_CALLS_FILE", os.devnull), "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()} {note}\n")
    return f"recorded {note}"


@server.tool()
async def grow(name: str, ctx: Context, notify: bool = True) -> str:
    """Add a tool with this name and (unless notify is false) tell the client that the tool list changed."""
    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name, description=f"added at run time: {name}")
    if notify:
        await ctx.session.send_tool_list_changed()
    return f"added {name}"


def main() -> None:
    if os.environ.get("MCP_PID_FILE"):
        with open(os.environ["MCP_PID_FILE"], "w", encoding="utf-8") as handle:
            handle.write(str(os.getpid()))
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "stdio":
        server.run("stdio")
    elif transport == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif transport == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown transport {transport}")


if __name__ == "__main__":
    main()
