r"""The unified-API examples of the HTTP API spec (../spec/003_2c891000236f5e1b.txt), run with curl.

The curl commands are copied verbatim from the spec; the only change is the base URL
(http://localhost:8080 -> the test gateway).  Examples the spec gives only as a JSON request body are
sent with `curl -sS -X POST URL -H "Content-Type: application/json" -d '<body>'` (plus -N to stream).
Each response is checked against the shape the spec documents next to the example.

The drop-in examples (/openai, /anthropic, /genai), MCP (/v1/mcp/tool/execute) and /metrics belong to
later issues and are not covered here.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.behaviours import Reply, Status
from tests.fakes.common import DEFAULT_TEXT

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "003_2c891000236f5e1b.txt"
SPEC_BASE_URL = "http://localhost:8080"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")

# -- the spec's examples, verbatim --------------------------------------------------------------

# "POST /v1/chat/completions" -> "cURL Example"
CURL_CHAT = r"""curl -X POST http://localhost:8080/v1/chat/completions \
  -H "Content-Type: application/json" \
  -d '{
    "model": "openai/gpt-4o-mini",
    "messages": [
      {"role": "user", "content": "What is the capital of France?"}
    ]
  }'"""

# "POST /v1/chat/completions" -> "Request Body" (params and fallbacks)
BODY_CHAT_PARAMS_FALLBACKS = r"""{
  "model": "openai/gpt-4o-mini",
  "messages": [
    {
      "role": "user",
      "content": "Hello, how are you?"
    }
  ],
  "params": {
    "temperature": 0.7,
    "max_tokens": 1000
  },
  "fallbacks": ["anthropic/claude-3-sonnet-20240229"]
}"""

# "Streaming Responses" -> "Request with Streaming"
BODY_STREAM = r"""{
  "model": "openai/gpt-4o-mini",
  "messages": [{"role": "user", "content": "Write a short story."}],
  "stream": true
}"""

# "POST /v1/text/completions" -> "Request Body"
BODY_TEXT = r"""{
  "model": "openai/gpt-4o-mini",
  "text": "The future of AI is",
  "params": {
    "temperature": 0.8,
    "max_tokens": 150
  }
}"""

# "Chat Message Format" -> "Multimodal Content" (a message, sent inside a request body)
MESSAGE_MULTIMODAL = r"""{
  "role": "user",
  "content": [
    {
      "type": "text",
      "text": "What's in this image?"
    },
    {
      "type": "image_url",
      "image_url": {
        "url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA..."
      }
    }
  ]
}"""

# "Tool Calling" -> "Automatic Tool Integration" (no MCP client configured here: a plain answer)
CURL_TOOL_INTEGRATION = r"""curl -X POST http://localhost:8080/v1/chat/completions \
  -H "Content-Type: application/json" \
  -d '{
    "model": "openai/gpt-4o-mini",
    "messages": [
      {"role": "user", "content": "List files in the current directory"}
    ]
  }'"""

# "Tool Calling" -> "Multi-turn Tool Conversations" (note: no Content-Type header, so curl sends
# application/x-www-form-urlencoded)
CURL_MULTI_TURN = r"""# Initial request
curl -X POST http://localhost:8080/v1/chat/completions \
  -d '{
    "model": "openai/gpt-4o-mini",
    "messages": [
      {"role": "user", "content": "Read the README.md file"},
      {
        "role": "assistant",
        "tool_calls": [{
          "id": "call_123",
          "type": "function",
          "function": {"name": "read_file", "arguments": "{\"path\": \"README.md\"}"}
        }]
      },
      {
        "role": "tool",
        "content": {"content_str": "# Bifrost\n\nBifrost is..."},
        "tool_call_id": "call_123"
      },
      {"role": "user", "content": "Summarize the main features"}
    ]
  }'"""

EXAMPLES = {
    "CURL_CHAT": CURL_CHAT, "BODY_CHAT_PARAMS_FALLBACKS": BODY_CHAT_PARAMS_FALLBACKS, "BODY_STREAM": BODY_STREAM,
    "BODY_TEXT": BODY_TEXT, "MESSAGE_MULTIMODAL": MESSAGE_MULTIMODAL, "CURL_TOOL_INTEGRATION": CURL_TOOL_INTEGRATION,
    "CURL_MULTI_TURN": CURL_MULTI_TURN,
}


# -- running them -------------------------------------------------------------------------------

def run_spec_curl(gateway, command: str) -> str:
    """Run a spec curl command as a user pasting it into a shell would, against the gateway."""
    assert command.count(SPEC_BASE_URL) == 1
    done = subprocess.run(command.replace(SPEC_BASE_URL, gateway.url), shell=True, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def post_body(gateway, path: str, body: str, *, stream: bool = False) -> tuple[int, str]:
    """curl -sS [-N] -X POST URL -H "Content-Type: application/json" -d '<body>'; returns (status, output)."""
    argv = ["curl", "-sS", *(["-N"] if stream else []), "-X", "POST", gateway.url + path,
            "-H", "Content-Type: application/json", "-d", body, "-w", "\n%{http_code}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    output, _, status = done.stdout.rpartition("\n")
    return int(status), output


def assert_usage(usage: dict) -> None:
    """usage as the spec documents it: prompt/completion/total tokens, total = the sum."""
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage[name], int) and usage[name] > 0, usage
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def assert_chat_completion(output: str) -> dict:
    """The documented chat response: id, object, created, choices[index, message{role, content},
    finish_reason], usage."""
    body = json.loads(output)
    assert body["object"] == "chat.completion", body
    assert isinstance(body["id"], str) and body["id"]
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert_usage(body["usage"])
    return body


def sse_data(output: str) -> list[str]:
    """The data of each event of an SSE body, in order."""
    events = [e for e in re.split(r"\r?\n\r?\n", output) if e.strip()]
    data = []
    for event in events:
        lines = [line for line in event.splitlines() if not line.startswith(":")]
        assert lines and all(line.startswith("data: ") for line in lines), event
        data.append("\n".join(line[len("data: "):] for line in lines))
    return data


# -- the examples are the spec's --------------------------------------------------------------

@pytest.mark.skipif(not SPEC.exists(), reason="the spec document is not in this checkout")
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_are_verbatim_from_the_spec(name):
    squeeze = lambda text: re.sub(r"\s+", "", text)  # noqa: E731
    assert squeeze(EXAMPLES[name]) in squeeze(SPEC.read_text()), f"{name} no longer matches the spec"


# -- each example against the gateway -----------------------------------------------------------

def test_curl_chat_completion(gateway, fake):
    fake.plan(Reply(content="The capital of France is Paris."))
    body = assert_chat_completion(run_spec_curl(gateway, CURL_CHAT))
    assert body["choices"][0]["message"]["content"] == "The capital of France is Paris."
    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions" and seen.model == "gpt-4o-mini"
    assert seen.body["messages"] == [{"role": "user", "content": "What is the capital of France?"}]


def test_request_body_with_params_and_fallbacks(gateway, fake):
    status, output = post_body(gateway, "/v1/chat/completions", BODY_CHAT_PARAMS_FALLBACKS)
    assert status == 200, output
    assert_chat_completion(output)
    [seen] = fake.requests                        # the primary answered: the fallback is not called
    assert seen.model == "gpt-4o-mini"
    assert seen.body["temperature"] == 0.7 and seen.body["max_tokens"] == 1000
    assert "params" not in seen.body and "fallbacks" not in seen.body


def test_request_body_with_params_and_fallbacks_when_the_primary_fails(gateway, fake):
    fake.set_default(Status(503, "openai is overloaded"), model="gpt-4o-mini")
    fake.plan(Reply(content="Claude here."), model="claude-3-sonnet-20240229")
    status, output = post_body(gateway, "/v1/chat/completions", BODY_CHAT_PARAMS_FALLBACKS)
    assert status == 200, output
    body = assert_chat_completion(output)
    assert body["choices"][0]["message"]["content"] == "Claude here."
    fallback = fake.requests[-1]
    assert fallback.path == "/v1/messages" and fallback.model == "claude-3-sonnet-20240229"
    assert fallback.body["temperature"] == 0.7 and fallback.body["max_tokens"] == 1000
    assert all(r.model == "gpt-4o-mini" for r in fake.requests[:-1])


def test_streaming_request_body(gateway, fake):
    status, output = post_body(gateway, "/v1/chat/completions", BODY_STREAM, stream=True)
    assert status == 200, output
    data = sse_data(output)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk", chunk
        assert isinstance(chunk["id"], str) and isinstance(chunk["created"], int) and chunk["model"]
        assert all(c["index"] == 0 and isinstance(c["delta"], dict) for c in chunk["choices"])
    with_choice = [c["choices"][0] for c in chunks if c["choices"]]
    content = [c["delta"]["content"] for c in with_choice if c["delta"].get("content")]
    assert "".join(content) == DEFAULT_TEXT and len(content) > 1
    assert with_choice[0]["delta"].get("role") == "assistant"
    assert [c["finish_reason"] for c in with_choice if c["finish_reason"]] == ["stop"]
    assert len({c["id"] for c in chunks}) == 1    # one id for the whole stream
    [seen] = fake.requests
    assert seen.body["stream"] is True and seen.body["messages"] == [{"role": "user", "content": "Write a short story."}]


def test_text_completion_request_body(gateway, fake):
    fake.plan(Reply(content="incredibly promising", finish_reason="length"))
    status, output = post_body(gateway, "/v1/text/completions", BODY_TEXT)
    assert status == 200, output
    body = json.loads(output)
    assert body["object"] == "text_completion", body
    assert isinstance(body["id"], str) and body["id"] and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["text"] == "incredibly promising" and choice["index"] == 0
    assert choice["finish_reason"] == "length"
    assert_usage(body["usage"])
    [seen] = fake.requests
    assert seen.path == "/v1/completions" and seen.model == "gpt-4o-mini"
    assert seen.body["prompt"] == "The future of AI is" and "text" not in seen.body
    assert seen.body["temperature"] == 0.8 and seen.body["max_tokens"] == 150


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"])
def test_multimodal_message(gateway, fake, model):
    body = '{"model": "%s", "messages": [%s]}' % (model, MESSAGE_MULTIMODAL)
    status, output = post_body(gateway, "/v1/chat/completions", body)
    assert status == 200, output
    assert_chat_completion(output)
    [seen] = fake.requests
    [message] = seen.body["messages"]
    if model.startswith("openai/"):
        assert message == json.loads(MESSAGE_MULTIMODAL)
    else:
        assert message["role"] == "user"
        assert message["content"][0] == {"type": "text", "text": "What's in this image?"}
        assert message["content"][1] == {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAA..."}}


def test_curl_automatic_tool_integration(gateway, fake):
    assert_chat_completion(run_spec_curl(gateway, CURL_TOOL_INTEGRATION))
    [seen] = fake.requests
    assert seen.body["messages"] == [{"role": "user", "content": "List files in the current directory"}]


def test_curl_multi_turn_tool_conversation_without_content_type(gateway, fake):
    fake.plan(Reply(content="Bifrost is a gateway."))
    body = assert_chat_completion(run_spec_curl(gateway, CURL_MULTI_TURN))
    assert body["choices"][0]["message"]["content"] == "Bifrost is a gateway."
    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions" and seen.model == "gpt-4o-mini"
    assert seen.body["messages"] == [
        {"role": "user", "content": "Read the README.md file"},
        {"role": "assistant", "tool_calls": [{"id": "call_123", "type": "function", "function": {
            "name": "read_file", "arguments": "{\"path\": \"README.md\"}"}}]},
        {"role": "tool", "content": "# Bifrost\n\nBifrost is...", "tool_call_id": "call_123"},
        {"role": "user", "content": "Summarize the main features"},
    ]
