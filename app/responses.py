"""Turning engine results into HTTP responses: JSON bodies, SSE streams, errors."""
from __future__ import annotations

import logging
from typing import Iterable, Iterator

import orjson
from flask import Response

from app import sse
from app.context import RequestContext
from app.engine import Served, Stream, stamp, stream_extra_fields
from app.errors import GatewayError

log = logging.getLogger("bifrost.http")

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx would otherwise buffer the stream
}


def json_response(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: GatewayError) -> Response:
    return json_response(error.to_dict(), error.http_status)


def served_headers(response: Response, served: Served, request_type: str, cost: float | None = None) -> Response:
    response.headers["x-bifrost-provider"] = served.provider
    if cost is not None:
        response.headers["x-bifrost-cost-usd"] = f"{cost:.12f}"
    response.headers["x-bifrost-request-type"] = request_type
    if served.fallback_index:
        response.headers["x-bifrost-fallback-index"] = str(served.fallback_index)
    return response


def sse_response(
    stream: Stream,
    request_type: str,
    ctx: RequestContext,
    *,
    client_wants_usage_chunk: bool,
) -> Response:
    """Stream canonical chunks as ``data:`` frames, ending in [DONE] or an error event.

    Upstreams are always asked for usage; a client that did not ask for OpenAI's
    separate usage chunk (``stream_options.include_usage``) gets the usage folded
    into its final chunk instead, so every chunk it sees has a choice.
    """
    chunks: Iterator[dict] = iter(stream) if client_wants_usage_chunk else fold_usage(stream)
    body = _sse_frames(stream, chunks, request_type, ctx)
    response = Response(body, mimetype="text/event-stream", headers=SSE_HEADERS)
    return served_headers(response, stream.served, request_type)


def fold_usage(chunks: Iterable[dict]) -> Iterator[dict]:
    """Merge a usage-only chunk (``choices: []``) into the finishing chunk before it.

    Only a chunk that finishes a choice is held back, until the next event shows
    whether usage follows (it comes right after); content chunks pass at once.
    """
    held: dict | None = None  # a finishing chunk waiting for its usage
    try:
        for chunk in chunks:
            usage_only = not chunk.get("choices") and chunk.get("usage")
            if held is not None:
                if usage_only:
                    held["usage"] = chunk["usage"]
                    chunk, usage_only = held, False
                else:
                    yield held
                held = None
            elif _finishes(chunk) and not chunk.get("usage"):
                held = chunk
                continue
            yield chunk
    except GatewayError:
        if held is not None:  # the content was complete; the error event still follows
            yield held
        raise
    if held is not None:
        yield held


def _finishes(chunk: dict) -> bool:
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason"):
            return True
    return False


def _sse_frames(
    stream: Stream,
    chunks: Iterator[dict],
    request_type: str,
    ctx: RequestContext,
) -> Iterator[bytes]:
    served = stream.served
    extra = stream_extra_fields(request_type, served)  # one dict shared by every chunk
    try:
        for chunk in chunks:
            usage = chunk.get("usage")
            if usage:  # OpenAI sends "usage": null on the other chunks
                cost = stream.price(usage) if stream.price is not None else None
                stamp(chunk, request_type, served, ctx, cost)  # the last chunk: totals, latency, cost
            else:
                chunk["extra_fields"] = extra
            yield sse.data_frame(chunk)
        yield sse.DONE_FRAME
    except GatewayError as error:
        # After the first byte the status is sent; the client learns of the failure
        # from an error event, and the missing [DONE] tells it the answer is cut.
        error.attribute(served.provider, served.model, request_type)
        log.warning("request %s: stream from %s failed: %s", ctx.request_id, served.provider, error.message)
        yield sse.data_frame(error.to_dict())
    except Exception:
        log.exception("request %s: stream failed", ctx.request_id)
        yield sse.data_frame(internal_error(ctx).to_dict())
    finally:
        stream.close()


def internal_error(ctx: RequestContext | None) -> GatewayError:
    suffix = f" (request id {ctx.request_id})" if ctx else ""
    return GatewayError("internal gateway error" + suffix, 500, error_type="internal_error", is_bifrost_error=True)
