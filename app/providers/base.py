"""What every provider adapter shares: the request types, upstream calls, error mapping.

An adapter turns the canonical request (OpenAI chat/completions shape) into its
provider's dialect, calls the upstream through ``app.transport`` and returns canonical
replies, or canonical chunks from a generator for streams.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import orjson
import urllib3

from app import sse, transport
from app.config import Key, ProviderConfig
from app.context import RequestContext
from app.dialects.openai import chat_chunk_to_text, chat_response_to_text, text_request_to_chat
from app.errors import GatewayError, bad_request

CHAT = "chat_completion"
CHAT_STREAM = "chat_completion_stream"
TEXT = "text_completion"
TEXT_STREAM = "text_completion_stream"
LIST_MODELS = "list_models"
EMBEDDING = "embedding"
COUNT_TOKENS = "count_tokens"

DONE = object()  # the OpenAI stream terminator, as yielded by Provider.json_events

RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 529})
RATE_LIMIT_STATUS = 429

# Parses an upstream error body into (message, error type, code, param).
ErrorParser = Callable[[Any], "tuple[str, str | None, str | None, str | None]"]


class Provider:
    """Base adapter: a method per request type, each unsupported until overridden.

    ``dialect`` names the wire format the upstream speaks. A surface request in that same
    dialect reaches ``native_<request type>(native, model, key, ctx)`` when the adapter has
    one (see Engine._passage); those methods take an app.native.NativeRequest and return
    the upstream's own reply or events.
    """

    dialect: str | None = None

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name

    # -- request types (canonical in, canonical out) ------------------------------------

    def chat_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        raise self.unsupported(CHAT)

    def chat_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        raise self.unsupported(CHAT_STREAM)

    def text_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        raise self.unsupported(TEXT)

    def text_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        raise self.unsupported(TEXT_STREAM)

    def list_models(self, key: Key | None, ctx: RequestContext) -> list[dict]:
        raise self.unsupported(LIST_MODELS)

    def embedding(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        """OpenAI's /v1/embeddings body in, its reply (``object: list`` of embeddings) out."""
        raise self.unsupported(EMBEDDING)

    def count_tokens(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        """A canonical chat body in, ``{"input_tokens": n}`` out."""
        raise self.unsupported(COUNT_TOKENS)

    def supports(self, request_type: str) -> bool:
        allowed = self.config.allowed_requests
        if allowed is not None and not allowed.get(request_type, False):
            return False
        return getattr(type(self), request_type) is not getattr(Provider, request_type)

    def unsupported(self, request_type: str) -> GatewayError:
        return GatewayError(
            f"{request_type} is not supported by {self.name} provider", 400,
            code="unsupported_operation", error_type="invalid_request_error", allow_fallbacks=True,
        )

    # -- upstream plumbing ----------------------------------------------------------------

    def headers(self, key: Key | None, ctx: RequestContext) -> dict[str, str]:
        """Operator extra_headers, then x-bf-eh-* from the client; auth is added by subclasses."""
        headers = {"Content-Type": "application/json"}
        headers.update(self.config.network.extra_headers)
        headers.update(ctx.forward_headers)
        return headers

    def post_json(self, url: str, payload: dict, headers: dict, ctx: RequestContext, parse_error: ErrorParser) -> Any:
        """POST and return the decoded JSON reply, or raise the upstream's error."""
        response = transport.send(
            "POST", url, headers=headers, body=orjson.dumps(payload), timeout=self.config.network.timeout, ctx=ctx
        )
        return self.decode(response, parse_error)

    def get_json(self, url: str, headers: dict, ctx: RequestContext, parse_error: ErrorParser) -> Any:
        response = transport.send("GET", url, headers=headers, body=None, timeout=self.config.network.timeout, ctx=ctx)
        return self.decode(response, parse_error)

    def open_stream(
        self, url: str, payload: dict, headers: dict, ctx: RequestContext, parse_error: ErrorParser
    ) -> tuple[urllib3.BaseHTTPResponse, Iterator[bytes]]:
        """POST a streaming request; an error status is raised before any event is read."""
        network = self.config.network
        idle = network.stream_idle_timeout or network.timeout
        headers = {**headers, "Accept": "text/event-stream"}
        response = transport.send(
            "POST", url, headers=headers, body=orjson.dumps(payload), timeout=idle, ctx=ctx, stream=True
        )
        if response.status >= 400:
            try:
                body = response.read()
            except Exception:  # the error status is what matters; its body is a courtesy
                body = b""
            finally:
                response.release_conn()
            raise self.upstream_error(response.status, body, parse_error)
        return response, transport.iter_body(response, idle, ctx)

    def decode(self, response: urllib3.BaseHTTPResponse, parse_error: ErrorParser) -> Any:
        if response.status >= 400:
            raise self.upstream_error(response.status, response.data, parse_error)
        try:
            return orjson.loads(response.data)
        except orjson.JSONDecodeError:
            raise GatewayError(
                f"{self.name} returned a reply that is not JSON: {_snippet(response.data)}", 502,
                error_type="upstream_invalid_response", is_bifrost_error=True, retryable=True,
            ) from None

    def upstream_error(self, status: int, body: bytes, parse_error: ErrorParser) -> GatewayError:
        """The provider's error, with its status and message carried over to the client."""
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if parsed is None:
            text = body.decode("utf-8", "replace").strip()
            kind = "HTML response received from provider" if text.startswith("<") else "provider error"
            message, error_type, code, param = f"{kind}: {_snippet(body)}" if text else kind, None, None, None
        else:
            message, error_type, code, param = parse_error(parsed)
        return GatewayError(
            message, status, error_type=error_type, code=code, param=param,
            retryable=status in RETRYABLE_STATUS or status == RATE_LIMIT_STATUS,
            rotate_key=status == RATE_LIMIT_STATUS,
        )

    def json_events(self, pieces: Iterator[bytes]) -> Iterator[tuple[str | None, Any]]:
        """The upstream's SSE events with their JSON decoded; ``data: [DONE]`` arrives as DONE."""
        for event in sse.iter_events(pieces):
            if not event.data:
                continue
            if event.data == b"[DONE]":
                yield event.name, DONE
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise self.malformed_event(event.data) from None
            if not isinstance(data, dict):
                raise self.malformed_event(event.data)
            yield event.name, data

    @staticmethod
    def end_stream(response: urllib3.BaseHTTPResponse, pieces: Iterator[bytes], complete: bool) -> None:
        """Reuse the connection of a finished stream; drop one that was cut or abandoned."""
        transport.finish_stream(response, pieces, complete)

    def malformed_event(self, data: bytes) -> GatewayError:
        return GatewayError(
            f"{self.name} sent a malformed stream event: {_snippet(data)}", 502,
            error_type="upstream_stream_error", is_bifrost_error=True, retryable=True,
        )

    def stream_cut(self) -> GatewayError:
        return GatewayError(
            f"{self.name} closed the stream before it was complete", 502,
            error_type="upstream_stream_error", is_bifrost_error=True, retryable=True,
        )


class ChatProvider(Provider):
    """A provider without a text-completion endpoint: text completions go through its chat."""

    def text_completion(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> dict:
        return chat_response_to_text(self.chat_completion(_text_as_chat(body), model, key, ctx))

    def text_completion_stream(self, body: dict, model: str, key: Key | None, ctx: RequestContext) -> Iterator[dict]:
        chunks = self.chat_completion_stream(_text_as_chat(body), model, key, ctx)  # opens the request now
        return _chunks_as_text(chunks)


def _text_as_chat(body: dict) -> dict:
    try:
        return text_request_to_chat(body)
    except ValueError as exc:
        raise bad_request(str(exc), param="prompt") from None


def _chunks_as_text(chunks: Iterator[dict]) -> Iterator[dict]:
    try:
        for chunk in chunks:
            yield chat_chunk_to_text(chunk)
    finally:
        chunks.close()  # a client gone mid-stream closes the upstream at once


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."
