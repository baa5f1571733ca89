"""The OpenAI dialect helpers for the canonical form.

Canonical requests and replies already have OpenAI's chat/completions shape; what is
left here are the conversions between the text-completion and chat forms, for
providers that only offer chat.
"""
from __future__ import annotations

import time
from typing import Any, Iterator

from app.errors import bad_request, echo

SYSTEM_ROLES = ("system", "developer")  # both become the target dialect's system instruction


def iter_messages(messages: list) -> Iterator[tuple[str, dict, Any]]:
    """(path, message, role) for each canonical message, for the converters to other dialects.

    A message that is not an object is a 400 naming it; an unknown role is the caller's
    to refuse with :func:`unsupported_role`.
    """
    for i, msg in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request("each message must be an object", param=path)
        yield path, msg, msg.get("role")


def iter_parts(content: list, path: str) -> Iterator[tuple[str, dict, Any]]:
    """(path, part, type) for each part of a canonical content array; a non-object is a 400."""
    for j, part in enumerate(content):
        where = f"{path}[{j}]"
        if not isinstance(part, dict):
            raise bad_request("content parts must be objects", param=where)
        yield where, part, part.get("type")


def part_text(part: dict, kind: str, path: str) -> str:
    """The text of a ``text`` or ``refusal`` part (a refusal is text the model said)."""
    text = part.get(kind)
    if not isinstance(text, str):
        raise bad_request(f"{kind} part needs a string '{kind}'", param=f"{path}.{kind}")
    return text


def unsupported_role(role: Any, path: str):
    return bad_request(f"message role {echo(role)!r} is not supported", param=f"{path}.role")


TEXT_ONLY_FIELDS = ("prompt", "echo", "suffix", "best_of", "logprobs")


def text_request_to_chat(body: dict) -> dict:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise ValueError("only a single string prompt can be sent to a chat-only provider")
        prompt = prompt[0]
    chat = {name: value for name, value in body.items() if name not in TEXT_ONLY_FIELDS}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def chat_response_to_text(reply: dict) -> dict:
    return {
        "id": reply.get("id"),
        "object": "text_completion",
        "created": reply.get("created") or int(time.time()),
        "model": reply.get("model"),
        "choices": [
            {
                "text": (choice.get("message") or {}).get("content") or "",
                "index": choice.get("index", 0),
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
            for choice in reply.get("choices") or []
        ],
        **({"usage": reply["usage"]} if reply.get("usage") else {}),
    }


def chat_chunk_to_text(chunk: dict) -> dict:
    out: dict[str, Any] = {
        "id": chunk.get("id"),
        "object": "text_completion",
        "created": chunk.get("created") or int(time.time()),
        "model": chunk.get("model"),
        "choices": [
            {
                "text": (choice.get("delta") or {}).get("content") or "",
                "index": choice.get("index", 0),
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
            for choice in chunk.get("choices") or []
        ],
    }
    if chunk.get("usage"):
        out["usage"] = chunk["usage"]
    return out
