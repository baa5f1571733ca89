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


def check(reply: requests.Response, changed: list[tuple]) -> None:
    assert reply.status_code < 500, (reply.status_code, reply.text[:500], changed)
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        for line in reply.text.splitlines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert event.get("status_code", 200) < 500, (event, changed)
        return
    if reply.status_code >= 400:
        body = reply.json()
        assert body["status_code"] == reply.status_code, body
        error = body["error"]
        message = error["message"]
        named = error.get("param") or any(str(path[0]) in message for path in changed)
        assert named, (reply.status_code, body, changed)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_random_field_values_never_give_a_5xx_and_every_4xx_names_a_field(gateway, fake, route):
    path, base, fields = ROUTES[route]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(fields), json_values), min_size=1, max_size=3))
    def run(changes):
        body = copy.deepcopy(base)
        for field_path, value in changes:
            put(body, field_path, value)
        reply = requests.post(gateway.url + path, json=body, timeout=20)
        check(reply, [field_path for field_path, _ in changes])

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
