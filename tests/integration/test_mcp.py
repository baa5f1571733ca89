"""MCP through the real gateway: three real MCP servers (stdio, streamable HTTP, SSE; tests/mcp_servers/servers.py),
tool execution, injection into what the fake upstream receives, agent mode, and /mcp with the official client."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fakes.behaviours import Reply
from tests.fakes.common import DEFAULT_TEXT
from tests.gateway_process import GatewayProcess
from tests.mcp_servers.fixtures import _fresh_upstream, upstream  # noqa: F401 (fixtures)
from tests.mcp_servers.harness import ServerProcess, mcp_round_trip, stdio_client

EXECUTE = "/v1/mcp/tool/execute"
CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello!"}]

# The spec's "POST /v1/mcp/tool/execute" request body, verbatim.
SPEC_EXECUTE_BODY = r"""{
  "id": "call_123",
  "type": "function",
  "function": {
    "name": "read_file",
    "arguments": "{\"path\": \"config.json\"}"
  }
}"""

FS_TOOLS = ["fs-read_file", "fs-echo", "fs-add", "fs-fail", "fs-hang", "fs-record", "fs-grow"]
WEB_TOOLS = ["web-echo", "web-add", "web-fail", "web-hang"]
LEGACY_TOOLS = ["legacy-echo"]


@pytest.fixture(scope="module")
def mcp_gateway(upstream, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mcp-http")
    http = ServerProcess("http", str(workdir))
    sse = ServerProcess("sse", str(workdir))
    config = {
        "providers": {"openai": {"keys": [{"name": "k", "value": "sk-mcp", "models": ["*"]}],
                                 "network_config": {"base_url": upstream.url}},
                      "anthropic": {"keys": [{"name": "a", "value": "sk-mcp", "models": ["*"]}],
                                    "network_config": {"base_url": upstream.url}}},
        "mcp": {"client_configs": [
            # cwd is filled in below: the gateway's own directory, where its config.json is
            None,
            {"name": "web", "connection_type": "http", "connection_string": http.url,
             "tools_to_execute": ["echo", "add", "fail", "hang"], "headers": {"X-Test": "env.MCP_TEST_HEADER"}},
            {"name": "legacy", "connection_type": "sse", "connection_string": sse.url, "tools_to_execute": ["echo"]},
        ], "tool_manager_config": {"max_agent_depth": 2, "tool_execution_timeout": 2}},
    }
    gateway = GatewayProcess(config, env={"MCP_TEST_HEADER": "on"})
    calls_file = Path(gateway.app_dir) / "calls.txt"
    config["mcp"]["client_configs"][0] = stdio_client(
        "fs", gateway.app_dir, tools_to_auto_execute=["echo", "add", "record", "read_file"],
        envs={"MCP_CALLS_FILE": str(calls_file)})
    gateway.start()
    gateway.calls_file = calls_file
    try:
        wait_connected(gateway, {"fs", "web", "legacy"})
        yield gateway
    finally:
        gateway.stop()
        http.stop()
        sse.stop()


def wait_connected(gateway, names, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = requests.get(gateway.url + "/api/mcp/clients", timeout=10).json()["clients"]
        if {c["name"] for c in clients if c["state"] == "connected"} >= set(names):
            return clients
        time.sleep(0.1)
    raise AssertionError(f"not connected: {clients}\n{gateway.log()[-3000:]}")


def execute(gateway, name, arguments, *, headers=None, call_id="call_1"):
    body = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return requests.post(gateway.url + EXECUTE, json=body, headers=headers, timeout=30)


def chat(gateway, body=None, headers=None, **extra):
    body = dict(body or {"model": "openai/gpt-4o-mini", "messages": HELLO}, **extra)
    return requests.post(gateway.url + CHAT, json=body, headers=headers, timeout=30)


def sent_tools(upstream, index=-1):
    body = upstream.requests[index].body
    return [t["function"]["name"] for t in body.get("tools") or []]


def sse_chunks(text):
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: ") and block != "data: [DONE]":
            out.append(json.loads(block[6:]))
    return out


# -- clients ------------------------------------------------------------------------------------


def test_clients_list_their_type_state_and_tools(mcp_gateway):
    clients = {c["name"]: c for c in requests.get(mcp_gateway.url + "/api/mcp/clients").json()["clients"]}
    assert {name: c["type"] for name, c in clients.items()} == {"fs": "stdio", "web": "http", "legacy": "sse"}
    assert all(c["state"] == "connected" and "error" not in c for c in clients.values())
    web_tools = {t["name"]: t for t in clients["web"]["tools"]}
    assert web_tools["echo"]["executable"] and not web_tools["read_file"]["executable"]
    assert web_tools["echo"]["description"] == "Return the text unchanged."
    assert clients["web"]["config"]["headers"] == {"X-Test": "env.MCP_TEST_HEADER"}  # references, never values


# -- /v1/mcp/tool/execute -----------------------------------------------------------------------


def test_execute_the_spec_example_verbatim_reads_a_real_file(mcp_gateway):
    reply = requests.post(mcp_gateway.url + EXECUTE, data=SPEC_EXECUTE_BODY,
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 200, reply.text
    on_disk = (Path(mcp_gateway.app_dir) / "config.json").read_text()
    assert reply.json() == {"role": "tool", "content": {"content_str": on_disk}, "tool_call_id": "call_123"}
    assert json.loads(reply.json()["content"]["content_str"])["mcp"]["client_configs"][1]["name"] == "web"


def test_execute_by_full_name_on_each_transport(mcp_gateway):
    for name in ("fs-echo", "web-echo", "legacy-echo"):
        reply = execute(mcp_gateway, name, {"text": f"hello {name}"}, call_id=name)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"role": "tool", "content": {"content_str": f"hello {name}"}, "tool_call_id": name}
    assert execute(mcp_gateway, "web-add", {"a": 2, "b": 40}).json()["content"]["content_str"] == "42"


def test_execute_responses_format(mcp_gateway):
    body = {"type": "function_call", "call_id": "fc_1", "name": "fs-add", "arguments": '{"a": 1, "b": 2}'}
    reply = requests.post(mcp_gateway.url + EXECUTE + "?format=responses", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"type": "function_call_output", "call_id": "fc_1", "output": "3"}
    missing = requests.post(mcp_gateway.url + EXECUTE + "?format=responses", json={"type": "function_call"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "name"


@pytest.mark.parametrize("body, param", [
    ({"id": "c", "type": "function", "function": {"arguments": "{}"}}, "function.name"),
    ({"id": "c", "type": "function", "function": {"name": "", "arguments": "{}"}}, "function.name"),
    ({"id": "c", "type": "function"}, "function"),
    ({"id": "c", "type": "function", "function": {"name": "fs-echo", "arguments": "{not json"}}, "function.arguments"),
    ({"id": "c", "type": "function", "function": {"name": "fs-echo", "arguments": "[1, 2]"}}, "function.arguments"),
])
def test_execute_bad_requests_name_the_field(mcp_gateway, body, param):
    reply = requests.post(mcp_gateway.url + EXECUTE, json=body, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["error"]["param"] == param and error["is_bifrost_error"] is False
    if param == "function.name":
        assert "Tool function name is required" in error["error"]["message"]


def test_execute_invalid_json_body_and_format(mcp_gateway):
    assert requests.post(mcp_gateway.url + EXECUTE, data=b"{oops",
                         headers={"Content-Type": "application/json"}).status_code == 400
    reply = requests.post(mcp_gateway.url + EXECUTE + "?format=xml", json={})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "format"


def test_execute_unknown_tool_is_404_and_filtered_tool_is_403(mcp_gateway):
    unknown = execute(mcp_gateway, "fs-nope", {})
    assert unknown.status_code == 404 and "fs-nope" in unknown.json()["error"]["message"]
    assert execute(mcp_gateway, "nope", {}).status_code == 404
    # web has read_file, but it is not in web's tools_to_execute
    blocked = execute(mcp_gateway, "web-read_file", {"path": "config.json"})
    assert blocked.status_code == 403 and "web-read_file" in blocked.json()["error"]["message"]
    assert blocked.json()["type"] == "mcp_tool_blocked"
    # the include headers filter execution too
    headers = {"x-bf-mcp-include-clients": "web"}
    filtered = execute(mcp_gateway, "fs-echo", {"text": "x"}, headers=headers)
    assert filtered.status_code == 403 and "fs-echo" in filtered.json()["error"]["message"]
    assert execute(mcp_gateway, "web-echo", {"text": "x"}, headers=headers).status_code == 200
    assert execute(mcp_gateway, "fs-echo", {"text": "x"}, headers={"x-bf-mcp-include-tools": ""}).status_code == 403


def test_bare_name_must_match_exactly_one_allowed_tool(mcp_gateway):
    # echo is allowed on fs, web and legacy: ambiguous
    reply = execute(mcp_gateway, "echo", {"text": "x"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "ambiguous_tool"
    # ... unless the headers leave exactly one
    only_web = execute(mcp_gateway, "echo", {"text": "x"}, headers={"x-bf-mcp-include-clients": "web"})
    assert only_web.status_code == 200 and only_web.json()["content"]["content_str"] == "x"


def test_a_tool_error_is_a_200_with_its_text(mcp_gateway):
    reply = execute(mcp_gateway, "web-fail", {"message": "disk on fire"})
    assert reply.status_code == 200, reply.text
    assert "disk on fire" in reply.json()["content"]["content_str"]


def test_a_hanging_tool_gets_504_while_the_worker_serves_others(mcp_gateway):
    results = {}

    def hang():
        started = time.monotonic()
        results["hang"] = execute(mcp_gateway, "web-hang", {"seconds": 30})
        results["hang_seconds"] = time.monotonic() - started

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(0.3)
    quick = []
    for i in range(5):  # the gateway has one worker: these are served while the tool hangs
        started = time.monotonic()
        reply = execute(mcp_gateway, "fs-echo", {"text": str(i)})
        quick.append((reply.status_code, time.monotonic() - started))
    health = requests.get(mcp_gateway.url + "/health", timeout=5)
    assert "hang" not in results, "the quick calls must finish before the hanging one times out"
    thread.join(30)
    assert all(status == 200 for status, _ in quick) and health.status_code == 200
    reply = results["hang"]
    assert reply.status_code == 504, reply.text
    assert reply.json()["is_bifrost_error"] is True and "2s" in reply.json()["error"]["message"]
    assert 1.8 < results["hang_seconds"] < 10


# -- injection ------------------------------------------------------------------------------------

EVERY_TOOL = sorted(FS_TOOLS + WEB_TOOLS + LEGACY_TOOLS)


@pytest.mark.parametrize("headers, expected", [
    ({}, EVERY_TOOL),
    ({"x-bf-mcp-include-clients": "web"}, WEB_TOOLS),
    ({"x-bf-mcp-include-clients": "web, legacy"}, WEB_TOOLS + LEGACY_TOOLS),
    ({"x-bf-mcp-include-clients": ""}, []),
    ({"x-bf-mcp-include-tools": "fs-echo,web-*"}, ["fs-echo"] + WEB_TOOLS),
    ({"x-bf-mcp-include-tools": ""}, []),
    ({"x-bf-mcp-include-clients": "fs", "x-bf-mcp-include-tools": "fs-add,web-echo"}, ["fs-add"]),
])
@pytest.mark.parametrize("stream", [False, True])
def test_injected_tools_follow_tools_to_execute_and_headers(mcp_gateway, upstream, headers, expected, stream):
    upstream.set_default(Reply(content="ok", tool_call=False))
    reply = chat(mcp_gateway, headers=headers, stream=stream)
    assert reply.status_code == 200, reply.text
    assert sorted(sent_tools(upstream)) == sorted(expected)
    if expected:
        tool = next(t for t in upstream.requests[-1].body["tools"] if t["function"]["name"] == expected[0])
        assert tool["type"] == "function" and tool["function"]["parameters"]["type"] == "object"


def test_injection_keeps_the_requests_tools_and_never_duplicates_a_name(mcp_gateway, upstream):
    upstream.set_default(Reply(content="ok", tool_call=False))
    own = [{"type": "function", "function": {"name": "fs-echo", "description": "the client's own",
                                             "parameters": {"type": "object", "properties": {}}}},
           {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    reply = chat(mcp_gateway, {"model": "openai/gpt-4o-mini", "messages": HELLO, "tools": own},
                 headers={"x-bf-mcp-include-clients": "fs"})
    assert reply.status_code == 200, reply.text
    names = sent_tools(upstream)
    assert names[:2] == ["fs-echo", "get_weather"] and names.count("fs-echo") == 1
    assert sorted(names) == sorted(FS_TOOLS + ["get_weather"])
    assert upstream.requests[-1].body["tools"][0]["function"]["description"] == "the client's own"


def test_no_injection_into_text_completions(mcp_gateway, upstream):
    reply = requests.post(mcp_gateway.url + "/v1/completions", json={"model": "openai/gpt-3.5-turbo-instruct",
                                                                     "prompt": "hi"}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert "tools" not in upstream.requests[-1].body


# -- agent mode --------------------------------------------------------------------------------


def test_agent_mode_runs_auto_tools_and_calls_the_model_again(mcp_gateway, upstream):
    upstream.plan(Reply(tool_call={"name": "fs-read_file", "arguments": {"path": "config.json"}}))
    reply = chat(mcp_gateway)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert body["choices"][0]["finish_reason"] == "stop"
    first, second = upstream.requests
    sent = second.body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "fs-read_file"
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]
    assert sent[2]["content"] == (Path(mcp_gateway.app_dir) / "config.json").read_text()
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_agent_mode_usage_covers_every_turn(mcp_gateway, upstream):
    from tests.fakes.openai import prompt_tokens

    upstream.plan(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "ping"}}))
    body = chat(mcp_gateway).json()
    first, second = upstream.requests
    assert body["usage"]["prompt_tokens"] == prompt_tokens(first.body) + prompt_tokens(second.body)
    alone = chat(mcp_gateway, {"model": "openai/gpt-4o-mini", "messages": second.body["messages"]}).json()
    assert body["usage"]["completion_tokens"] > alone["usage"]["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True])
def test_agent_mode_through_the_anthropic_adapter(mcp_gateway, upstream, stream):
    upstream.plan(Reply(tool_call={"name": "fs-add", "arguments": {"a": 2, "b": 3}}))
    reply = chat(mcp_gateway, {"model": "anthropic/claude-3-5-sonnet-20241022", "messages": HELLO, "max_tokens": 100},
                 stream=stream)
    assert reply.status_code == 200, reply.text
    first, second = upstream.requests
    assert first.path == "/v1/messages" and any(t["name"] == "fs-add" for t in first.body["tools"])
    turn = second.body["messages"]
    assert turn[1]["role"] == "assistant" and turn[1]["content"][-1]["type"] == "tool_use"
    result = turn[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == turn[1]["content"][-1]["id"]
    assert result["content"] in ("5", [{"type": "text", "text": "5"}])
    if stream:
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(reply.text) if c.get("choices"))
    else:
        text = reply.json()["choices"][0]["message"]["content"]
    assert text


def test_agent_mode_runs_several_calls_concurrently(mcp_gateway, upstream):
    upstream.plan(Reply(tool_call=[{"name": "fs-echo", "arguments": {"text": "one"}},
                                   {"name": "fs-add", "arguments": {"a": 20, "b": 22}}]))
    reply = chat(mcp_gateway)
    assert reply.status_code == 200, reply.text
    tool_messages = [m for m in upstream.requests[1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["one", "42"]


def test_agent_mode_streams_the_final_turn(mcp_gateway, upstream):
    upstream.plan(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "streamed"}}))
    reply = chat(mcp_gateway, stream=True, stream_options={"include_usage": True})
    assert reply.status_code == 200, reply.text
    assert reply.text.rstrip().endswith("data: [DONE]")
    chunks = sse_chunks(reply.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == DEFAULT_TEXT
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c.get("choices"))
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1
    from tests.fakes.openai import prompt_tokens

    assert usage[0]["prompt_tokens"] == sum(prompt_tokens(r.body) for r in upstream.requests)
    assert upstream.requests[1].body["messages"][2]["content"] == "streamed"


def test_agent_mode_stops_at_max_agent_depth(mcp_gateway, upstream):
    upstream.set_default(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "again"}}))
    reply = chat(mcp_gateway)
    assert reply.status_code == 200, reply.text
    assert len(upstream.requests) == 3  # max_agent_depth 2: two rounds of tools, then the last reply as it is
    message = reply.json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "fs-echo"
    assert reply.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_agent_mode_stream_stops_at_max_agent_depth(mcp_gateway, upstream):
    upstream.set_default(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "again"}}))
    reply = chat(mcp_gateway, stream=True)
    assert reply.status_code == 200, reply.text
    assert len(upstream.requests) == 3
    chunks = sse_chunks(reply.text)
    calls = [tc for c in chunks if c.get("choices") for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls and calls[0]["function"]["name"] == "fs-echo"


@pytest.mark.parametrize("stream", [False, True])
def test_mixed_calls_run_the_auto_ones_and_return_the_rest(mcp_gateway, upstream, stream):
    upstream.plan(Reply(tool_call=[{"name": "fs-echo", "arguments": {"text": "ran inside"}},
                                   {"name": "web-add", "arguments": {"a": 1, "b": 1}}]))
    reply = chat(mcp_gateway, stream=stream)
    assert reply.status_code == 200, reply.text
    assert len(upstream.requests) == 1
    if stream:
        chunks = sse_chunks(reply.text)
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        calls = [tc for c in chunks if c.get("choices") for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0]["finish_reason"]]
    else:
        choice = reply.json()["choices"][0]
        content, calls, finish = choice["message"]["content"], choice["message"]["tool_calls"], [choice["finish_reason"]]
    assert [c["function"]["name"] for c in calls] == ["web-add"]
    assert "fs-echo returned: ran inside" in content
    assert finish == ["tool_calls"]


def test_a_side_effect_happens_once_per_call(mcp_gateway, upstream):
    mcp_gateway.calls_file.unlink(missing_ok=True)
    upstream.plan(Reply(tool_call={"name": "fs-record", "arguments": {"note": "agent"}}))
    assert chat(mcp_gateway).status_code == 200
    assert execute(mcp_gateway, "fs-record", {"note": "direct"}).status_code == 200
    lines = mcp_gateway.calls_file.read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["agent", "direct"]


def test_openai_sdk_sees_agent_mode_answers(mcp_gateway, upstream):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=mcp_gateway.url + "/v1", api_key="unused")
    upstream.plan(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "sdk"}}))
    completion = client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert completion.choices[0].message.content == DEFAULT_TEXT
    upstream.plan(Reply(tool_call={"name": "fs-echo", "arguments": {"text": "sdk"}}))
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == DEFAULT_TEXT


# -- /mcp: the gateway as an MCP server ----------------------------------------------------------


def test_mcp_endpoint_with_the_official_client(mcp_gateway):
    init, listed, _, echo = asyncio.run(mcp_round_trip(mcp_gateway.url + "/mcp"))
    assert init.server_info.name == "bifrost-py" and init.capabilities.tools is not None
    names = {t.name for t in listed.tools}
    assert set(FS_TOOLS + WEB_TOOLS + LEGACY_TOOLS) <= names and "web-read_file" not in names
    web_echo = next(t for t in listed.tools if t.name == "web-echo")
    assert web_echo.description == "Return the text unchanged." and web_echo.input_schema["type"] == "object"
    assert echo.is_error is False and echo.content[0].text == "over mcp"


def test_mcp_endpoint_filters_by_the_include_headers(mcp_gateway):
    _, listed, _, echo = asyncio.run(mcp_round_trip(mcp_gateway.url + "/mcp", {"x-bf-mcp-include-clients": "web"}))
    assert sorted(t.name for t in listed.tools) == sorted(WEB_TOOLS)
    assert echo.content[0].text == "over mcp"


def test_mcp_endpoint_get_opens_an_sse_stream(mcp_gateway):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "curl-like", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    reply = requests.post(mcp_gateway.url + "/mcp", json=init, headers=accept, timeout=10)
    assert reply.status_code == 200, reply.text
    assert '"serverInfo":{"name":"bifrost-py"' in reply.text
    assert "mcp-session-id" not in reply.headers  # stateless by default: any worker serves any request
    listed = requests.post(mcp_gateway.url + "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                           headers={**accept, "mcp-protocol-version": "2025-06-18"}, timeout=10)
    assert listed.status_code == 200 and '"name":"web-echo"' in listed.text
    with requests.get(mcp_gateway.url + "/mcp", headers={"Accept": "text/event-stream",
                                                         "mcp-protocol-version": "2025-06-18"},
                      stream=True, timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
    assert requests.get(mcp_gateway.url + "/health", timeout=5).status_code == 200


def test_concurrent_executions(mcp_gateway):
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: execute(mcp_gateway, ["fs-echo", "web-echo", "legacy-echo"][i % 3],
                                                  {"text": f"n{i}"}), range(24)))
    assert [r.json()["content"]["content_str"] for r in replies] == [f"n{i}" for i in range(24)]


def test_the_default_flow_client_executes_and_sends_the_result_back(mcp_gateway, upstream):
    """Not auto-executable: the tool call reaches the client, which runs it and continues the chat with
    /v1/mcp/tool/execute's reply message as it is (the spec's multi-turn form)."""
    upstream.plan(Reply(tool_call={"name": "web-echo", "arguments": {"text": "from the client"}}))
    first = chat(mcp_gateway).json()
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls" and len(upstream.requests) == 1
    tool_call = message["tool_calls"][0]
    assert tool_call["function"]["name"] == "web-echo"
    executed = requests.post(mcp_gateway.url + EXECUTE, json=tool_call, timeout=30)
    assert executed.status_code == 200, executed.text
    tool_message = executed.json()
    assert tool_message == {"role": "tool", "content": {"content_str": "from the client"},
                            "tool_call_id": tool_call["id"]}
    upstream.set_default(Reply(content="done", tool_call=False))
    messages = HELLO + [{"role": "assistant", "content": None, "tool_calls": [tool_call]}, tool_message]
    second = chat(mcp_gateway, {"model": "openai/gpt-4o-mini", "messages": messages})
    assert second.status_code == 200, second.text
    assert upstream.requests[-1].body["messages"][-1]["content"] == "from the client"


@pytest.mark.parametrize("stream", [False, True])
def test_the_anthropic_surface_gets_injected_tools_and_agent_mode(mcp_gateway, upstream, stream):
    """/anthropic to an Anthropic upstream would pass the body through; injected tools make it translated."""
    upstream.plan(Reply(tool_call={"name": "fs-add", "arguments": {"a": 2, "b": 3}}))
    body = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "add 2 and 3"}]}
    reply = requests.post(mcp_gateway.url + "/anthropic/v1/messages", json=body,
                          headers={"anthropic-version": "2023-06-01"}, timeout=30)
    assert reply.status_code == 200, reply.text
    first, second = upstream.requests
    assert first.path == "/v1/messages" and any(t["name"] == "fs-add" for t in first.body["tools"])
    result = second.body["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["content"] in ("5", [{"type": "text", "text": "5"}])
    if stream:
        assert "event: message_stop" in reply.text and "tool_use" not in reply.text
    else:
        assert reply.json()["type"] == "message" and reply.json()["stop_reason"] == "end_turn"
