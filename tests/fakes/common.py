"""Helpers shared by the fake dialects: ids, SSE framing, token counts, text splitting."""
from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import dataclass, field

DEFAULT_TEXT = "Hello from the fake upstream."

_ALNUM = string.ascii_letters + string.digits


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def now() -> int:
    return int(time.time())


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(data, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a str."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def count_tokens(text) -> int:
    """Deterministic stand-in for a tokenizer: the number of whitespace-separated words."""
    return len(text.split()) if isinstance(text, str) else 0


def split_text(text: str, pieces: int | None) -> list[str]:
    """Split `text` into stream pieces that join back to the streamed content.

    pieces=None: one piece per word ("Hello", " from", " the", ...).  Fewer pieces than words:
    words are grouped evenly.  More pieces than words: the text is repeated until there are enough
    words (the streamed content is then the joined pieces, which is what usage counts).
    """
    words = text.split(" ")
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if pieces is None:
        return tokens
    pieces = max(1, pieces)
    if pieces > len(tokens):
        while len(tokens) < pieces:
            tokens += [" " + w for w in words]
        return tokens[:pieces]
    return ["".join(group) for group in split_even_list(tokens, pieces)]


def split_even_list(items: list, pieces: int) -> list[list]:
    size, extra = divmod(len(items), pieces)
    out, pos = [], 0
    for i in range(pieces):
        step = size + (1 if i < extra else 0)
        out.append(items[pos:pos + step])
        pos += step
    return out


def split_even(text: str, pieces: int) -> list[str]:
    """Split a string (tool arguments JSON) into `pieces` non-empty parts."""
    pieces = max(1, min(pieces, len(text) or 1))
    return ["".join(part) for part in split_even_list(list(text), pieces)]


_EXAMPLE_BY_TYPE = {"string": "Paris", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}


def example_arguments(schema) -> dict:
    """Arguments for a tool call built from the schema's required properties.

    Without required properties the classic weather example {"location": "Paris"} is used.
    """
    if not isinstance(schema, dict):
        return {"location": "Paris"}
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    required = [name for name in required if isinstance(name, str)]
    if not required:
        return {"location": "Paris"}
    args = {}
    for name in required:
        prop = props.get(name) if isinstance(props.get(name), dict) else {}
        if isinstance(prop.get("enum"), list) and prop["enum"]:
            args[name] = prop["enum"][0]
            continue
        kind = prop.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        args[name] = _EXAMPLE_BY_TYPE.get(kind, "Paris")
    return args


@dataclass
class ToolCall:
    name: str
    arguments: str          # JSON text
    id: str = ""


@dataclass(frozen=True)
class Endpoint:
    """A route a dialect recognised: kind is e.g. "chat", "completions", "models", "messages"."""
    kind: str
    deployment: str | None = None      # Azure deployment name from the path
    model: str | None = None           # Gemini: the model named in the path


@dataclass
class Response:
    """What a dialect wants sent back: a JSON body, or a list of SSE events (bytes)."""
    status: int = 200
    body: object = None
    events: list | None = None
    headers: dict = field(default_factory=dict)
    malformed: bytes = b"data: {not json\n\n"   # sent by MalformedChunk in a stream
    # sent by ErrorEvent in a stream: the dialect's own in-stream error (OpenAI: a data event with "error")
    error_event: bytes = (b'data: {"error":{"message":"The server had an error while processing your request.",'
                          b'"type":"server_error","param":null,"code":null}}\n\n')
