#!/usr/bin/env python3
"""MCP micro-measurements (not part of `make bench`): python bench/mcp_micro.py [--calls 300]

1. Tool injection, in-process: the MCP plugin's before-hook on a chat Call, with 21 tools from 3 clients,
   for the common cases (no headers; include headers; a request with tools of its own), plus the extra
   JSON encoding of the larger upstream body. p50 / p99 in microseconds.
2. /v1/mcp/tool/execute against a real streamable-HTTP MCP server (tests/mcp_servers/servers.py), compared with the
   official MCP client calling the same server directly over one session: p50 / p99 in ms and the overhead.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def injection(rounds: int = 20000) -> None:
    import mcp_types
    import orjson

    from app.call import Call
    from app.context import RequestContext
    from app.mcp.catalog import Catalog
    from app.mcp.config import ManagerConfig, parse_client
    from app.plugins.mcp import MCPPlugin
    from app.schemas import Target

    schema = {"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
              "required": ["path"]}
    clients = []
    for name in ("fs", "web", "db"):
        config = parse_client({"name": name, "connection_type": "http", "connection_string": "http://x/mcp",
                               "tools_to_auto_execute": []})
        clients.append((config, [mcp_types.Tool(name=f"tool{i}", description=f"tool {i} of {name}", input_schema=schema)
                                 for i in range(7)]))
    plugin = MCPPlugin.__new__(MCPPlugin)
    plugin.manager = SimpleNamespace(catalog=Catalog(clients))
    plugin.settings = ManagerConfig()
    messages = [{"role": "user", "content": "List the files in the current directory, please."}]
    own_tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    cases = {
        "no headers": ({}, None),
        "include-clients header": ({"HTTP_X_BF_MCP_INCLUDE_CLIENTS": "fs,web"}, None),
        "include-tools wildcard": ({"HTTP_X_BF_MCP_INCLUDE_TOOLS": "fs-*,db-tool3"}, None),
        "request has own tools": ({}, own_tools),
    }
    print("tool injection (21 tools), before-hook only, microseconds:")
    for label, (environ, tools) in cases.items():
        timings = []
        for _ in range(rounds):
            ctx = RequestContext.from_environ(environ)
            body = {"model": "gpt-4o-mini", "messages": messages}
            if tools:
                body["tools"] = list(tools)
            call = Call("chat_completion", False, body, Target("openai", "gpt-4o-mini"), [], ctx)
            started = time.perf_counter()
            plugin.before(call)
            timings.append((time.perf_counter() - started) * 1e6)
        print(f"  {label:26s} p50 {percentile(timings, 0.5):6.1f}  p99 {percentile(timings, 0.99):6.1f}"
              f"  tools sent {len(call.body['tools'])}")
    plain = {"model": "gpt-4o-mini", "messages": messages}
    full = dict(plain, tools=list(plugin.manager.catalog.default_functions))
    for label, body in (("encode body without tools", plain), ("encode body with 21 tools", full)):
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            orjson.dumps(body)
            timings.append((time.perf_counter() - started) * 1e6)
        print(f"  {label:26s} p50 {percentile(timings, 0.5):6.1f}  ({len(orjson.dumps(body))} bytes)")


async def direct_calls(url: str, calls: int) -> list[float]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    timings = []
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for i in range(calls + 20):
                started = time.perf_counter()
                await session.call_tool("echo", {"text": f"n{i}"})
                if i >= 20:
                    timings.append((time.perf_counter() - started) * 1000)
    return timings


def execute_overhead(calls: int) -> None:
    import requests

    from tests.gateway_process import GatewayProcess
    from tests.mcp_servers.harness import ServerProcess

    workdir = tempfile.mkdtemp()
    server = ServerProcess("http", workdir)
    config = {"providers": {}, "mcp": {"client_configs": [
        {"name": "web", "connection_type": "http", "connection_string": server.url}]}}
    gateway = GatewayProcess(config)
    try:
        gateway.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            clients = requests.get(gateway.url + "/api/mcp/clients").json()["clients"]
            if clients and clients[0]["state"] == "connected":
                break
            time.sleep(0.1)
        direct = asyncio.run(direct_calls(server.url, calls))
        session = requests.Session()
        through = []
        for i in range(calls + 20):
            body = {"id": "c", "type": "function", "function": {"name": "web-echo",
                                                                 "arguments": json.dumps({"text": f"n{i}"})}}
            started = time.perf_counter()
            reply = session.post(gateway.url + "/v1/mcp/tool/execute", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            assert reply.status_code == 200, reply.text
            if i >= 20:
                through.append(elapsed)
        print(f"/v1/mcp/tool/execute vs the official client direct ({calls} sequential echo calls, ms):")
        print(f"  direct        p50 {statistics.median(direct):6.2f}  p99 {percentile(direct, 0.99):6.2f}")
        print(f"  via gateway   p50 {statistics.median(through):6.2f}  p99 {percentile(through, 0.99):6.2f}")
        print(f"  overhead      p50 {statistics.median(through) - statistics.median(direct):6.2f}")
        import re

        inner = [float(x) for x in re.findall(r"web-echo success in ([\d.]+) ms", gateway.log())][20:]
        if inner:  # the gateway's own execution log: the SDK call on the worker's asyncio thread
            print(f"  of which the SDK call inside the gateway p50 {statistics.median(inner):6.2f}")
    finally:
        gateway.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--skip-execute", action="store_true")
    args = parser.parse_args()
    injection()
    if not args.skip_execute:
        execute_overhead(args.calls)


if __name__ == "__main__":
    main()
