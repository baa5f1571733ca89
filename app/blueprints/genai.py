"""The Google GenAI drop-in surface: /genai/{v1beta,v1}/models/{model}:{method}.

The model comes from the path: ``gemini-2.5-flash`` means ``gemini/gemini-2.5-flash``
(or the provider in an ``x-model-provider`` header); ``openai/gpt-4o-mini`` reaches
OpenAI, translated through the canonical form. The body travels as an
app.native.NativeRequest: a Gemini upstream gets it as it is (the engine decides per
attempt), so fields the gateway does not know survive. Errors use Google's shape.
Register it again under another prefix with ``name=`` and ``url_prefix=``.
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
from app.native import GEMINI, GEMINI_COUNT_TOKENS, GEMINI_EMBEDDING, NativeDialect, NativeRequest
from app.responses import SSE_HEADERS, internal_error, json_response, served_headers
from app.schemas import Target, header_fallbacks, parse_fallbacks, split_model
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
    native, target, fallbacks = _parse(engine, name, GEMINI)
    if stream:
        upstream = engine.stream(CHAT, None, target, fallbacks, ctx, surface="genai", native=native)
        response = Response(_frames(upstream, ctx), mimetype="text/event-stream", headers=SSE_HEADERS)
        return served_headers(response, upstream.served, CHAT + "_stream")
    reply = engine.complete(CHAT, None, target, fallbacks, ctx, surface="genai", native=native)
    out = reply.body if reply.native else dialect.chat_response_to_gemini(reply.body)
    return served_headers(json_response(out), reply.served, CHAT, reply.cost)


def count_tokens(name: str):
    engine, ctx = current_engine(), current_context()
    native, target, fallbacks = _parse(engine, name, GEMINI_COUNT_TOKENS)
    reply = engine.complete(COUNT_TOKENS, None, target, fallbacks, ctx, surface="genai", native=native)
    out = reply.body if reply.native else dialect.count_reply_to_gemini(reply.body)
    return served_headers(json_response(out), reply.served, COUNT_TOKENS)


def embed_content(name: str, batch: bool = False):
    engine, ctx = current_engine(), current_context()
    native, target, fallbacks = _parse(engine, name, GEMINI_EMBEDDING)
    if batch != ("requests" in native.body):  # the descriptor tells the two bodies apart by "requests"
        raise bad_request("requests is required and must be a non-empty array" if batch else
                          "requests is only allowed in batchEmbedContents", param="requests")
    reply = engine.complete(EMBEDDING, None, target, fallbacks, ctx, surface="genai", native=native)
    out = reply.body if reply.native else dialect.openai_embeddings_to_gemini(reply.body, batch)
    return served_headers(json_response(out), reply.served, EMBEDDING, reply.cost)


_METHODS = {
    "generateContent": generate_content,
    "streamGenerateContent": lambda name: generate_content(name, stream=True),
    "countTokens": count_tokens,
    "embedContent": embed_content,
    "batchEmbedContents": lambda name: embed_content(name, batch=True),
}


# -- helpers ------------------------------------------------------------------------------------


def _parse(engine: Engine, name: str, kind: NativeDialect) -> tuple[NativeRequest, Target, list[Target]]:
    body = read_json()
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    # Gemini rejects unknown fields, so fallbacks come in the x-bf-fallbacks header; a
    # "fallbacks" field is accepted too and never forwarded.
    extra = body.pop("fallbacks", None)
    environ = request.environ
    if extra:
        fallbacks = parse_fallbacks(extra, engine.known_providers)
    else:
        fallbacks = header_fallbacks(environ.get("HTTP_X_BF_FALLBACKS"), engine.known_providers)
    return NativeRequest(kind, body), _target(engine, name), fallbacks


def _target(engine: Engine, name: str) -> Target:
    """``provider/model`` when the first segment names a provider, else the default provider's model."""
    default = request.environ.get("HTTP_X_MODEL_PROVIDER") or DEFAULT_PROVIDER
    return split_model(name, engine.known_providers, default_provider=default)


def _is_gemini(engine: Engine, provider: str) -> bool:
    adapter = engine.providers.get(provider)
    return adapter is not None and adapter.dialect == GEMINI.name


def _as_gemini_model(engine: Engine, model: dict) -> dict:
    provider, _, name = str(model.get("id")).partition("/")
    return dialect.openai_model_to_gemini(model, name if _is_gemini(engine, provider) else f"{provider}/{name}")


def _frames(stream: Stream, ctx: RequestContext) -> Iterator[bytes]:
    """Gemini SSE events (the upstream's own when passed through); a failure after the first byte
    is an ``{"error": ...}`` event."""
    try:
        if stream.native:
            for event in stream:
                yield _frame(event)
        else:
            converter = dialect.ChatStreamToGemini(stream.served.model)
            for chunk in stream:
                for event in converter.feed(chunk):
                    yield _frame(event)
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
