"""The pure parts of MCP: who may use which tool, config checking, usage over turns, the asyncio bridge."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import mcp_types
import pytest
from marshmallow import ValidationError

from app.mcp.catalog import Access, Catalog, openai_function
from app.mcp.config import first_error, parse_client
from app.turns import add_usage
from tests.gateway_process import ROOT


def tool(name, schema=None):
    return mcp_types.Tool(name=name, description=f"does {name}", input_schema=schema or {"type": "object"})


def client(name, execute=("*",), auto=()):
    return parse_client({"name": name, "connection_type": "http", "connection_string": "http://x/mcp",
                         "tools_to_execute": list(execute), "tools_to_auto_execute": list(auto)})


@pytest.fixture
def catalog():
    return Catalog([
        (client("fs", auto=("read",)), [tool("read"), tool("write")]),
        (client("web", execute=("search",)), [tool("search"), tool("admin")]),
        (client("off", execute=()), [tool("nothing")]),
    ])


def names(entries):
    return sorted(e.name for e in entries)


def test_tools_to_execute_star_names_and_empty(catalog):
    assert names(catalog.allowed(Access())) == ["fs-read", "fs-write", "web-search"]
    assert not catalog.tools["web-admin"].executable and not catalog.tools["off-nothing"].executable
    assert catalog.tools["fs-read"].auto and not catalog.tools["fs-write"].auto


@pytest.mark.parametrize("clients, tools, expected", [
    ("fs", None, ["fs-read", "fs-write"]),
    ("fs,web", None, ["fs-read", "fs-write", "web-search"]),
    (" web ", None, ["web-search"]),
    ("", None, []),
    (None, "", []),
    (None, "fs-*", ["fs-read", "fs-write"]),
    (None, "fs-write,web-search", ["fs-write", "web-search"]),
    (None, "web-admin", []),  # not in web's tools_to_execute: headers cannot widen it
    ("web", "fs-*", []),  # both headers apply
])
def test_include_headers(catalog, clients, tools, expected):
    assert names(catalog.allowed(Access(clients, tools))) == expected


def test_virtual_key_mcp_configs_override_the_headers(catalog):
    vk = [{"mcp_client_name": "fs", "tools_to_execute": ["write"]}, {"mcp_client_name": "web", "tools_to_execute": ["*"]}]
    assert names(catalog.allowed(Access("web", "", vk))) == ["fs-write", "web-search"]
    assert names(catalog.allowed(Access(None, None, [{"mcp_client_name": "fs", "tools_to_execute": []}]))) == []
    assert names(catalog.allowed(Access(None, None, []))) == ["fs-read", "fs-write", "web-search"]  # no configs: no VK rule


def test_openai_function_form():
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    assert openai_function("fs-read", tool("read", schema)) == {
        "type": "function", "function": {"name": "fs-read", "description": "does read", "parameters": schema}}
    bare = openai_function("x-y", mcp_types.Tool(name="y", input_schema={"type": "object"}))
    assert bare["function"] == {"name": "x-y", "parameters": {"type": "object", "properties": {}}}


@pytest.mark.parametrize("document, field", [
    ({"connection_type": "http", "connection_string": "u"}, "name"),
    ({"name": "a b", "connection_type": "http", "connection_string": "u"}, "name"),
    ({"name": "a", "connection_type": "ws", "connection_string": "u"}, "connection_type"),
    ({"name": "a", "connection_type": "sse"}, "connection_string"),
    ({"name": "a", "connection_type": "stdio", "stdio_config": {"command": ""}}, "stdio_config.command"),
    ({"name": "a", "connection_type": "stdio", "stdio_config": {"command": "x", "bogus": 1}}, "stdio_config.bogus"),
    ({"name": "a", "connection_type": "http", "connection_string": "u", "tools_to_execute": "*"}, "tools_to_execute"),
])
def test_client_config_errors_name_the_field(document, field):
    with pytest.raises(ValidationError) as info:
        parse_client(document)
    assert first_error(info.value)[0] == field


def test_stdio_envs_pass_names_through_and_take_values(monkeypatch):
    monkeypatch.setenv("MCP_UNIT_TOKEN", "t0k")
    config = parse_client({"name": "a", "connection_type": "stdio",
                           "stdio_config": {"command": "x", "envs": ["MCP_UNIT_TOKEN", "MODE=fast", "UNSET_VAR_XYZ"]}})
    assert config.process_env() == {"MCP_UNIT_TOKEN": "t0k", "MODE": "fast"}
    mapped = parse_client({"name": "a", "connection_type": "stdio",
                           "stdio_config": {"command": "x", "envs": {"TOKEN": "env.MCP_UNIT_TOKEN"}}})
    assert mapped.process_env() == {"TOKEN": "t0k"}


def test_usage_is_summed_over_turns():
    one = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "prompt_tokens_details": {"cached_tokens": 1}}
    two = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 0}}
    assert add_usage(one, two) == {"prompt_tokens": 13, "completion_tokens": 6, "total_tokens": 19,
                                   "prompt_tokens_details": {"cached_tokens": 1}}


def test_aio_call_waits_cooperatively_and_times_out():
    """In a gevent-patched process (like a worker): the hub keeps running while a greenlet waits."""
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import asyncio, time, gevent
        from app import aio
        ticks = []
        def ticker():
            while True:
                ticks.append(time.monotonic()); gevent.sleep(0.01)
        gevent.spawn(ticker)
        async def slow(x):
            await asyncio.sleep(0.5); return x * 2
        jobs = [gevent.spawn(aio.call, slow(i), 5) for i in range(3)]
        gevent.joinall(jobs)
        assert [j.value for j in jobs] == [0, 2, 4]
        assert len(ticks) > 25, len(ticks)   # ~50 ticks in 0.5 s: the hub never blocked
        cancelled = []
        async def hangs():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(True); raise
        started = time.monotonic()
        try:
            aio.call(hangs(), 0.2)
        except TimeoutError:
            pass
        assert time.monotonic() - started < 1
        gevent.sleep(0.1)
        assert cancelled == [True]
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_tool_names_are_made_valid_for_every_provider():
    catalog = Catalog([(client("fs"), [tool("files.read"), tool("files_read"), tool("x" * 80)])])
    assert "fs-files_read" in catalog.tools and catalog.tools["fs-files_read"].tool == "files.read"
    assert len(catalog.tools) == 2  # files_read collides with the cleaned files.read and is skipped
    long = next(e for e in catalog.tools.values() if e.tool.startswith("x"))
    assert len(long.name) == 64 and long.function["function"]["name"] == long.name


def test_connection_strings_may_reference_the_environment(monkeypatch):
    monkeypatch.setenv("MCP_UNIT_URL", "http://127.0.0.1:9/mcp")
    config = parse_client({"name": "a", "connection_type": "http", "connection_string": "env.MCP_UNIT_URL"})
    assert config.resolved_url() == "http://127.0.0.1:9/mcp"


def test_the_plugin_reads_the_virtual_keys_mcp_configs_from_call_state(catalog):
    """The governance contract: call.state["mcp_configs"] replaces the include headers."""
    from types import SimpleNamespace

    from app.call import Call
    from app.context import RequestContext
    from app.mcp.config import ManagerConfig
    from app.plugins.mcp import MCPPlugin
    from app.schemas import Target

    plugin = MCPPlugin.__new__(MCPPlugin)
    plugin.manager, plugin.settings = SimpleNamespace(catalog=catalog), ManagerConfig()

    def injected(environ, state=None, tools=None):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **({"tools": tools} if tools else {})}
        call = Call("chat_completion", False, body, Target("openai", "m"), [], RequestContext.from_environ(environ))
        call.state.update(state or {})
        plugin.before(call)
        return [t["function"]["name"] for t in call.body.get("tools") or []], call

    assert injected({})[0] == ["fs-read", "fs-write", "web-search"]
    vk = {"mcp_configs": [{"mcp_client_name": "web", "tools_to_execute": ["*"]}]}
    assert injected({"HTTP_X_BF_MCP_INCLUDE_CLIENTS": "fs"}, vk)[0] == ["web-search"]
    names, call = injected({}, tools=[{"type": "function", "function": {"name": "fs-read"}}])
    assert names == ["fs-read", "fs-write", "web-search"] and call.body["tools"][0] == {
        "type": "function", "function": {"name": "fs-read"}}
    assert not call.hold_tool_calls  # fs-read is the request's own tool now: not auto-executed
    assert injected({})[1].hold_tool_calls  # fs-read (auto) injected: agent mode may continue the turn
    none, call = injected({"HTTP_X_BF_MCP_INCLUDE_TOOLS": ""})
    assert none == [] and "tools" not in call.body


def test_the_store_follows_config_json_and_keeps_api_clients(tmp_path):
    from app.mcp.store import ClientStore

    store = ClientStore.from_config({"type": "sqlite", "config": {"path": str(tmp_path / "config.db")}})
    a = {"name": "a", "connection_type": "http", "connection_string": "http://a/mcp"}
    b = {"name": "b", "connection_type": "http", "connection_string": "env.B_URL"}
    store.seed([a, b])
    version, docs = store.all()
    assert [d["name"] for d in docs] == ["a", "b"] and docs[1]["connection_string"] == "env.B_URL"
    store.seed([a, b])
    assert store.version() == version  # unchanged file: nothing applied
    assert store.put({"name": "api", "connection_type": "sse", "connection_string": "http://c/sse"}, create=True)
    assert not store.put({"name": "api", "connection_type": "sse", "connection_string": "x"}, create=True)
    store.seed([dict(a, tools_to_execute=["x"])])  # b left config.json
    _, docs = store.all()
    assert [d["name"] for d in docs] == ["a", "api"] and docs[0]["tools_to_execute"] == ["x"]
    assert store.delete("api") and not store.delete("api")
    assert store.version() > version


def test_cost_prices_each_turn_with_the_model_that_served_it():
    from app.call import Call
    from app.config import parse_config
    from app.context import RequestContext
    from app.engine import Served
    from app.pricing import Pricing
    from app.schemas import Target
    from app.turns import cost

    rules = [{"provider": "openai", "model": "cheap", "input_cost_per_million_tokens": 1, "output_cost_per_million_tokens": 2},
             {"provider": "openai", "model": "dear", "input_cost_per_million_tokens": 10, "output_cost_per_million_tokens": 20}]
    pricing = Pricing(parse_config({"governance": {"pricing_overrides": rules}}, environ={}))
    call = Call("chat_completion", False, {}, Target("openai", "cheap"), [], RequestContext("r"))
    first = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    last = {"prompt_tokens": 2000, "completion_tokens": 50, "total_tokens": 2050}
    call.earlier_turns.append((Served("openai", "cheap", 0, None, 0), first))
    call.served = Served("openai", "dear", 1, None, 0)  # the last turn fell back to another model
    call.usage = add_usage(first, last)
    assert cost(pricing, call) == pytest.approx((1000 * 1 + 100 * 2) / 1e6 + (2000 * 10 + 50 * 20) / 1e6)
