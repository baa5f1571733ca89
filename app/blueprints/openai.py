"""The OpenAI drop-in surface: ``OpenAI(base_url=".../openai")`` and ``AzureOpenAI`` unmodified.

Every route exists with and without ``/v1``. The canonical form is OpenAI's, so this is
the unified API with one difference: a model without a known provider prefix belongs to
``openai`` (or to the provider named by ``x-model-provider``). Registered under /openai
and under each framework prefix (app/blueprints/surfaces.py).
"""
from __future__ import annotations

from flask import Blueprint, request

from app.blueprints.inference import list_models, read_json, serve
from app.errors import GatewayError
from app.gateway import current_engine
from app.providers.base import CHAT, EMBEDDING, TEXT
from app.schemas import ParsedRequest, header_fallbacks, parse_chat, parse_embedding, parse_text

bp = Blueprint("openai", __name__)

bp.add_url_rule("/v1/models", view_func=list_models, methods=["GET"])
bp.add_url_rule("/models", view_func=list_models, methods=["GET"])


@bp.post("/v1/chat/completions")
@bp.post("/chat/completions")
def chat_completions():
    return _chat(read_json())


@bp.post("/v1/completions")
@bp.post("/completions")
@bp.post("/v1/text/completions")
@bp.post("/text/completions")
def completions():
    return _text(read_json())


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def embeddings():
    return _embeddings(read_json())


@bp.post("/deployments/<path:rest>")
@bp.post("/openai/deployments/<path:rest>")
def azure_deployment(rest: str):
    """Azure's ``/deployments/{deployment}/<operation>?api-version=``: the deployment is the model string.

    A path converter takes the rest, because the deployment may itself hold a slash
    (``anthropic/claude-...``); the operation is then read off its end.
    """
    for suffix, handler in _AZURE_OPERATIONS:
        if rest.endswith(suffix) and len(rest) > len(suffix):
            body = read_json()
            if isinstance(body, dict):
                body["model"] = rest[: -len(suffix)]
            return handler(body)
    raise GatewayError(f"Route not found: {request.path}", 404, error_type="invalid_request_error")


def _chat(body: object):
    engine = current_engine()
    return serve(CHAT, _fallbacks(parse_chat(body, engine.known_providers, _default_provider())))


def _text(body: object):
    engine = current_engine()
    return serve(TEXT, _fallbacks(parse_text(body, engine.known_providers, _default_provider())))


def _embeddings(body: object):
    engine = current_engine()
    return serve(EMBEDDING, _fallbacks(parse_embedding(body, engine.known_providers, _default_provider())))


_AZURE_OPERATIONS = (("/chat/completions", _chat), ("/completions", _text), ("/embeddings", _embeddings))


def _default_provider() -> str:
    return request.environ.get("HTTP_X_MODEL_PROVIDER") or "openai"


def _fallbacks(parsed: ParsedRequest) -> ParsedRequest:
    """``fallbacks`` in the body wins; the ``x-bf-fallbacks`` header serves clients that cannot add fields."""
    if not parsed.fallbacks:
        header = request.environ.get("HTTP_X_BF_FALLBACKS")
        if header:
            parsed.fallbacks = header_fallbacks(header, current_engine().known_providers)
    return parsed
