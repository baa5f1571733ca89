"""The HTTP client every provider adapter uses to reach its upstream.

urllib3 directly, not ``requests``: on the hot path a PoolManager costs far less CPU
per call, and under gevent its sockets are cooperative once the worker is patched.
Network failures become GatewayErrors here, so adapters only see HTTP responses.
"""
from __future__ import annotations

import functools
import time
from typing import Iterator, Mapping

import gevent
import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError

from app.context import RequestContext
from app.errors import GatewayError

# One connection pool per upstream origin, per worker process. Origins come from the
# configuration, so the set is small and fixed. ``block=False`` opens extra
# connections past maxsize instead of waiting (urllib3's blocking queue can hang
# greenlets); they are discarded when the burst is over.
POOL_SIZE = 512
_pools: dict[str, urllib3.HTTPConnectionPool] = {}

CONNECT_TIMEOUT = 10.0
DRAIN_TIMEOUT = 5.0  # how long a finished stream's tail may take before its connection is dropped
DRAIN_LIMIT = 64 * 1024  # bytes after the last event before the connection is dropped instead
# Retries and fallbacks are the engine's; one shared Retry (never mutated: increment() makes a
# new one) saves urllib3 building one from `False` on every request.
NO_RETRIES = urllib3.Retry(False, redirect=False)


def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
    ctx: RequestContext,
    stream: bool = False,
) -> urllib3.BaseHTTPResponse:
    """Send one request; with ``stream`` the body is left unread for ``iter_body``.

    ``timeout`` bounds the connect and every read, so a stalled upstream fails after
    ``timeout`` seconds of silence rather than hanging the client.
    """
    origin, path = _split(url)
    pool = _pools.get(origin) or _new_pool(origin)
    started = time.perf_counter()
    try:
        return pool.urlopen(
            method,
            path,
            body=body,
            headers=headers,
            timeout=_timeout(timeout),
            preload_content=not stream,
            retries=NO_RETRIES,
            redirect=False,
            assert_same_host=False,
        )
    except NewConnectionError as exc:  # before the timeouts: urllib3 makes it a ConnectTimeoutError subclass
        raise connection_error(exc) from None
    except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
        raise timeout_error(timeout) from None
    except (ProtocolError, HTTPError, OSError) as exc:
        raise connection_error(exc) from None
    finally:
        ctx.upstream_seconds += time.perf_counter() - started


def _split(url: str) -> tuple[str, str]:
    """("http://host:port", "/path?query") without a full URL parse on the hot path."""
    slash = url.find("/", url.find("//") + 2)
    return (url, "/") if slash < 0 else (url[:slash], url[slash:])


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> urllib3.Timeout:
    # Shared safely: urllib3 clones a Timeout before it starts counting.
    return urllib3.Timeout(connect=min(seconds, CONNECT_TIMEOUT), read=seconds)


def _new_pool(origin: str) -> urllib3.HTTPConnectionPool:
    pool = urllib3.connection_from_url(origin, maxsize=POOL_SIZE, block=False, retries=False)
    _pools[origin] = pool
    return pool


def iter_body(response: urllib3.BaseHTTPResponse, idle_timeout: float, ctx: RequestContext) -> Iterator[bytes]:
    """Yield the body as the upstream sends it, each piece the moment it arrives.

    The socket's read timeout (set by ``send``) bounds the silence between pieces;
    ``idle_timeout`` is that same figure, for the error message.
    """
    if response.chunked:
        pieces = response.read_chunked(decode_content=True)
    else:  # read1 returns what one socket read gives, where read(n) would wait for n bytes
        pieces = iter(lambda: response.read1(65536), b"")
    try:
        while True:
            started = time.perf_counter()
            try:
                piece = next(pieces, None)
            finally:
                ctx.upstream_seconds += time.perf_counter() - started
            if piece is None:
                return
            if piece:
                yield piece
    except (ReadTimeoutError, TimeoutError):
        raise GatewayError(
            f"upstream stream stalled: no data for {idle_timeout:g}s", 504, type="request_timed_out",
            error_type="timeout", is_bifrost_error=True, retryable=True,
        ) from None
    except (ProtocolError, HTTPError, OSError) as exc:
        raise GatewayError(
            f"upstream stream broke off: {_reason(exc)}", 502, error_type="upstream_stream_error",
            is_bifrost_error=True, retryable=True,
        ) from None


def finish_stream(response: urllib3.BaseHTTPResponse, pieces: Iterator[bytes], complete: bool) -> None:
    """Give a finished stream's connection back to the pool, or drop a cut one.

    After the last event the upstream still owes the end of the body (the
    terminating chunk). Reusing the connection before it is read would hand those
    bytes to the next request, and waiting for them would delay the client's last
    frame, so a background greenlet reads the rest of ``pieces`` (the iterator from
    ``iter_body``) and then releases the connection.
    """
    if complete:
        gevent.spawn(_drain_and_release, response, pieces)
    else:
        response.close()


def _drain_and_release(response: urllib3.BaseHTTPResponse, pieces: Iterator[bytes]) -> None:
    try:
        leftover = 0
        with gevent.Timeout(DRAIN_TIMEOUT):
            for piece in pieces:
                leftover += len(piece)
                if leftover > DRAIN_LIMIT:
                    raise OverflowError("upstream kept sending after the end of its stream")
        response.release_conn()
    except BaseException:  # noqa: B036 - a late or endless tail just costs the connection
        response.close()


def timeout_error(timeout: float) -> GatewayError:
    return GatewayError(
        f"upstream request timed out after {timeout:g}s", 504, type="request_timed_out",
        error_type="timeout", is_bifrost_error=True, retryable=True,
    )


def connection_error(exc: BaseException) -> GatewayError:
    return GatewayError(
        f"cannot reach upstream: {_reason(exc)}", 502, error_type="upstream_connection_error",
        is_bifrost_error=True, retryable=True,
    )


def _reason(exc: BaseException) -> str:
    """The root cause in a few words: urllib3 nests the OSError that says it."""
    seen = 0
    while seen < 5:
        seen += 1
        inner = next((arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException)), None)
        inner = inner or exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__
