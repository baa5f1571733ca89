"""The unified API: /v1/chat/completions, /v1/text/completions, /v1/completions, /v1/embeddings, /v1/models."""
from __future__ import annotations

from flask import Blueprint, request

from app import body
from app.gateway import current_context, current_engine
from app.providers.base import CHAT, EMBEDDING, TEXT
from app.responses import json_response, served_headers, sse_response
from app.engine import stamp
from app.schemas import ParsedRequest, parse_chat, parse_embedding, parse_text

bp = Blueprint("inference", __name__)


@bp.post("/v1/chat/completions")
def chat_completions():
    engine = current_engine()
    return _serve(CHAT, parse_chat(read_json(), engine.known_providers), engine)


@bp.post("/v1/text/completions")
@bp.post("/v1/completions")
def text_completions():
    engine = current_engine()
    return _serve(TEXT, parse_text(read_json(), engine.known_providers), engine)


@bp.post("/v1/embeddings")
def embeddings():
    engine = current_engine()
    return _serve(EMBEDDING, parse_embedding(read_json(), engine.known_providers), engine)


@bp.get("/v1/models")
def list_models():
    provider = request.args.get("provider") or None
    models, errors = current_engine().list_models(current_context(), only=provider)
    if provider and provider in errors:
        raise errors[provider]
    body = {"object": "list", "data": models}
    if errors:
        body["errors"] = {name: error.message for name, error in errors.items()}
    return json_response(body)


def read_json() -> object:
    return body.read_json()


def _serve(request_type: str, parsed: ParsedRequest, engine=None):
    engine = engine or current_engine()
    ctx = current_context()
    if parsed.stream:
        stream = engine.stream(request_type, parsed.body, parsed.target, parsed.fallbacks, ctx)
        wants_usage = bool((parsed.body.get("stream_options") or {}).get("include_usage"))
        return sse_response(stream, request_type + "_stream", ctx, client_wants_usage_chunk=wants_usage)
    reply = engine.complete(request_type, parsed.body, parsed.target, parsed.fallbacks, ctx)
    cost = reply.call.cost if reply.call is not None else None
    response = json_response(stamp(reply.body, request_type, reply.served, ctx, cost))
    return served_headers(response, reply.served, request_type, cost)


serve = _serve  # the OpenAI-dialect surfaces (/openai, /litellm, ...) serve parsed requests the same way
