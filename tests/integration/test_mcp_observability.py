"""MCP wired to the other concerns: tool executions in /metrics and /api/logs/mcp, and a virtual key's
mcp_configs deciding which tools a request gets, may execute, and sees on /mcp (real MCP servers, real gateway)."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import requests

from tests.fakes.behaviours import Reply
from tests.fakes.common import DEFAULT_TEXT
from tests.gateway_process import GatewayProcess
from tests.integration.observability_mix import wait_for
from tests.integration.test_metrics import scrape, value
from tests.mcp_servers.fixtures import _fresh_upstream, upstream  # noqa: F401 (fixtures)
from tests.mcp_servers.harness import ServerProcess, mcp_round_trip, stdio_client

pytestmark = pytest.mark.integration
EXECUTE = "/v1/mcp/tool/execute"
WEB_ONLY = "sk-bf-web-only-echo"
INACTIVE = "sk-bf-switched-off"


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mcp-obs")
    http = ServerProcess("http", str(workdir))
    config = {
        "providers": {"openai": {"keys": [{"name": "k", "value": "sk-mcp", "models": ["*"]}],
                                 "network_config": {"base_url": upstream.url}}},
        "governance": {"virtual_keys": [
            {"id": "vk-web", "name": "web only", "value": WEB_ONLY,
             "mcp_configs": [{"mcp_client_name": "web", "tools_to_execute": ["echo"]}]},
            {"id": "vk-off", "name": "off", "value": INACTIVE, "is_active": False},
        ]},
        "mcp": {"client_configs": [
            None,
            {"name": "web", "connection_type": "http", "connection_string": http.url,
             "tools_to_execute": ["echo", "add", "fail"]},
        ], "tool_manager_config": {"max_agent_depth": 2, "tool_execution_timeout": 5}},
    }
    server = GatewayProcess(config)
    config["mcp"]["client_configs"][0] = stdio_client("fs", server.app_dir, tools_to_auto_execute=["read_file", "echo"])
    server.start()
    try:
        wait_for(lambda: {c["name"] for c in requests.get(server.url + "/api/mcp/clients", timeout=5).json()["clients"]
                          if c["state"] == "connected"} >= {"fs", "web"}, timeout=20)
        yield server
    finally:
        server.stop()
        http.stop()


def execute(gateway, name, arguments, headers=None, request_id=None):
    body = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    headers = dict(headers or {})
    if request_id:
        headers["x-request-id"] = request_id
    return requests.post(gateway.url + EXECUTE, json=body, headers=headers, timeout=30)


def mcp_logs(gateway, **params):
    reply = requests.get(gateway.url + "/api/logs/mcp", params=params, timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


# -- metrics and logs ----------------------------------------------------------------------------


def test_executions_count_exactly_in_metrics(gateway, upstream):
    before = scrape(gateway.url)
    for text in ("one", "two"):
        assert execute(gateway, "web-echo", {"text": text}).status_code == 200
    assert execute(gateway, "web-fail", {"message": "boom"}).status_code == 200  # the tool's error: a 200
    upstream.plan(Reply(tool_call={"name": "fs-read_file", "arguments": {"path": "config.json"}}))
    chat = requests.post(gateway.url + "/v1/chat/completions", timeout=30,
                         json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "read it"}]})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT

    def counted():
        after = scrape(gateway.url)
        return after if value(after, "bifrost_mcp_tool_executions_total", client="fs", tool="read_file",
                              status="success") - value(before, "bifrost_mcp_tool_executions_total", client="fs",
                                                        tool="read_file", status="success") >= 1 else None

    after = wait_for(counted)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("bifrost_mcp_tool_executions_total", client="web", tool="echo", status="success") == 2
    assert delta("bifrost_mcp_tool_executions_total", client="web", tool="fail", status="error") == 1
    assert delta("bifrost_mcp_tool_executions_total", client="fs", tool="read_file", status="success") == 1
    assert delta("bifrost_mcp_tool_execution_duration_seconds_count", client="web", tool="echo") == 2
    assert delta("bifrost_mcp_tool_execution_duration_seconds_count", client="fs", tool="read_file") == 1
    assert delta("bifrost_mcp_tool_execution_duration_seconds_sum", client="web", tool="echo") > 0


def test_executions_are_logged_with_arguments_latency_status_and_source(gateway, upstream):
    api_id, agent_id = f"api-{uuid.uuid4()}", f"agent-{uuid.uuid4()}"
    assert execute(gateway, "web-echo", {"text": "logged"}, request_id=api_id).status_code == 200
    upstream.plan(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "from the agent"}}))
    chat = requests.post(gateway.url + "/v1/chat/completions", timeout=30, headers={"x-request-id": agent_id},
                         json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "echo"}]})
    assert chat.status_code == 200, chat.text

    api = wait_for(lambda: mcp_logs(gateway, request_id=api_id)["logs"])
    assert len(api) == 1
    row = api[0]
    assert (row["client_name"], row["tool_name"], row["source"], row["status"]) == ("web", "echo", "api", "success")
    assert row["arguments"] == {"text": "logged"} and row["latency"] > 0 and row["error"] is None
    assert row["content_hidden"] is False and row["timestamp"].endswith("Z")

    agent = wait_for(lambda: mcp_logs(gateway, request_id=agent_id)["logs"])
    assert [(r["client_name"], r["tool_name"], r["source"], r["arguments"]) for r in agent] == [
        ("fs", "echo", "agent", {"text": "from the agent"})]
    # the chat itself is one request log row under the same id
    assert wait_for(lambda: requests.get(f"{gateway.url}/api/logs/{agent_id}", timeout=5).json().get("status")
                    == "success")

    page = mcp_logs(gateway, clients="web", tools="echo", status="success", limit=1)
    assert page["has_logs"] is True and len(page["logs"]) == 1 and page["pagination"]["total_count"] >= 1
    bad = requests.get(gateway.url + "/api/logs/mcp", params={"tool": "echo"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tool"


# -- a virtual key's mcp_configs ---------------------------------------------------------------------


def test_virtual_key_gets_only_its_clients_tools_injected(gateway, upstream):
    for headers, expected in (({"x-bf-vk": WEB_ONLY}, ["web-echo"]),
                              ({}, ["fs-read_file", "fs-echo", "fs-add", "fs-fail", "fs-hang", "fs-record",
                                    "fs-grow", "web-echo", "web-add", "web-fail"])):
        reply = requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=30,
                              json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
        sent = [t["function"]["name"] for t in upstream.requests[-1].body.get("tools") or []]
        assert sorted(sent) == sorted(expected)
    # the key's mcp_configs win over the include headers
    reply = requests.post(gateway.url + "/v1/chat/completions", timeout=30,
                          headers={"x-bf-vk": WEB_ONLY, "x-bf-mcp-include-clients": "fs"},
                          json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert [t["function"]["name"] for t in upstream.requests[-1].body["tools"]] == ["web-echo"]


def test_virtual_key_executes_only_its_tools(gateway):
    allowed = execute(gateway, "web-echo", {"text": "mine"}, headers={"Authorization": f"Bearer {WEB_ONLY}"})
    assert allowed.status_code == 200 and allowed.json()["content"]["content_str"] == "mine"
    for name in ("fs-echo", "web-add"):
        refused = execute(gateway, name, {"text": "x", "a": 1, "b": 2}, headers={"x-bf-vk": WEB_ONLY})
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "mcp_tool_blocked" and name in refused.json()["error"]["message"]
    assert execute(gateway, "fs-echo", {"text": "no key, no filter"}).status_code == 200


def test_unknown_and_inactive_keys_get_the_governance_refusal(gateway):
    unknown = execute(gateway, "web-echo", {"text": "x"}, headers={"x-bf-vk": "sk-bf-nobody"})
    assert unknown.status_code == 403 and unknown.json()["type"] == "virtual_key_not_found"
    inactive = execute(gateway, "web-echo", {"text": "x"}, headers={"x-bf-vk": INACTIVE})
    assert inactive.status_code == 403 and inactive.json()["type"] == "virtual_key_blocked"
    listed = requests.post(gateway.url + "/mcp", headers={"x-bf-vk": "sk-bf-nobody", "accept":
                           "application/json, text/event-stream"}, timeout=10,
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert listed.status_code == 403 and listed.json()["type"] == "virtual_key_not_found"


def test_mcp_server_lists_only_the_keys_tools(gateway):
    _, listed, _, echo = asyncio.run(mcp_round_trip(gateway.url + "/mcp", {"x-bf-vk": WEB_ONLY}))
    assert [t.name for t in listed.tools] == ["web-echo"]
    assert echo.content[0].text == "over mcp"
    _, everything, _, _ = asyncio.run(mcp_round_trip(gateway.url + "/mcp"))
    assert {"fs-echo", "web-echo", "web-add"} <= {t.name for t in everything.tools}


def test_content_logging_off_keeps_the_arguments_out_of_the_log(upstream, tmp_path):
    config = {"providers": {"openai": {"keys": [{"name": "k", "value": "sk-mcp", "models": ["*"]}],
                                       "network_config": {"base_url": upstream.url}}},
              "client": {"disable_content_logging": True}, "mcp": {"client_configs": [None]}}
    server = GatewayProcess(config, app_dir=str(tmp_path))
    config["mcp"]["client_configs"][0] = stdio_client("fs", server.app_dir)
    with server:
        wait_for(lambda: any(c["state"] == "connected" for c in
                             requests.get(server.url + "/api/mcp/clients", timeout=5).json()["clients"]), timeout=20)
        request_id = f"hidden-{uuid.uuid4()}"
        assert execute(server, "fs-echo", {"text": "secret words"}, request_id=request_id).status_code == 200
        [row] = wait_for(lambda: mcp_logs(server, request_id=request_id)["logs"])
        assert row["content_hidden"] is True and "arguments" not in row and row["status"] == "success"
