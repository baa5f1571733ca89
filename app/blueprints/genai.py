"""The Google GenAI drop-in surface: /genai/{v1beta,v1}/models/{model}:{method}.

The model comes from the path: ``gemini-2.5-flash`` means ``gemini/gemini-2.5-flash``
(or the provider in an ``x-model-provider`` header); ``openai/gpt-4o-mini`` reaches
OpenAI, translated through the canonical form. A Gemini upstream gets the client's own
body (``ctx.native``), so fields the gateway does not know survive. Errors use Google's
shape. Register it again under another prefix with ``name=`` and ``url_prefix=``.
"""
from __future__ import annotations

import logging
from typing import Iterator

import orjson
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from app.context import RequestContext
from app.dialects import gemini as dialect
from app.engine import Engine, Stream
from app.errors import GatewayError, bad_request
from app.gateway import current_context, current_engine
from app.providers.base import CHAT, COUNT_TOKENS, EMBEDDING
from app.responses import SSE_HEADERS, internal_error, json_response, served_headers
from app.schemas import Target, split_model
from app.blueprints.inference import read_json

log = logging.getLogger("bifrost.genai")

bp = Blueprint("genai", __name__, url_prefix="/genai")
VERSION = "<any(v1beta, v1):version>"
DEFAULT_PROVIDER = "gemini"


# -- routes -----------------------------------------------------------------------------------


@bp.post(f"/{VERSION}/models/<path:target>")
def model_method(version: str, target: str):
    name, sep, method = target.rpartition(":")
    handler = _METHODS.get(method) if sep else None
    if handler is None:
        raise GatewayError(f"Method not found: models/{target}", 404, error_type="NOT_FOUND")
    return handler(name)


@bp.get(f"/{VERSION}/models")
def list_models(version: str):
    engine = current_engine()
    models, errors = engine.list_models(current_context())
    body: dict = {"models": [_as_gemini_model(engine, m) for m in models]}
    if not models and errors:
        raise next(iter(errors.values()))
    return json_response(body)


@bp.get(f"/{VERSION}/models/<path:name>")
def get_model(version: str, name: str):
    engine = current_engine()
    target = _target(engine, name)
    models, errors = engine.list_models(current_context(), only=target.provider)
    if target.provider in errors:
        raise errors[target.provider]
    for model in models:
        if model["id"] == f"{target.provider}/{target.model}":
            return json_response(_as_gemini_model(engine, model))
    raise GatewayError(f"models/{name} is not found", 404, error_type="NOT_FOUND")


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    raise GatewayError(f"Method not found: {request.path}", 404, error_type="NOT_FOUND")


# -- model methods ------------------------------------------------------------------------------


def generate_content(name: str, stream: bool = False):
    engine, ctx = current_engine(), current_context()
    body = _body()
    target, fallbacks = _targets(engine, name, body)
    ctx.native = ("streamGenerateContent" if stream else "generateContent", body)
    canonical, fallbacks = _canonical(engine, target, fallbacks, lambda: dialect.gemini_request_to_chat(body))
    if stream:
        upstream = engine.stream(CHAT, canonical, target, fallbacks, ctx)
        frames = _frames(upstream, _is_gemini(engine, upstream.served.provider), ctx)
        response = Response(frames, mimetype="text/event-stream", headers=SSE_HEADERS)
        return served_headers(response, upstream.served, CHAT + "_stream")
    reply = engine.complete(CHAT, canonical, target, fallbacks, ctx)
    native = reply.body.pop("_native", None)
    out = native if native is not None else dialect.chat_response_to_gemini(reply.body)
    return served_headers(json_response(out), reply.served, CHAT)


def count_tokens(name: str):
    engine, ctx = current_engine(), current_context()
    body = _body()
    target, fallbacks = _targets(engine, name, body)
    ctx.native = ("countTokens", body)
    canonical, fallbacks = _canonical(engine, target, fallbacks, lambda: dialect.count_request_to_chat(body))
    reply = engine.complete(COUNT_TOKENS, canonical, target, fallbacks, ctx)
    native = reply.body.pop("_native", None)
    out = native if native is not None else dialect.count_reply_to_gemini(reply.body)
    return served_headers(json_response(out), reply.served, COUNT_TOKENS)


def embed_content(name: str, batch: bool = False):
    engine, ctx = current_engine(), current_context()
    body = _body()
    target, fallbacks = _targets(engine, name, body)
    ctx.native = ("batchEmbedContents" if batch else "embedContent", body)
    canonical, fallbacks = _canonical(engine, target, fallbacks, lambda: dialect.gemini_embed_to_openai(body, batch))
    reply = engine.complete(EMBEDDING, canonical, target, fallbacks, ctx)
    native = reply.body.pop("_native", None)
    out = native if native is not None else dialect.openai_embeddings_to_gemini(reply.body, batch)
    return served_headers(json_response(out), reply.served, EMBEDDING)


_METHODS = {
    "generateContent": generate_content,
    "streamGenerateContent": lambda name: generate_content(name, stream=True),
    "countTokens": count_tokens,
    "embedContent": embed_content,
    "batchEmbedContents": lambda name: embed_content(name, batch=True),
}


# -- helpers ------------------------------------------------------------------------------------


def _body() -> dict:
    body = read_json()
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _target(engine: Engine, name: str) -> Target:
    """``provider/model`` when the first segment names a provider, else the default provider's model."""
    provider, slash, model = name.partition("/")
    if slash and provider in engine.known_providers:
        return split_model(name, engine.known_providers)
    default = request.headers.get("x-model-provider") or DEFAULT_PROVIDER
    return split_model(f"{default}/{name}", engine.known_providers)


def _targets(engine: Engine, name: str, body: dict) -> tuple[Target, list[Target]]:
    fallbacks = []
    header = request.headers.get("x-bf-fallbacks") or ""
    for item in [part.strip() for part in header.split(",") if part.strip()]:
        fallbacks.append(split_model(item, engine.known_providers, param="x-bf-fallbacks"))
    extra = body.pop("fallbacks", None)  # Gemini rejects unknown fields: never forward it
    if isinstance(extra, list):
        fallbacks.extend(split_model(str(item), engine.known_providers, param="fallbacks") for item in extra)
    return _target(engine, name), fallbacks


def _is_gemini(engine: Engine, provider: str) -> bool:
    adapter = engine.providers.get(provider)
    return getattr(adapter, "native_dialect", None) == "gemini"


def _canonical(engine: Engine, target: Target, fallbacks: list[Target], convert) -> tuple[dict, list[Target]]:
    """The canonical body, built only when some target is not Gemini.

    A Gemini-only feature (a googleSearch tool, a file URI) cannot be translated; with
    a Gemini primary the request still goes through, and only the fallbacks that would
    need the translation are dropped.
    """
    if _is_gemini(engine, target.provider) and all(_is_gemini(engine, f.provider) for f in fallbacks):
        return {}, fallbacks
    try:
        return convert(), fallbacks
    except GatewayError as error:
        if not _is_gemini(engine, target.provider):
            raise
        log.info("request %s: dropping non-Gemini fallbacks: %s", current_context().request_id, error.message)
        return {}, [f for f in fallbacks if _is_gemini(engine, f.provider)]


def _as_gemini_model(engine: Engine, model: dict) -> dict:
    provider, _, name = str(model.get("id")).partition("/")
    return dialect.openai_model_to_gemini(model, name if _is_gemini(engine, provider) else f"{provider}/{name}")


def _frames(stream: Stream, native: bool, ctx: RequestContext) -> Iterator[bytes]:
    """Gemini SSE events; a failure after the first byte is an ``{"error": ...}`` event."""
    converter = dialect.ChatStreamToGemini(stream.served.model)
    try:
        for chunk in stream:
            raw = chunk.pop("_native", None)
            if native:
                if raw is not None:
                    yield _frame(raw)
                continue
            for event in converter.feed(chunk):
                yield _frame(event)
        if not native:
            for event in converter.finish():
                yield _frame(event)
    except GatewayError as error:
        log.warning("request %s: stream from %s failed: %s", ctx.request_id, stream.served.provider, error.message)
        yield _frame(_error_json(error))
    except Exception:
        log.exception("request %s: stream failed", ctx.request_id)
        yield _frame(_error_json(internal_error(ctx)))
    finally:
        stream.close()


def _frame(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def _error_json(error: GatewayError) -> dict:
    return dialect.error_body(error.http_status, error.message, error.error_type)


@bp.errorhandler(GatewayError)
def _gateway_error(error: GatewayError):
    return json_response(_error_json(error), error.http_status)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    status = error.code or 500
    return json_response(dialect.error_body(status, error.description or error.name), status)


@bp.errorhandler(Exception)
def _unexpected_error(error: Exception):
    ctx = current_context()
    log.exception("request %s: unhandled error", ctx.request_id)
    return json_response(_error_json(internal_error(ctx)), 500)
