"""Property-based fuzzing of every route's request schema against the real server (issue 6, item 3).

Random JSON values of every type go into the fields each route reads, alone or several at
once. Whatever comes back must be below 500, and a 4xx must name the field it is about,
in ``error.param`` or (for an upstream's own validation message) in the message.
"""
from __future__ import annotations

import copy
import json
import os

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Bounded, so the suite stays fast, and derandomized so CI is repeatable. For a deeper run:
# FUZZ_EXAMPLES=2000 FUZZ_RANDOM=1 .venv/bin/python -m pytest tests/integration/test_fuzz.py
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 100)
ROUTE_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 40)  # per route: ~35 routes share the time
DERANDOMIZE = not os.environ.get("FUZZ_RANDOM")

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
                | st.sampled_from(["", "user", "assistant", "tool", "function", "auto", "none", "x/y", "openai/gpt-4o"]))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)

HELLO = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
ASSISTANT_CALL = {"role": "assistant", "content": None,
                  "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
TOOL_REPLY = {"role": "tool", "tool_call_id": "c1", "content": "ok"}

COMMON = [("model",), ("fallbacks",), ("fallbacks", 0), ("params",), ("params", "stream_options"),
          ("params", "temperature"), ("stream",), ("stream_options",), ("stream_options", "include_usage"),
          ("temperature",), ("top_p",), ("max_tokens",), ("stop",), ("user",), ("n",), ("seed",)]
CHAT_FIELDS = COMMON + [
    ("messages",), ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"),
    ("messages", 0, "content", 0), ("messages", 0, "content", 0, "type"), ("messages", 0, "name"),
    ("messages", 1), ("messages", 1, "tool_calls"), ("messages", 1, "tool_calls", 0, "function", "arguments"),
    ("messages", 1, "tool_calls", 0, "id"), ("messages", 2, "tool_call_id"), ("messages", 2, "content"),
    ("tools",), ("tools", 0), ("tools", 0, "type"), ("tools", 0, "function"), ("tools", 0, "function", "name"),
    ("tools", 0, "function", "parameters"), ("tool_choice",), ("parallel_tool_calls",), ("response_format",),
    ("max_completion_tokens",), ("logprobs",),
]
TEXT_FIELDS = COMMON + [("prompt",), ("prompt", 0), ("text",), ("suffix",), ("echo",), ("best_of",)]

EMBED_FIELDS = [("model",), ("input",), ("input", 0), ("encoding_format",), ("dimensions",), ("user",),
                ("fallbacks",)]
ANTHROPIC_BASE = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "messages": HELLO}
ANTHROPIC_FIELDS = [
    ("model",), ("max_tokens",), ("messages",), ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"),
    ("messages", 0, "content", 0), ("messages", 0, "content", 0, "type"), ("messages", 0, "content", 0, "text"),
    ("messages", 1), ("system",), ("system", 0), ("temperature",), ("top_p",), ("top_k",), ("stop_sequences",),
    ("stream",), ("tools",), ("tools", 0), ("tools", 0, "name"), ("tools", 0, "input_schema"), ("tool_choice",),
    ("tool_choice", "type"), ("metadata",), ("thinking",), ("thinking", "budget_tokens"), ("fallbacks",),
]
GENAI = "/genai/v1beta/models"
GENAI_BASE = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
GENAI_FIELDS = [
    ("contents",), ("contents", 0), ("contents", 0, "role"), ("contents", 0, "parts"), ("contents", 0, "parts", 0),
    ("contents", 0, "parts", 0, "text"), ("contents", 0, "parts", 0, "functionCall"), ("contents", 1),
    ("generationConfig",), ("generationConfig", "temperature"), ("generationConfig", "maxOutputTokens"),
    ("generationConfig", "stopSequences"), ("generationConfig", "responseMimeType"),
    ("generationConfig", "thinkingConfig"), ("systemInstruction",), ("systemInstruction", "parts"),
    ("tools",), ("tools", 0), ("tools", 0, "functionDeclarations"), ("toolConfig",), ("safetySettings",),
    ("generateContentRequest",),
]
GENAI_EMBED_FIELDS = [("content",), ("content", "parts"), ("content", "parts", 0), ("content", "parts", 0, "text"),
                      ("taskType",), ("title",), ("outputDimensionality",), ("model",)]
GENAI_BATCH_FIELDS = [("requests",), ("requests", 0), ("requests", 0, "model"), ("requests", 0, "content"),
                      ("requests", 0, "content", "parts"), ("requests", 0, "outputDimensionality"), ("requests", 1)]
MCP_CLIENT_FIELDS = [("name",), ("connection_type",), ("connection_string",), ("stdio_config",),
                     ("stdio_config", "command"), ("stdio_config", "args"), ("headers",), ("tools_to_execute",),
                     ("tools_to_skip",), ("is_ping_available",), ("auth_type",)]
BUDGET = {"max_limit": 10.0, "reset_duration": "1h"}
RATE_LIMIT = {"request_max_limit": 100, "request_reset_duration": "1m"}
OWNER_FIELDS = [("name",), ("budget_id",), ("rate_limit_id",), ("budget",), ("budget", "max_limit"),
                ("budget", "reset_duration"), ("budgets",), ("budgets", 0), ("rate_limit",),
                ("rate_limit", "request_max_limit"), ("rate_limit", "token_reset_duration")]
GOVERNANCE = {
    "budgets": (BUDGET, [("max_limit",), ("reset_duration",), ("calendar_aligned",), ("id",)]),
    "rate-limits": (RATE_LIMIT, [("token_max_limit",), ("token_reset_duration",), ("request_max_limit",),
                                 ("request_reset_duration",), ("calendar_aligned",)]),
    "customers": ({"name": "fuzz customer"}, OWNER_FIELDS),
    "teams": ({"name": "fuzz team"}, OWNER_FIELDS + [("customer_id",)]),
    "virtual-keys": ({"name": "fuzz key"}, OWNER_FIELDS + [
        ("value",), ("description",), ("is_active",), ("team_id",), ("customer_id",), ("allow_all_providers",),
        ("expires_at",), ("disable_content_logging",), ("provider_configs",), ("provider_configs", 0),
        ("provider_configs", 0, "provider"), ("provider_configs", 0, "weight"),
        ("provider_configs", 0, "allowed_models"), ("mcp_configs",), ("mcp_configs", 0)]),
}

ROUTES = {
    "chat-openai": ("/v1/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HELLO}, CHAT_FIELDS),
    "chat-anthropic": ("/v1/chat/completions",
                       {"model": "anthropic/claude-3-5-haiku-latest", "messages": HELLO}, CHAT_FIELDS),
    "chat-tools": ("/v1/chat/completions",
                   {"model": "anthropic/claude-3-5-haiku-latest", "tools": [TOOL],
                    "messages": [*HELLO, ASSISTANT_CALL, TOOL_REPLY]}, CHAT_FIELDS),
    "text-openai": ("/v1/text/completions", {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "hi"}, TEXT_FIELDS),
    "completions-anthropic": ("/v1/completions", {"model": "anthropic/claude-3-5-haiku-latest", "prompt": "hi"},
                              TEXT_FIELDS),
    "embeddings": ("/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "hi"}, EMBED_FIELDS),
    "openai-chat": ("/openai/v1/chat/completions", {"model": "gpt-4o-mini", "messages": HELLO}, CHAT_FIELDS),
    "openai-completions": ("/openai/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
                           TEXT_FIELDS),
    "openai-embeddings": ("/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"},
                          EMBED_FIELDS),
    "azure-chat": ("/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
                   {"messages": HELLO}, CHAT_FIELDS),
    "azure-embeddings": ("/openai/deployments/text-embedding-3-small-eu/embeddings?api-version=2024-10-21",
                         {"input": "hi"}, EMBED_FIELDS),
    "anthropic-messages": ("/anthropic/v1/messages", ANTHROPIC_BASE, ANTHROPIC_FIELDS, "anthropic"),
    "anthropic-messages-openai": ("/anthropic/v1/messages", {**ANTHROPIC_BASE, "model": "openai/gpt-4o-mini"},
                                  ANTHROPIC_FIELDS, "anthropic"),
    "anthropic-count-tokens": ("/anthropic/v1/messages/count_tokens",
                               {k: v for k, v in ANTHROPIC_BASE.items() if k != "max_tokens"}, ANTHROPIC_FIELDS,
                               "anthropic"),
    "genai-generate": (f"{GENAI}/gemini-2.0-flash:generateContent", GENAI_BASE, GENAI_FIELDS, "google"),
    "genai-generate-openai": (f"{GENAI}/openai/gpt-4o-mini:generateContent", GENAI_BASE, GENAI_FIELDS, "google"),
    "genai-stream": (f"{GENAI}/gemini-2.0-flash:streamGenerateContent?alt=sse", GENAI_BASE, GENAI_FIELDS, "google"),
    "genai-count-tokens": (f"{GENAI}/gemini-2.0-flash:countTokens", GENAI_BASE, GENAI_FIELDS, "google"),
    "genai-embed": (f"{GENAI}/text-embedding-004:embedContent", {"content": {"parts": [{"text": "hi"}]}},
                    GENAI_EMBED_FIELDS, "google"),
    "genai-batch-embed": (f"{GENAI}/text-embedding-004:batchEmbedContents",
                          {"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hi"}]}}]},
                          GENAI_BATCH_FIELDS, "google"),
    "mcp-tool-execute": ("/v1/mcp/tool/execute",
                         {"id": "c1", "type": "function", "function": {"name": "nosuch_tool", "arguments": "{}"}},
                         [("id",), ("type",), ("function",), ("function", "name"), ("function", "arguments")]),
    "mcp-client-add": ("/api/mcp/client", {"name": "fuzz", "connection_type": "http",
                                          "connection_string": "http://127.0.0.1:9/mcp"}, MCP_CLIENT_FIELDS),
    "realtime-client-secrets": ("/v1/realtime/client_secrets",
                                {"session": {"type": "realtime", "model": "openai/gpt-realtime"}},
                                [("session",), ("session", "model"), ("session", "type"), ("session", "voice"),
                                 ("session", "instructions"), ("expires_after",), ("expires_after", "anchor"),
                                 ("expires_after", "seconds")]),
    **{f"governance-create-{route}": (f"/api/governance/{route}", base, fields)
       for route, (base, fields) in GOVERNANCE.items()},
    **{f"governance-update-{route}": (f"/api/governance/{route}/{{id}}", base, fields, "bifrost", "PUT")
       for route, (base, fields) in GOVERNANCE.items()},
}


def put(body: dict, path: tuple, value) -> None:
    """Set ``value`` at ``path``, making room on the way (a missing list item or object is created)."""
    node = body
    for step, next_step in zip(path, path[1:]):
        child = node[step] if _has(node, step) else None
        wanted = list if isinstance(next_step, int) else dict
        if not isinstance(child, wanted):
            child = wanted()
            _set(node, step, child)
        node = child
    _set(node, path[-1], value)


def _has(node, step) -> bool:
    return (isinstance(node, dict) and step in node) or (isinstance(node, list) and isinstance(step, int)
                                                        and step < len(node))


def _set(node, step, value) -> None:
    if isinstance(node, list):
        while len(node) <= step:
            node.append({})
        node[step] = value
    else:
        node[step] = value


def check(reply: requests.Response, changed: list[tuple], dialect: str = "bifrost") -> None:
    assert reply.status_code < 500, (reply.status_code, reply.text[:500], changed)
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        for line in reply.text.splitlines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert event.get("status_code", 200) < 500, (event, changed)
                error = event.get("error") if isinstance(event.get("error"), dict) else {}
                assert not isinstance(error.get("code"), int) or error["code"] < 500, (event, changed)
        return
    if reply.status_code >= 400:
        body = reply.json()
        error = body["error"]
        if dialect == "anthropic":  # {"type": "error", "error": {"type", "message"}}
            assert body["type"] == "error" and isinstance(error["type"], str), body
            param = None
        elif dialect == "google":  # {"error": {"code", "message", "status"}}
            assert error["code"] == reply.status_code and isinstance(error["status"], str), body
            param = None
        else:
            assert body["status_code"] == reply.status_code, body
            param = error.get("param")
        message = error["message"]
        # Google spells fields in snake_case in its messages (output_dimensionality for outputDimensionality)
        squashed = message.replace("_", "").lower()
        named = param or any(str(path[0]) in message or str(path[0]).lower() in squashed for path in changed)
        assert named, (reply.status_code, body, changed)


@pytest.fixture(scope="module")
def entity_ids(gateway):
    """One entity of each governance kind, for the PUT routes to change."""
    ids = {}
    for route, (base, _) in GOVERNANCE.items():
        reply = requests.post(f"{gateway.url}/api/governance/{route}", json=base, timeout=20)
        assert reply.status_code == 200, reply.text
        entity = next(value for key, value in reply.json().items() if key != "message")
        ids[route] = entity["id"]
    return ids


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_random_field_values_never_give_a_5xx_and_every_4xx_names_a_field(gateway, fake, entity_ids, route):
    path, base, fields, *rest = ROUTES[route]
    dialect, method = (rest[0] if rest else "bifrost"), (rest[1] if len(rest) > 1 else "POST")
    if "{id}" in path:
        path = path.replace("{id}", entity_ids[path.split("/")[3]])

    @settings(max_examples=ROUTE_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(fields), json_values), min_size=1, max_size=3))
    def run(changes):
        body = copy.deepcopy(base)
        for field_path, value in changes:
            put(body, field_path, value)
        reply = requests.request(method, gateway.url + path, json=body, timeout=20)
        check(reply, [field_path for field_path, _ in changes], dialect)

    run()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_random_whole_bodies_are_a_4xx_naming_the_body(gateway, body):
    for path in ("/v1/chat/completions", "/v1/text/completions"):
        reply = requests.post(gateway.url + path, json=body, timeout=20)
        check(reply, [("body",)])
        assert reply.status_code >= 400  # no random value is a whole valid request


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(provider=st.text(max_size=20) | st.sampled_from(["openai", "anthropic", "groq", "nosuch", ""]))
def test_models_query_and_health_never_give_a_5xx(gateway, provider):
    reply = requests.get(gateway.url + "/v1/models", params={"provider": provider}, timeout=20)
    check(reply, [("provider",)])
    assert requests.get(gateway.url + "/health", timeout=5).status_code == 200
