"""Request bodies of the unified API: validation and normalisation into canonical form.

marshmallow checks the top-level fields a route relies on and names the bad one;
everything else in the body is kept as it is, so OpenAI-compatible upstreams see
fields the gateway does not know about. Messages are normalised, not deeply checked:
the provider knows its own rules and answers with a precise error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from app.errors import GatewayError, bad_request, echo

ROUTING_FIELDS = ("model", "fallbacks", "params", "provider")


@dataclass(frozen=True)
class Target:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass
class ParsedRequest:
    body: dict  # canonical body without routing fields
    target: Target
    fallbacks: list[Target]
    stream: bool


class _Body(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1),
                          error_messages={"required": "model is required"})
    fallbacks = fields.List(fields.Raw(), load_default=list)
    params = fields.Dict(load_default=None, allow_none=True)
    stream = fields.Boolean(allow_none=True)


class ChatBody(_Body):
    # Raw items: each message is checked (and normalised) once, by normalise_message.
    messages = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1, error="messages cannot be empty"),
                           error_messages={"required": "messages is required for chat completion"})


class TextBody(_Body):
    # The spec's body names the prompt "text"; OpenAI's names it "prompt". Either works.
    prompt = fields.Raw()
    text = fields.Raw()


class EmbeddingBody(_Body):
    input = fields.Raw(required=True, error_messages={"required": "input is required for embeddings"})
    encoding_format = fields.String(allow_none=True, validate=validate.OneOf(["float", "base64"]))
    dimensions = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1))


_chat_schema = ChatBody()
_text_schema = TextBody()
_embedding_schema = EmbeddingBody()


def parse_chat(body: Any, known_providers: frozenset[str], default_provider: str | None = None) -> ParsedRequest:
    data = _load(_chat_schema, body)
    for index, message in enumerate(data["messages"]):
        normalise_message(message, index)
    return _finish(data, known_providers, default_provider)


def parse_text(body: Any, known_providers: frozenset[str], default_provider: str | None = None) -> ParsedRequest:
    data = _load(_text_schema, body)
    text = data.pop("text", None)
    prompt = data.get("prompt", text)
    if prompt is None or prompt == "" or prompt == []:
        raise bad_request("prompt is required for text completion", param="prompt")
    if not isinstance(prompt, (str, list)):
        raise bad_request("prompt must be a string or a list of strings", param="prompt")
    data["prompt"] = prompt
    return _finish(data, known_providers, default_provider)


def parse_embedding(body: Any, known_providers: frozenset[str], default_provider: str | None = None) -> ParsedRequest:
    data = _load(_embedding_schema, body)
    value = data.get("input")
    if value is None or value == "" or value == []:
        raise bad_request("input is required for embeddings", param="input")
    if not (isinstance(value, str) or (isinstance(value, list) and _same_kind(value))):
        raise bad_request("input must be a string, an array of strings, or an array of token arrays", param="input")
    encoding = data.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise bad_request("encoding_format must be 'float' or 'base64'", param="encoding_format")
    dimensions = data.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise bad_request("dimensions must be a positive integer", param="dimensions")
    parsed = _finish(data, known_providers, default_provider)
    parsed.stream = False  # embeddings have no stream
    parsed.body.pop("stream", None)
    return parsed


def _same_kind(items: list) -> bool:
    """Strings, token ids, or arrays of token ids: OpenAI's three list forms of input."""
    if all(isinstance(i, str) for i in items):
        return True
    if all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        return True
    return all(isinstance(i, list) and i and all(isinstance(t, int) and not isinstance(t, bool) for t in i)
               for i in items)


def missing_provider(value: str, param: str = "model") -> GatewayError:
    return GatewayError(
        f"provider is required in model field (format: provider/model), got {echo(value)!r}", 400,
        error_type="invalid_request_error", code="missing_provider", param=param,
    )


def split_model(value: str, known_providers: frozenset[str], param: str = "model",
                default_provider: str | None = None, *, bare: bool = False) -> Target:
    """"provider/model" split on the first "/": openrouter/anthropic/claude keeps the rest.

    ``bare`` lets a model without a provider through as Target("", model): a virtual key's
    provider configs may route it (governance); the engine refuses it if none did. The drop-in
    surfaces pass a ``default_provider``: a model without a known provider prefix is then that
    provider's (``gpt-4o`` on /openai, ``meta-llama/x`` too).
    """
    provider, slash, model = value.partition("/")
    if default_provider is not None and (not slash or provider not in known_providers):
        return Target(default_provider, value)
    if not slash:
        if bare:
            return Target("", value)
        raise missing_provider(value, param)
    if provider not in known_providers:
        raise GatewayError(
            f"Invalid provider: {echo(provider)}", 400, error_type="invalid_request_error", code="invalid_provider", param=param
        )
    if not model:
        raise bad_request(f"model name is missing after {provider}/", param=param)
    return Target(provider, model)


def normalise_message(message: dict, index: int) -> None:
    """Bring the spec's content forms into OpenAI's: {"content_str": s} becomes s."""
    if not isinstance(message, dict):
        raise bad_request("each message must be a JSON object", param=f"messages[{index}]")
    role = message.get("role")
    if not isinstance(role, str):
        raise bad_request("each message needs a string role", param=f"messages[{index}].role")
    content = message.get("content")
    if isinstance(content, dict):
        if "content_str" in content:
            message["content"] = content["content_str"]
        elif "content_blocks" in content:
            message["content"] = content["content_blocks"]
        else:
            raise bad_request(
                "content must be a string, a list of parts, or {\"content_str\": ...}",
                param=f"messages[{index}].content",
            )


def _load(schema: Schema, body: Any) -> dict:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", param="body")
    if _well_typed(body, chat=schema is _chat_schema):
        # Every field already has the JSON type the schema wants: the schema would
        # only copy the body and add its defaults. It still runs for anything else,
        # to convert values (e.g. "stream": "true") and to word the error.
        data = dict(body)
        data.setdefault("fallbacks", [])
        data.setdefault("params", None)
        return data
    try:
        return schema.load(body)
    except ValidationError as exc:
        field, problems = next(iter(exc.messages.items()))
        if isinstance(problems, dict):  # list item errors: {index: [...]}
            index, inner = next(iter(problems.items()))
            field, problems = f"{field}[{index}]", inner
        message = problems[0] if isinstance(problems, list) else str(problems)
        if not message.startswith(field.split("[")[0]):
            message = f"{field}: {message}"
        raise bad_request(message, param=field) from None


def _well_typed(body: dict, *, chat: bool) -> bool:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return False
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return False
    return (
        isinstance(body.get("fallbacks", ()), (list, tuple))
        and isinstance(body.get("params") or {}, dict)
        and isinstance(body.get("stream", False), (bool, type(None)))
    )


def _finish(data: dict, known_providers: frozenset[str], default_provider: str | None = None) -> ParsedRequest:
    target = split_model(data.pop("model"), known_providers, default_provider=default_provider, bare=True)
    fallbacks = [_fallback(item, i, known_providers) for i, item in enumerate(data.pop("fallbacks"))]
    params = data.pop("params", None)
    data.pop("provider", None)
    _check_object(data, "stream_options", "stream_options")
    if params:
        _check_object(params, "stream_options", "params.stream_options")
        # The legacy "params" object; a field given at the top level wins over it.
        for name, value in params.items():
            data.setdefault(name, value)
    stream = bool(data.get("stream"))
    if data.get("stream") is None:
        data.pop("stream", None)
    return ParsedRequest(body=data, target=target, fallbacks=fallbacks, stream=stream)


def _check_object(data: dict, name: str, param: str) -> None:
    value = data.get(name)
    if value is not None and not isinstance(value, dict):
        raise bad_request(f"{param} must be an object", param=param)


def _fallback(item: Any, index: int, known_providers: frozenset[str]) -> Target:
    param = f"fallbacks[{index}]"
    if isinstance(item, dict) and isinstance(item.get("provider"), str) and isinstance(item.get("model"), str):
        item = f"{item['provider']}/{item['model']}"  # the pre-v1 object form
    if not isinstance(item, str):
        raise bad_request("each fallback must be a \"provider/model\" string", param=param)
    return split_model(item, known_providers, param=param)


def parse_fallbacks(items: Any, known_providers: frozenset[str]) -> list[Target]:
    """A ``fallbacks`` array read outside the unified API's body schema (the drop-in surfaces)."""
    if not isinstance(items, list):
        raise bad_request("fallbacks must be an array of \"provider/model\" strings", param="fallbacks")
    return [_fallback(item, i, known_providers) for i, item in enumerate(items)]


def header_fallbacks(value: str | None, known_providers: frozenset[str]) -> list[Target]:
    """The ``x-bf-fallbacks`` header: comma-separated provider/model, for dialects without extra body fields."""
    if not value:
        return []
    return [split_model(item.strip(), known_providers, param="x-bf-fallbacks")
            for item in value.split(",") if item.strip()]
