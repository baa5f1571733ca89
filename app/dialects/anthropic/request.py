"""Requests: canonical chat request <-> Anthropic Messages request body.

``chat_request_to_anthropic`` serves the Anthropic provider adapter;
``messages_request_to_chat`` serves the /anthropic surface when an attempt goes to a
provider of another family. Input one side cannot express raises ``bad_request``
naming the field.
"""
from __future__ import annotations

import json
from typing import Any

from app.dialects.anthropic.response import dumps as _dumps
from app.dialects.gemini.common import split_id_signature, with_signature
from app.dialects.openai import SYSTEM_ROLES, iter_messages, iter_parts, part_text, unsupported_role
from app.errors import bad_request, echo

# The only media types Anthropic accepts for base64 images.
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# -- canonical request -> Anthropic request ---------------------------------


def chat_request_to_anthropic(req: dict, model: str, default_max_tokens: int = 4096) -> dict:
    """Convert a canonical chat request into an Anthropic Messages body for ``model``.

    OpenAI-only fields (``n``, ``logprobs``, penalties, ``seed``,
    ``response_format``, ``stream_options``, ...) are dropped because Anthropic
    rejects unknown fields.
    """
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")

    system, turns = _convert_messages(messages)
    body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req, default_max_tokens)}
    if system:
        # The string form is the common case and the easiest to read in logs;
        # a list is needed for several blocks or a cache breakpoint.
        if len(system) == 1 and "cache_control" not in system[0]:
            body["system"] = system[0]["text"]
        else:
            body["system"] = system
    body["messages"] = turns

    for key in ("temperature", "top_p", "top_k"):
        if req.get(key) is not None:
            body[key] = req[key]

    stop = _stop_sequences(req.get("stop"))
    if stop:
        body["stop_sequences"] = stop

    tools = req.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise bad_request("'tools' must be an array", param="tools")
        body["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
        # A tool_choice without tools means nothing; Anthropic would reject it.
        choice = _tool_choice(req.get("tool_choice"), req.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice

    if req.get("user"):
        body["metadata"] = {"user_id": req["user"]}
    if req.get("stream") is not None:
        body["stream"] = bool(req["stream"])
    return body


def _max_tokens(req: dict, default: int) -> int:
    # max_completion_tokens supersedes the deprecated max_tokens in OpenAI's API;
    # Anthropic requires a value, so fall back to the configured default.
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad_request(f"{key} must be a positive integer", param=key)
            return value
    return default


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop) or None
    raise bad_request("'stop' must be a string or an array of strings", param="stop")


def _convert_messages(messages: list) -> tuple[list[dict], list[dict]]:
    """Split canonical messages into Anthropic ``system`` blocks and turns."""
    system: list[dict] = []
    turns: list[dict] = []
    for path, msg, role in iter_messages(messages):
        if role in SYSTEM_ROLES:
            # Anthropic has no system role, only the top-level field.
            system.extend(_content_blocks(msg.get("content"), f"{path}.content", allow_images=False))
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), f"{path}.content", allow_images=True)
        elif role == "assistant":
            blocks = _assistant_blocks(msg, path)
        elif role == "tool":
            role, blocks = "user", [_tool_result(msg, path)]
        else:
            raise unsupported_role(role, path)
        # Anthropic rejects empty content; a turn without any says nothing.
        if blocks:
            _append_turn(turns, role, blocks)
    if not turns:
        raise bad_request("at least one user or assistant message with content is required", param="messages")
    return system, turns


def _append_turn(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Add blocks as a turn, merging into the previous turn of the same role.

    Anthropic wants alternating roles, and in a user turn every ``tool_result``
    must come before any other block, so tool results are kept at the front.
    """
    if turns and turns[-1]["role"] == role:
        content = turns[-1]["content"]
    else:
        content = []
        turns.append({"role": role, "content": content})
    for block in blocks:
        if block["type"] == "tool_result":
            content.insert(sum(b["type"] == "tool_result" for b in content), block)
        else:
            content.append(block)


def _content_blocks(content: Any, path: str, *, allow_images: bool) -> list[dict]:
    """Canonical message content (string, None or parts) as Anthropic blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or an array of parts", param=path)
    blocks = []
    for where, part, kind in iter_parts(content, path):
        block = _part_block(part, kind, where, allow_images)
        if block is not None:
            blocks.append(block)
    return blocks


def _part_block(part: dict, kind: Any, path: str, allow_images: bool) -> dict | None:
    if kind in ("text", "refusal"):
        # An assistant's refusal part is text the model said; keep it as such.
        text = part_text(part, kind, path)
        if not text.strip():
            # Anthropic rejects empty and whitespace-only text blocks.
            return None
        block: dict[str, Any] = {"type": "text", "text": text}
    elif kind == "image_url" and allow_images:
        block = _image_block(part.get("image_url"), f"{path}.image_url")
    else:
        raise bad_request(f"content part type {echo(kind)!r} is not supported here", param=f"{path}.type")
    # Some clients send Anthropic's prompt caching marker on OpenAI parts.
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(image_url: Any, path: str) -> dict:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise bad_request("image_url needs a 'url'", param=f"{path}.url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, params = header.partition(";")
        media_type = media_type.strip().lower()
        if not sep or "base64" not in params.split(";"):
            raise bad_request("image data URLs must be base64-encoded (data:<type>;base64,...)", param=f"{path}.url")
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise bad_request(
                f"image type {media_type!r} is not supported; use image/jpeg, image/png, image/gif or image/webp",
                param=f"{path}.url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.lower().startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request("image URL must be an http(s) URL or a base64 data URL", param=f"{path}.url")


def _assistant_blocks(msg: dict, path: str) -> list[dict]:
    if msg.get("function_call") is not None:
        raise bad_request("legacy 'function_call' is not supported; use 'tool_calls'", param=f"{path}.function_call")
    blocks = _content_blocks(msg.get("content"), f"{path}.content", allow_images=False)
    tool_calls = msg.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise bad_request("'tool_calls' must be an array", param=f"{path}.tool_calls")
    for k, call in enumerate(tool_calls):
        blocks.append(_tool_use_block(call, f"{path}.tool_calls[{k}]"))
    return blocks


def _tool_use_block(call: Any, path: str) -> dict:
    if not isinstance(call, dict):
        raise bad_request("each tool call must be an object", param=path)
    if call.get("type", "function") != "function":
        raise bad_request(f"tool call type {echo(call.get('type'))!r} is not supported", param=f"{path}.type")
    if not call.get("id"):
        raise bad_request("tool call needs an 'id'", param=f"{path}.id")
    function = call.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise bad_request("tool call needs a function name", param=f"{path}.function.name")
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": function["name"],
        "input": _parse_arguments(function.get("arguments"), f"{path}.function.arguments"),
    }


def _parse_arguments(arguments: Any, path: str) -> dict:
    """OpenAI carries tool arguments as a JSON string; Anthropic wants the object."""
    if isinstance(arguments, dict):
        return arguments
    # Some clients send "" (or nothing) for a call without arguments.
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        raise bad_request("tool call arguments must be a JSON string", param=path)
    try:
        value = json.loads(arguments)
    except ValueError as e:
        raise bad_request(f"tool call arguments are not valid JSON: {e}", param=path) from None
    if not isinstance(value, dict):
        raise bad_request("tool call arguments must be a JSON object", param=path)
    return value


def _tool_result(msg: dict, path: str) -> dict:
    call_id = msg.get("tool_call_id")
    if not call_id:
        raise bad_request("tool message needs a 'tool_call_id'", param=f"{path}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        # Anthropic allows a result without content, but not an empty text block.
        if content:
            block["content"] = content
    else:
        parts = _content_blocks(content, f"{path}.content", allow_images=False)
        if parts:
            block["content"] = parts
    return block


def _tool(tool: Any, i: int) -> dict:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise bad_request(f"tool type {echo(kind)!r} is not supported; only 'function' tools are", param=f"tools[{i}].type")
    function = tool.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        raise bad_request("function tool needs a name", param=f"tools[{i}].function.name")
    # OpenAI allows a function without parameters; Anthropic requires an object schema.
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request("function parameters must be a JSON Schema object", param=f"tools[{i}].function.parameters")
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = schema
    return out


def _tool_choice(choice: Any, parallel_tool_calls: Any) -> dict | None:
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not function.get("name"):
            raise bad_request("tool_choice needs a function name", param="tool_choice.function.name")
        result = {"type": "tool", "name": function["name"]}
    else:
        raise bad_request("tool_choice must be 'auto', 'required', 'none' or a function", param="tool_choice")

    if parallel_tool_calls is False:
        # Anthropic carries this flag inside tool_choice; "none" has no such field.
        if result is None:
            result = {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result



# -- Anthropic request -> canonical request ---------------------------------

def messages_request_to_chat(req: dict) -> dict:
    """Convert an Anthropic Messages body into a canonical chat request (without ``model``).

    ``tool_result`` blocks become ``tool`` messages ahead of the rest of their user
    turn, ``tool_use`` blocks become ``tool_calls``, images become ``image_url`` parts
    (data URLs for base64 sources). Thinking blocks of earlier assistant turns are
    dropped: their signatures mean nothing to another provider. Fields with no
    canonical form (thinking, top_k, service_tier, cache_control, ...) are dropped.
    """
    messages_in = req.get("messages")
    if not isinstance(messages_in, list) or not messages_in:
        raise bad_request("messages: at least one message is required", param="messages")
    messages: list[dict] = []
    system = req.get("system")
    if system:
        messages.append({"role": "system", "content": _system_content(system)})
    for i, msg in enumerate(messages_in):
        path = f"messages.{i}"
        if not isinstance(msg, dict):
            raise bad_request("each message must be an object", param=path)
        role = msg.get("role")
        if role == "user":
            messages.extend(_user_messages(msg.get("content"), path))
        elif role == "assistant":
            messages.append(_assistant_message(msg.get("content"), path))
        else:
            raise bad_request(f"{path}.role: Input should be 'user' or 'assistant'", param=f"{path}.role")

    out: dict[str, Any] = {"messages": messages}
    if req.get("max_tokens") is not None:
        out["max_completion_tokens"] = req["max_tokens"]
    for key in ("temperature", "top_p"):
        if req.get(key) is not None:
            out[key] = req[key]
    stop = req.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad_request("stop_sequences must be an array of strings", param="stop_sequences")
        out["stop"] = list(stop)
    tools = req.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise bad_request("tools: Input should be a valid list", param="tools")
        out["tools"] = [_function_tool(tool, i) for i, tool in enumerate(tools)]
        choice = req.get("tool_choice")
        if isinstance(choice, dict):
            converted = _openai_tool_choice(choice)
            if converted is not None:
                out["tool_choice"] = converted
            if choice.get("disable_parallel_tool_use") and choice.get("type") != "none":
                out["parallel_tool_calls"] = False
    metadata = req.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if req.get("stream") is not None:
        out["stream"] = bool(req["stream"])
    return out


def _system_content(system: Any) -> str | list[dict]:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise bad_request("system: Input should be a valid string", param="system")
    parts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad_request(f"system.{j}.type: Input should be 'text'", param=f"system.{j}")
        parts.append(block["text"])
    return "\n\n".join(parts) if len(parts) != 1 else parts[0]


def _blocks(content: Any, path: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{path}.content: Input should be a valid list", param=f"{path}.content")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_request(f"{path}.content.{j}: each content block needs a 'type'", param=f"{path}.content.{j}")
    return content


def _user_messages(content: Any, path: str) -> list[dict]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict] = []
    parts: list[dict] = []
    for j, block in enumerate(_blocks(content, path)):
        where = f"{path}.content.{j}"
        kind = block["type"]
        if kind == "tool_result":
            tool_messages.append(_tool_message(block, where))
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_image_part(block.get("source"), where))
        else:
            raise _untranslatable(kind, where)
    out = tool_messages
    if parts:
        # A turn of text only reads best (and works everywhere) as a plain string.
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts) if len(parts) == 1
                        else parts})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _tool_message(block: dict, path: str) -> dict:
    if not isinstance(block.get("tool_use_id"), str):
        raise bad_request(f"{path}.tool_use_id: Field required", param=f"{path}.tool_use_id")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, inner in enumerate(content):
            if not isinstance(inner, dict) or inner.get("type") != "text":
                kind = inner.get("type") if isinstance(inner, dict) else None
                raise _untranslatable(f"tool_result {kind}", f"{path}.content.{k}")
            texts.append(inner.get("text") or "")
        text = "\n".join(texts)
    else:
        raise bad_request(f"{path}.content: Input should be a valid list", param=f"{path}.content")
    if block.get("is_error"):
        # Chat Completions has no error flag on a tool result; say it in the text.
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": _split_id(block["tool_use_id"])[0], "content": text}


def _image_part(source: Any, path: str) -> dict:
    if not isinstance(source, dict):
        raise bad_request(f"{path}.image.source: Field required", param=f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise bad_request(f"{path}.image.source: base64 images need media_type and data", param=f"{path}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _untranslatable(f"image source {kind}", f"{path}.source")


def _assistant_message(content: Any, path: str) -> dict:
    texts: list[str] = []
    calls: list[dict] = []
    for j, block in enumerate(_blocks(content, path)):
        kind = block["type"]
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            call_id, signature = _split_id(block.get("id"))
            calls.append(with_signature({"id": call_id, "type": "function", "function": {
                "name": block.get("name"), "arguments": _dumps(block.get("input") or {})}}, signature))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _untranslatable(kind, f"{path}.content.{j}")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _split_id(call_id: Any) -> tuple[Any, str | None]:
    """A tool_use id that carries a Gemini thought signature (see response.tool_use_id) is the
    canonical call id plus ``extra_content``; an OpenAI-family upstream then gets a short id and
    no signature, a Gemini upstream the signature."""
    return split_id_signature(call_id) if isinstance(call_id, str) else (call_id, None)


def _function_tool(tool: Any, i: int) -> dict:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise bad_request(f"tools.{i}.name: Field required", param=f"tools.{i}.name")
    if tool.get("type", "custom") != "custom":
        raise _untranslatable(f"server tool {tool.get('type')}", f"tools.{i}")
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object"}
    return {"type": "function", "function": function}


def _openai_tool_choice(choice: dict) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad_request("tool_choice: type must be 'auto', 'any', 'tool' or 'none'", param="tool_choice")


def _untranslatable(kind: str, path: str):
    return bad_request(
        f"{path}: {kind!r} content has no equivalent in the provider's API this request is routed to; "
        "send it to an Anthropic model", param=path,
    )


