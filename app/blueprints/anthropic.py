"""The Anthropic drop-in surface: ``Anthropic(base_url=".../anthropic")`` unmodified.

The client's body travels as an app.native.NativeRequest: an Anthropic upstream gets it
as it is (model replaced), any other upstream the canonical translation; the engine
decides per attempt. This module only parses, and formats what comes back as Anthropic
JSON, Anthropic events, or Anthropic's error shape.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Iterator

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from app import sse
from app.blueprints.inference import read_json
from app.context import RequestContext
from app.dialects import anthropic as dialect
from app.engine import Stream
from app.errors import GatewayError, bad_request
from app.gateway import current_context, current_engine
from app.native import ANTHROPIC, ANTHROPIC_COUNT_TOKENS, NativeRequest
from app.providers.base import CHAT, COUNT_TOKENS
from app.responses import SSE_HEADERS, internal_error, json_response, served_headers
from app.schemas import Target, header_fallbacks, parse_fallbacks, split_model

log = logging.getLogger("bifrost.anthropic")

bp = Blueprint("anthropic", __name__)

GATEWAY_FIELDS = ("model", "fallbacks")  # read by the gateway, never sent upstream
FORWARDED_HEADERS = (("HTTP_ANTHROPIC_BETA", "anthropic-beta"),)  # reach an Anthropic upstream as sent


@bp.post("/v1/messages")
def messages():
    engine = current_engine()
    ctx = current_context()
    body = read_json()
    native, target, fallbacks = _parse(body, count_tokens=False)
    if body.get("stream"):
        stream = engine.stream(CHAT, None, target, fallbacks, ctx, surface="anthropic", native=native)
        response = Response(_events(stream, ctx), mimetype="text/event-stream", headers=SSE_HEADERS)
        return served_headers(response, stream.served, CHAT)
    reply = engine.complete(CHAT, None, target, fallbacks, ctx, surface="anthropic", native=native)
    message = reply.body if reply.native else dialect.chat_response_to_message(reply.body)
    return served_headers(json_response(message), reply.served, CHAT, reply.cost)


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    engine = current_engine()
    native, target, fallbacks = _parse(read_json(), count_tokens=True)
    reply = engine.complete(COUNT_TOKENS, None, target, fallbacks, current_context(), surface="anthropic",
                            native=native)
    # Anthropic's count passed through, or another upstream's own count ({"input_tokens": n} too).
    body = reply.body if reply.native else {"input_tokens": int(reply.body.get("input_tokens") or 0)}
    return served_headers(json_response(body), reply.served, COUNT_TOKENS)


@bp.get("/v1/models")
def list_models():
    models, _ = current_engine().list_models(current_context())
    data = [_model_info(model) for model in models]
    return json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None})


@bp.get("/v1/models/<path:model_id>")
def get_model(model_id: str):
    """One model of the list; an id without a provider prefix is looked for among anthropic's."""
    wanted = {model_id, "anthropic/" + model_id}
    models, _ = current_engine().list_models(current_context())
    for model in models:
        if model["id"] in wanted:
            return json_response(_model_info(model))
    raise GatewayError(f"model: {model_id}", 404)


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(rest: str):
    """Anything else under the prefix answers in Anthropic's shape too, so the SDK raises NotFoundError."""
    raise GatewayError(f"Route not found: {request.path}", 404)


# -- parsing -----------------------------------------------------------------------------------


def _parse(body: object, *, count_tokens: bool) -> tuple[NativeRequest, Target, list[Target]]:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required" if model is None else "model: Input should be a valid string",
                          param="model")
    if not count_tokens:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise bad_request("max_tokens: Field required" if max_tokens is None else
                              "max_tokens: Input should be a valid integer", param="max_tokens")
        if not isinstance(body.get("stream", False), bool):
            raise bad_request("stream: Input should be a valid boolean", param="stream")
    if not isinstance(body.get("messages"), list):
        raise bad_request("messages: Input should be a valid list", param="messages")
    engine = current_engine()
    environ = request.environ
    target = split_model(model, engine.known_providers,
                         default_provider=environ.get("HTTP_X_MODEL_PROVIDER") or "anthropic")
    # Anthropic rejects unknown fields, so fallbacks come in a header; a "fallbacks" field
    # (extra_body) is accepted too and never forwarded.
    if body.get("fallbacks"):
        fallbacks = parse_fallbacks(body["fallbacks"], engine.known_providers)
    else:
        fallbacks = header_fallbacks(environ.get("HTTP_X_BF_FALLBACKS"), engine.known_providers)
    native_body = {key: value for key, value in body.items() if key not in GATEWAY_FIELDS}
    headers = {name: environ[key] for key, name in FORWARDED_HEADERS if key in environ}
    return NativeRequest(ANTHROPIC_COUNT_TOKENS if count_tokens else ANTHROPIC, native_body, headers), target, fallbacks


def _model_info(model: dict) -> dict:
    return {"type": "model", "id": model["id"], "display_name": model.get("name") or model["id"],
            "created_at": _created_at(model)}


def _created_at(model: dict) -> str:
    created = model.get("created_at")
    if isinstance(created, str):
        return created
    seconds = model.get("created") if isinstance(model.get("created"), (int, float)) else 0
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- streams -----------------------------------------------------------------------------------


def _events(stream: Stream, ctx: RequestContext) -> Iterator[bytes]:
    """Anthropic events: the upstream's own when passed through, else translated from canonical chunks.

    A failure after the first byte becomes an ``event: error``; the missing
    ``message_stop`` tells the SDK the message is cut.
    """
    served = stream.served
    try:
        if stream.native:
            for event in stream:
                yield sse.named_frame(event["type"], event)
        else:
            converter = dialect.ChatStreamToAnthropic(served.model)
            for chunk in stream:
                frames = converter.feed(chunk)
                if frames:
                    yield b"".join(sse.named_frame(name, data) for name, data in frames)
            yield b"".join(sse.named_frame(name, data) for name, data in converter.finish())
    except GatewayError as error:
        error.attribute(served.provider, served.model, CHAT)
        log.warning("request %s: stream from %s failed: %s", ctx.request_id, served.provider, error.message)
        yield sse.named_frame("error", dialect.error_body(error))
    except Exception:
        log.exception("request %s: stream failed", ctx.request_id)
        yield sse.named_frame("error", dialect.error_body(internal_error(ctx)))
    finally:
        stream.close()


# -- errors in Anthropic's shape -----------------------------------------------------------------


@bp.errorhandler(GatewayError)
def _gateway_error(error: GatewayError) -> Response:
    return json_response(dialect.error_body(error), error.http_status)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        message = "request body too large (client.max_request_body_size_mb)"
    else:
        message = exc.description or exc.name
    return _gateway_error(GatewayError(message, status))


@bp.errorhandler(Exception)
def _unexpected_error(exc: Exception) -> Response:
    ctx = current_context()
    log.exception("request %s: unhandled error", ctx.request_id)
    return _gateway_error(internal_error(ctx))
