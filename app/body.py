"""Reading a request body: framing errors, the read deadline and gzip, each a clear 4xx.

gunicorn parses the framing as the body is read, so a bad chunk, a client that stops
half-way or one that drips bytes past BIFROST_READ_TIMEOUT surfaces here, inside the app.
"""
from __future__ import annotations

import zlib

import orjson
from flask import current_app, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from app.errors import GatewayError, bad_request
from app.worker import READ_TIMEOUT_ENV, ClientSocket, ReadDeadlineExceeded

GZIP = frozenset({"gzip", "x-gzip"})


def read_json() -> object:
    """The request body parsed as JSON; every way it can be unusable is a 4xx naming the cause."""
    raw = read_body()
    if not raw:
        raise bad_request("Invalid request format: the body is empty; send a JSON object", param="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Invalid request format: {exc}", param="body") from None


def read_body() -> bytes:
    environ = request.environ
    try:
        raw = _read(environ)
    except ReadDeadlineExceeded:
        raise GatewayError(
            f"request body not received within {ClientSocket.read_timeout:g}s ({READ_TIMEOUT_ENV})", 408,
            type="request_timeout", error_type="request_timeout", param="body",
        ) from None
    except ParseException as exc:  # bad chunk size, missing terminator, bad extension or trailer
        raise bad_request(f"malformed request body framing: {exc}", param="Transfer-Encoding") from None
    except ClientDisconnected:
        raise bad_request("the request body ended before it was complete", param="body") from None
    encoding = environ.get("HTTP_CONTENT_ENCODING")
    if encoding:
        raw = _decode(raw, encoding.strip().lower())
    return raw


def _read(environ: dict) -> bytes:
    """A body with a Content-Length is read from gunicorn's stream in one call (werkzeug's
    wrappers around it cost more than the read); anything else goes through werkzeug."""
    length = environ.get("CONTENT_LENGTH")
    if not length or not length.isdigit():
        return request.get_data(cache=False)
    size = int(length)
    if size > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    raw = environ["wsgi.input"].read(size)
    if len(raw) < size:
        raise ClientDisconnected()
    return raw


def _decode(raw: bytes, encoding: str) -> bytes:
    if encoding == "identity":
        return raw
    if encoding not in GZIP:
        raise GatewayError(
            f"Content-Encoding {encoding[:40]!r} is not supported; send gzip or an unencoded body", 415,
            error_type="invalid_request_error", code="unsupported_content_encoding", param="Content-Encoding",
        )
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise bad_request(f"the gzip body cannot be decoded: {exc}", param="Content-Encoding") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise GatewayError(
            "request body too large once decompressed (client.max_request_body_size_mb)", 413,
            error_type="invalid_request_error", param="Content-Encoding",
        )
    if not inflater.eof:
        raise bad_request("the gzip body is truncated", param="Content-Encoding")
    return data
