"""MCP clients over time: a killed stdio server, reconnects (automatic and by the API), clients added, changed
and removed at run time and seen by every worker, re-listing on tools/list_changed, disable_auto_tool_inject."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from tests.fakes.behaviours import Reply
from tests.gateway_process import GatewayProcess, imported
from tests.mcp_servers.fixtures import _fresh_upstream, upstream  # noqa: F401 (fixtures)
from tests.mcp_servers.harness import ServerProcess, mcp_round_trip, read_pid, stdio_client

CLIENTS = "/api/mcp/clients"
EXECUTE = "/v1/mcp/tool/execute"


def execute(gateway, name, arguments, headers=None):
    body = {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return requests.post(gateway.url + EXECUTE, json=body, headers=headers, timeout=30)


def client_state(gateway, name):
    clients = requests.get(gateway.url + CLIENTS, timeout=10).json()["clients"]
    return next((c for c in clients if c["name"] == name), None)


def wait_for(predicate, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    server = ServerProcess("http", str(tmp_path_factory.mktemp("mcp-http")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    pid_file = tmp_path_factory.mktemp("mcp-pid") / "pid"
    config = {
        "providers": {"openai": {"keys": [{"name": "k", "value": "sk-mcp", "models": ["*"]}],
                                 "network_config": {"base_url": upstream.url}}},
        "mcp": {"client_configs": [stdio_client("fs", str(pid_file.parent), envs={"MCP_PID_FILE": str(pid_file)})],
                "tool_manager_config": {"disable_auto_tool_inject": True, "tool_execution_timeout": 5},
                # fast timers for the test; the defaults are 10 s pings and 1 s first retry
                "health_check_interval": 0.3, "retry_backoff_initial": 1.5, "retry_backoff_max": 3,
                "tool_sync_interval": "2s"},
    }
    server = GatewayProcess(config).start()
    server.pid_file = pid_file
    wait_for(lambda: (client_state(server, "fs") or {}).get("state") == "connected")
    yield server
    server.stop()


def kill_stdio_server(gateway) -> int:
    pid = read_pid(gateway.pid_file)
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_stdio_server_is_an_error_then_restarted_automatically(gateway):
    assert execute(gateway, "fs-echo", {"text": "before"}).status_code == 200
    old = kill_stdio_server(gateway)
    down = wait_for(lambda: (lambda c: c if c["state"] == "error" else None)(client_state(gateway, "fs")))
    assert down["error"] and down["tools"] == []
    assert execute(gateway, "fs-echo", {"text": "down"}).status_code in (404, 502)
    wait_for(lambda: client_state(gateway, "fs")["state"] == "connected")
    assert read_pid(gateway.pid_file, old) != old
    reply = execute(gateway, "fs-echo", {"text": "after"})
    assert reply.status_code == 200 and reply.json()["content"]["content_str"] == "after"


def test_a_server_that_dies_mid_call_answers_502(gateway):
    wait_for(lambda: client_state(gateway, "fs")["state"] == "connected")
    pid = read_pid(gateway.pid_file)
    import threading

    threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
    reply = execute(gateway, "fs-hang", {"seconds": 3})
    assert reply.status_code == 502, reply.text
    assert reply.json()["is_bifrost_error"] is True and reply.json()["error"]["code"] == "mcp_client_unavailable"
    wait_for(lambda: client_state(gateway, "fs")["state"] == "connected")


def test_reconnect_through_the_api(gateway):
    wait_for(lambda: client_state(gateway, "fs")["state"] == "connected")
    kill_stdio_server(gateway)
    wait_for(lambda: client_state(gateway, "fs")["state"] == "error")
    reply = requests.post(gateway.url + "/api/mcp/client/fs/reconnect", timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["client"]["state"] == "connected" and reply.json()["client"]["tools"]
    assert execute(gateway, "fs-echo", {"text": "back"}).status_code == 200
    assert requests.post(gateway.url + "/api/mcp/client/nope/reconnect").status_code == 404


def test_tool_list_changed_notification_relists(gateway):
    wait_for(lambda: client_state(gateway, "fs")["state"] == "connected")
    assert execute(gateway, "fs-fresh_tool", {}).status_code == 404
    assert execute(gateway, "fs-grow", {"name": "fresh_tool"}).status_code == 200
    reply = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(execute(gateway, "fs-fresh_tool", {})))
    assert reply.json()["content"]["content_str"] == "I am fresh_tool"


def test_tools_are_listed_again_every_tool_sync_interval(gateway):
    wait_for(lambda: client_state(gateway, "fs")["state"] == "connected")
    assert execute(gateway, "fs-quiet_tool", {}).status_code == 404
    assert execute(gateway, "fs-grow", {"name": "quiet_tool", "notify": False}).status_code == 200
    time.sleep(0.5)
    assert execute(gateway, "fs-quiet_tool", {}).status_code == 404  # no notice: not known yet
    reply = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(execute(gateway, "fs-quiet_tool", {})),
                     timeout=10, interval=0.2)
    assert reply.json()["content"]["content_str"] == "I am quiet_tool"


def test_disable_auto_tool_inject_injects_only_on_request(gateway, upstream):
    upstream.set_default(Reply(content="ok", tool_call=False))
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(gateway.url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
    assert "tools" not in upstream.requests[-1].body
    reply = requests.post(gateway.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"x-bf-mcp-include-tools": "fs-echo"})
    assert reply.status_code == 200
    assert [t["function"]["name"] for t in upstream.requests[-1].body["tools"]] == ["fs-echo"]


def test_clients_are_added_changed_and_removed_at_run_time(gateway, http_server):
    document = {"name": "web", "connection_type": "http", "connection_string": http_server.url,
                "tools_to_execute": ["echo"], "headers": {"Authorization": "Bearer secret"}}
    created = requests.post(gateway.url + "/api/mcp/client", json=document, timeout=30)
    assert created.status_code == 201, created.text
    client = created.json()["client"]
    assert client["state"] == "connected" and client["type"] == "http"
    assert client["config"]["headers"] == {"Authorization": "<redacted>"}
    assert execute(gateway, "web-echo", {"text": "new"}).json()["content"]["content_str"] == "new"
    assert execute(gateway, "web-add", {"a": 1, "b": 2}).status_code == 403

    assert requests.post(gateway.url + "/api/mcp/client", json=document).status_code == 409
    changed = requests.put(gateway.url + "/api/mcp/client/web", json={**document, "tools_to_execute": ["*"]})
    assert changed.status_code == 200, changed.text
    assert execute(gateway, "web-add", {"a": 1, "b": 2}).json()["content"]["content_str"] == "3"

    assert requests.delete(gateway.url + "/api/mcp/client/web").status_code == 200
    assert client_state(gateway, "web") is None
    assert execute(gateway, "web-echo", {"text": "gone"}).status_code == 404
    assert requests.delete(gateway.url + "/api/mcp/client/web").status_code == 404
    assert requests.put(gateway.url + "/api/mcp/client/web", json=document).status_code == 404


@pytest.mark.parametrize("document, param", [
    ({"name": "x"}, "connection_type"),
    ({"name": "bad-name", "connection_type": "http", "connection_string": "http://127.0.0.1:1/mcp"}, "name"),
    ({"name": "x", "connection_type": "stdio"}, "stdio_config"),
    ({"name": "x", "connection_type": "http"}, "connection_string"),
    ({"name": "x", "connection_type": "carrier_pigeon"}, "connection_type"),
    ({"name": "x", "connection_type": "http", "connection_string": "http://127.0.0.1:1/mcp",
      "headers": {"A": "env.SURELY_NOT_SET_ANYWHERE"}}, "headers.A"),
])
def test_bad_client_configs_are_400_naming_the_field(gateway, document, param):
    reply = requests.post(gateway.url + "/api/mcp/client", json=document, timeout=10)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


@pytest.mark.parametrize("kind", ["http", "sse", "stdio"])
def test_an_unreachable_server_is_listed_as_error(gateway, kind):
    from tests.gateway_process import free_port

    url = f"http://127.0.0.1:{free_port()}/" + ("sse" if kind == "sse" else "mcp")
    document = {"name": "nowhere", "connection_type": kind, "connection_string": url}
    if kind == "stdio":
        document = {"name": "nowhere", "connection_type": "stdio",
                    "stdio_config": {"command": "/nonexistent/mcp-server", "args": []}}
    created = requests.post(gateway.url + "/api/mcp/client", json=document, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["client"]["state"] == "error" and created.json()["client"]["error"]
    assert execute(gateway, "nowhere-echo", {}).status_code == 502
    assert requests.delete(gateway.url + "/api/mcp/client/nowhere").status_code == 200


SDK = ("mcp", "mcp_types", "anyio", "starlette", "sse_starlette", "uvicorn", "httpx")  # pydantic: genai-prices's too


def test_a_worker_without_clients_imports_the_sdk_only_with_the_first_one(http_server):
    config = {"providers": {"openai": {"keys": [{"name": "k", "value": "sk-mcp", "models": ["*"]}]}}}
    with GatewayProcess(config, env={"PYTHONPROFILEIMPORTTIME": "1"}) as gateway:
        booted = imported(gateway.log())
        assert "app.mcp.manager" in gateway.log() and "flask" in booted  # the worker's imports are in the log
        assert booted.isdisjoint(SDK), sorted(booted & set(SDK))
        accept = {"Accept": "application/json, text/event-stream"}
        listed = requests.post(gateway.url + "/mcp", headers=accept, timeout=30,  # loads the SDK's server side
                               json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        assert listed.status_code == 200 and '"tools":[]' in listed.text.replace(" ", ""), listed.text
        assert "mcp" in imported(gateway.log())
        document = {"name": "web", "connection_type": "http", "connection_string": http_server.url}
        created = requests.post(gateway.url + "/api/mcp/client", json=document, timeout=30)
        assert created.status_code == 201 and created.json()["client"]["state"] == "connected", created.text
        assert execute(gateway, "web-echo", {"text": "lazy"}).json()["content"]["content_str"] == "lazy"


def test_clients_at_boot_import_the_sdk_at_boot(tmp_path):
    config = {"providers": {}, "mcp": {"client_configs": [stdio_client("fs", str(tmp_path))]}}
    with GatewayProcess(config, env={"PYTHONPROFILEIMPORTTIME": "1"}) as gateway:
        assert {"mcp", "mcp_types", "anyio"} <= imported(gateway.log())  # before the first request
        wait_for(lambda: (client_state(gateway, "fs") or {}).get("state") == "connected")
        assert execute(gateway, "fs-echo", {"text": "boot"}).json()["content"]["content_str"] == "boot"


def test_a_change_reaches_every_worker(http_server, tmp_path):
    calls = tmp_path / "calls.txt"
    config = {"providers": {}, "mcp": {"client_configs": [], "store_poll_interval": 0.2}}
    with GatewayProcess(config, workers=2) as gateway:
        document = stdio_client("fs", str(tmp_path), envs={"MCP_CALLS_FILE": str(calls)})
        assert requests.post(gateway.url + "/api/mcp/client", json=document, timeout=30).status_code == 201

        def everyone_connected():
            for _ in range(12):  # a fresh connection each time: either worker may answer
                reply = requests.get(gateway.url + CLIENTS, headers={"Connection": "close"}, timeout=10)
                client = next((c for c in reply.json()["clients"] if c["name"] == "fs"), None)
                if client is None or client["state"] != "connected":
                    return False
            return True

        wait_for(everyone_connected, timeout=30, interval=0.2)
        for i in range(6):
            body = {"id": "c", "type": "function",
                    "function": {"name": "fs-record", "arguments": json.dumps({"note": f"n{i}"})}}
            reply = requests.post(gateway.url + EXECUTE, json=body, headers={"Connection": "close"}, timeout=30)
            assert reply.status_code == 200, reply.text
        notes = [line.split()[1] for line in calls.read_text().splitlines()]
        assert sorted(notes) == [f"n{i}" for i in range(6)]  # each call ran exactly once
        import asyncio

        for _ in range(3):  # /mcp is stateless: whichever worker gets each request serves it
            _, listed, called, _ = asyncio.run(mcp_round_trip(gateway.url + "/mcp", {"Connection": "close"}))
            assert "fs-echo" in [t.name for t in listed.tools]
        assert requests.delete(gateway.url + "/api/mcp/client/fs", timeout=10).status_code == 200
        wait_for(lambda: all(
            not any(c["name"] == "fs" for c in requests.get(gateway.url + CLIENTS, headers={"Connection": "close"},
                                                            timeout=10).json()["clients"])
            for _ in range(8)), timeout=20, interval=0.2)


def slow_starting(document: dict, seconds: float) -> dict:
    """A stdio client whose server starts `seconds` late (a slow process: the worker is still connecting)."""
    stdio = document["stdio_config"]
    command = " ".join([stdio["command"], *stdio["args"]])
    delayed = {**stdio, "command": "/bin/sh", "args": ["-c", f"sleep {seconds}; exec {command}"]}
    return {**document, "stdio_config": delayed}


def test_calls_wait_for_a_client_the_worker_is_still_connecting(tmp_path):
    """Every worker learns of a client (config.json at boot, the store poll) before it is connected: a call
    in between waits for that first attempt, where it answered 502 "not connected" (the flaky multi-worker test)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    config = {"providers": {}, "mcp": {"client_configs": [slow_starting(stdio_client("fs", str(tmp_path)), 2)]}}
    with GatewayProcess(config) as gateway:
        assert client_state(gateway, "fs")["state"] == "disconnected"  # not yet connected: the case
        with ThreadPoolExecutor(2) as pool:
            called = pool.submit(execute, gateway, "fs-echo", {"text": "waited"})
            listed = pool.submit(lambda: asyncio.run(mcp_round_trip(gateway.url + "/mcp"))[1])
            assert called.result().status_code == 200, called.result().text
            assert called.result().json()["content"]["content_str"] == "waited"
            assert "fs-echo" in [t.name for t in listed.result().tools]


def test_the_readme_example_notes_server(gateway, upstream, tmp_path):
    """README's worked example: docs/examples/notes_server.py as a stdio client, a tool run, a chat using it."""
    import sys

    from tests.gateway_process import ROOT

    document = {"name": "notes", "connection_type": "stdio",
                "stdio_config": {"command": sys.executable, "args": [str(ROOT / "docs/examples/notes_server.py")],
                                 "envs": {"NOTES_DIR": str(tmp_path)}},
                "tools_to_execute": ["*"], "tools_to_auto_execute": ["list_notes", "read_note"]}
    created = requests.post(gateway.url + "/api/mcp/client", json=document, timeout=30)
    assert created.status_code == 201, created.text
    assert sorted(t["name"] for t in created.json()["client"]["tools"]) == ["list_notes", "read_note", "write_note"]
    try:
        saved = execute(gateway, "notes-write_note", {"name": "groceries", "text": "eggs, milk"})
        assert saved.json()["content"]["content_str"] == "saved groceries"
        assert (tmp_path / "groceries.txt").read_text() == "eggs, milk"
        upstream.plan(Reply(tool_call={"name": "notes-read_note", "arguments": {"name": "groceries"}}),
                      Reply(content="Your groceries note says: eggs, milk."))
        reply = requests.post(gateway.url + "/v1/chat/completions", timeout=30,
                              headers={"x-bf-mcp-include-clients": "notes"},
                              json={"model": "openai/gpt-4o-mini",
                                    "messages": [{"role": "user", "content": "What is on my groceries note?"}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "Your groceries note says: eggs, milk."
        assert upstream.requests[1].body["messages"][-1] == {
            "role": "tool", "tool_call_id": upstream.requests[1].body["messages"][1]["tool_calls"][0]["id"],
            "content": "eggs, milk"}
    finally:
        requests.delete(gateway.url + "/api/mcp/client/notes", timeout=10)


def test_mcp_endpoint_with_sessions(tmp_path):
    """mcp.server_stateless false: the SDK's sessions (per worker), with the session's GET stream."""
    import asyncio

    config = {"providers": {}, "mcp": {"server_stateless": False,
                                       "client_configs": [stdio_client("fs", str(tmp_path))]}}
    with GatewayProcess(config) as gateway:
        wait_for(lambda: (client_state(gateway, "fs") or {}).get("state") == "connected")
        init, listed, called, _ = asyncio.run(mcp_round_trip(gateway.url + "/mcp",
                                                             {"x-bf-mcp-include-tools": "fs-echo"}))
        assert [t.name for t in listed.tools] == ["fs-echo"]
        assert called.content[0].text == "over mcp"
        accept = {"Accept": "application/json, text/event-stream"}
        reply = requests.post(gateway.url + "/mcp", headers=accept, timeout=10, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        session = {"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        notified = requests.post(gateway.url + "/mcp", headers={**accept, **session}, timeout=10,
                                 json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert notified.status_code == 202
        with requests.get(gateway.url + "/mcp", headers={"Accept": "text/event-stream", **session},
                          stream=True, timeout=10) as stream:
            assert stream.status_code == 200 and stream.headers["mcp-session-id"] == session["mcp-session-id"]
        unknown = requests.post(gateway.url + "/mcp", headers={**accept, "mcp-session-id": "nope"}, timeout=10,
                                json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert unknown.status_code == 404


def test_a_dropped_http_server_is_retried_until_it_is_back(gateway, tmp_path):
    server = ServerProcess("http", str(tmp_path))
    document = {"name": "flaky", "connection_type": "http", "connection_string": server.url}
    try:
        assert requests.post(gateway.url + "/api/mcp/client", json=document, timeout=30).status_code == 201
        assert execute(gateway, "flaky-echo", {"text": "1"}).status_code == 200
        server.stop()
        down = wait_for(lambda: (lambda c: c if c["state"] == "error" else None)(client_state(gateway, "flaky")))
        assert down["error"]
        assert execute(gateway, "flaky-echo", {"text": "2"}).status_code == 502
        server = ServerProcess("http", str(tmp_path), port=server.port)  # back on the same address
        wait_for(lambda: client_state(gateway, "flaky")["state"] == "connected", timeout=20)
        assert execute(gateway, "flaky-echo", {"text": "3"}).json()["content"]["content_str"] == "3"
    finally:
        server.stop()
        requests.delete(gateway.url + "/api/mcp/client/flaky", timeout=10)
