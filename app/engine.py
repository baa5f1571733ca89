"""The engine: one canonical request in, one canonical reply (or stream) out.

For each target (the primary, then each fallback in order) it picks a key, calls the
provider adapter, and retries transient failures with backoff. Streams are opened
the same way, and the first upstream event is pulled before the caller sees
anything, so a stream that fails early can still be retried, fall back, or become a
JSON error with the right status.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import gevent

from app import turns
from app.call import Attempt, Call
from app.config import GatewayConfig, Key
from app.context import RequestContext
from app.errors import GatewayError
from app.keys import select_key
from app.limits import ProviderGate
from app.native import NativeDialect, NativeRequest
from app.plugins import Plugins, build_plugins
from app.pricing import Pricing
from app.providers.base import Provider
from app.providers.registry import build_provider
from app.providers.catalog import BUILTIN_PROVIDERS
from app.redaction import Redactor
from app.schemas import Target, missing_provider

log = logging.getLogger("bifrost.engine")


@dataclass
class Served:
    """Who answered: the target that succeeded and its place in the chain."""

    provider: str
    model: str
    fallback_index: int
    key_name: str | None
    retries: int


@dataclass
class Reply:
    body: dict  # canonical, or the surface's own dialect when ``native``
    served: Served
    call: Call | None = None
    native: bool = False  # the attempt passed the client's native body through

    @property
    def cost(self) -> float | None:
        return self.call.cost if self.call is not None else None


class Passage(NamedTuple):
    """How one target is called: the adapter method, its payload, and the native dialect if passed through."""

    method: Callable
    payload: Any  # the canonical body, or the NativeRequest
    native: NativeDialect | None


@dataclass
class Stream:
    """An open upstream stream whose first chunk has already arrived.

    Iterating yields canonical chunks, the first one included; ``close`` releases
    the upstream connection and the provider's concurrency slot, and is safe to call
    more than once (the client may disconnect at any point). When a ``call`` is
    attached, closing also finishes it: usage, cost and the plugins' after-hooks.
    """

    served: Served
    first: dict
    _rest: Iterator[dict]
    _release: Callable[[], None]
    usage: dict | None = None
    chunks: int = 0
    call: Call | None = None
    native: bool = False  # chunks are the surface's own events (pass-through), not canonical chunks
    meter: Callable[[dict], dict | None] | None = None  # canonical usage from a native event
    _on_close: Callable[["Stream"], None] | None = field(default=None, repr=False)
    price: Callable[[dict], float | None] | None = field(default=None, repr=False)  # usage -> USD
    _ended: bool = field(default=False, repr=False)  # the upstream stream ran to its end
    _closed: bool = field(default=False, repr=False)
    _scrub: Callable[[GatewayError], GatewayError] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[dict]:
        try:
            yield self._count(self.first)
            for chunk in self._rest:
                yield self._count(chunk)
            self._ended = True
        except GatewayError as error:
            error = self._scrub(error) if self._scrub else error
            if self.call is not None:
                self.call.error = error
            raise error
        finally:
            self.close()

    def _count(self, chunk: dict) -> dict:
        self.chunks += 1
        usage = chunk.get("usage") if self.meter is None else self.meter(chunk)
        if usage:
            self.usage = usage
        call = self.call
        if call is not None:
            now = time.perf_counter()
            if call.first_chunk_at is None:
                call.first_chunk_at = now
            else:
                call.chunk_gaps.append(now - call.last_chunk_at)
            call.last_chunk_at = now
            if call.keep_chunks:
                call.chunks.append(chunk)
        return chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._rest, "close", None)
            if close is not None:
                close()
        finally:
            self._release()
            if self._on_close is not None:
                self._on_close(self)


class Engine:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.providers: dict[str, Provider] = {
            name: build_provider(provider_config) for name, provider_config in config.providers.items()
        }
        self.gates: dict[str, ProviderGate] = {
            name: ProviderGate(name, pc.concurrency, pc.buffer_size, config.client.drop_excess_requests)
            for name, pc in config.providers.items()
        }
        # Names a model string may start with: built-ins (configured or not) and custom providers.
        self.known_providers: frozenset[str] = BUILTIN_PROVIDERS | frozenset(config.providers)
        self.pricing = Pricing(config)
        self.plugins: Plugins = build_plugins(config)
        self.redactor = Redactor.from_config(config)  # every error passed on is scrubbed of key values

    # -- public entry points ----------------------------------------------------------------

    def complete(
        self, request_type: str, body: dict | None, target: Target, fallbacks: list[Target], ctx: RequestContext,
        *, surface: str = "openai", native: NativeRequest | None = None,
    ) -> Reply:
        """``body`` is canonical; a surface with its own dialect passes ``native`` (and body None)."""
        call = Call(request_type, False, body, target, fallbacks, ctx, surface, native=native)

        def attempt(provider: Provider, key: Key | None, served: Served, passage: Passage) -> Reply:
            gate = self.gates[provider.name]
            gate.acquire()
            try:
                return Reply(passage.method(passage.payload, served.model, key, ctx), served, call,
                             native=passage.native is not None)
            finally:
                gate.release()

        try:
            self._before(call)
            reply = self._run_chain(request_type, call, attempt)
            if self.plugins.continuing and request_type == "chat_completion" and not reply.native:
                reply = turns.continue_reply(self, call, reply, lambda: self._run_chain(request_type, call, attempt))
        except GatewayError as error:
            self._finish(call, error=error)
            raise
        body = reply.body
        if reply.native:
            call.passthrough = True
            usage = native.dialect.reply_usage(body)
            call.reply = native.dialect.reply_to_canonical(body) if self.plugins else None
        else:
            usage = body.get("usage") if isinstance(body, dict) else None
            call.reply = body
        self._finish(call, usage=usage)
        return reply

    def stream(
        self, request_type: str, body: dict | None, target: Target, fallbacks: list[Target], ctx: RequestContext,
        *, surface: str = "openai", native: NativeRequest | None = None,
    ) -> Stream:
        stream_type = request_type + "_stream"
        call = Call(request_type, True, body, target, fallbacks, ctx, surface, native=native)

        def attempt(provider: Provider, key: Key | None, served: Served, passage: Passage) -> Stream:
            gate = self.gates[provider.name]
            gate.acquire()
            try:
                chunks = passage.method(passage.payload, served.model, key, ctx)
                first = next(chunks, None)
                if first is None:
                    raise provider.stream_cut()
            except BaseException:
                gate.release()
                raise
            dialect = passage.native
            if call.hold_tool_calls:  # a turn of a continued conversation (app/turns.py) finishes nothing
                return Stream(served, first, chunks, gate.release, _scrub=self.redactor.scrub)
            call.passthrough = dialect is not None
            return Stream(served, first, chunks, gate.release, call=call, _on_close=self._stream_closed,
                          native=dialect is not None, meter=dialect.usage_meter() if dialect else None,
                          _scrub=self.redactor.scrub,
                          price=functools.partial(self.pricing.cost, served.provider, served.model))

        try:
            self._before(call)
            stream = self._run_chain(stream_type, call, attempt)
            if call.hold_tool_calls and self.plugins.continuing and request_type == "chat_completion":
                chunks = turns.continue_stream(self, call, stream, lambda: self._run_chain(stream_type, call, attempt))
                first = next(chunks, None)  # may run whole turns (tools included): errors still become JSON
                if first is None:
                    raise self.providers[call.served.provider].stream_cut()
                return Stream(call.served, first, chunks, lambda: None, call=call, _on_close=self._stream_closed,
                              _scrub=self.redactor.scrub)
            return stream
        except GatewayError as error:
            self._finish(call, error=error)
            raise

    def _before(self, call: Call) -> None:
        if call.native is not None and self.plugins:
            # Plugins read call.body in canonical form, whichever way the attempts go.
            try:
                call.canonical_body()
            except GatewayError:
                pass  # only a translated attempt needs it, and that attempt reports the error
        self.plugins.before(call)
        if not call.target.provider:  # a bare model that no plugin (governance) routed
            raise missing_provider(call.target.model)

    def _passage(self, provider: Provider, request_type: str, call: Call) -> Passage:
        """Pass-through or translation, for one target: the only place this is decided.

        A native request goes through as it is when the provider speaks the surface's
        dialect and has a native method for the request type; otherwise the provider
        gets the canonical body (translated from the native one on first need).
        """
        native = call.native
        if native is not None and not call.translate and provider.dialect == native.dialect.name:
            method = getattr(provider, "native_" + request_type, None)
            allowed = provider.config.allowed_requests
            if method is not None and (allowed is None or allowed.get(request_type, False)):
                return Passage(method, native, native.dialect)
        if not provider.supports(request_type):
            raise provider.unsupported(request_type)
        return Passage(getattr(provider, request_type), call.canonical_body(), None)

    def _stream_closed(self, stream: Stream) -> None:
        call = stream.call
        assert call is not None
        call.cancelled = not stream._ended and call.error is None
        self._finish(call, error=call.error, usage=stream.usage)

    def _finish(self, call: Call, *, error: GatewayError | None = None, usage: dict | None = None) -> None:
        """The request is over: settle usage and cost, then run the after-hooks."""
        call.finished_at = time.perf_counter()
        call.error = error
        if usage:
            call.usage = usage
        if call.served is not None and call.usage:
            if call.earlier_turns:
                call.cost = turns.cost(self.pricing, call)
            else:
                call.cost = self.pricing.cost(call.served.provider, call.served.model, call.usage)
        self.plugins.after(call)

    # -- the chain of targets, each with its retries --------------------------------------------

    def _run_chain(self, request_type: str, call: Call, attempt: Callable[..., Any]) -> Any:
        primary_error: GatewayError | None = None
        targets = [call.target, *call.fallbacks]
        for index, attempt_target in enumerate(targets):
            try:
                return self._with_retries(request_type, attempt_target, index, call, attempt)
            except GatewayError as error:
                error.attribute(attempt_target.provider, attempt_target.model, request_type)
                if index == 0:
                    primary_error = error
                if not error.allow_fallbacks:
                    raise
                if index < len(targets) - 1:
                    log.info(
                        "request %s: %s failed (%s %s), trying fallback %s",
                        call.ctx.request_id, attempt_target, error.http_status, error.message, targets[index + 1],
                    )
        assert primary_error is not None
        raise primary_error

    def _with_retries(
        self,
        request_type: str,
        target: Target,
        index: int,
        call: Call,
        attempt: Callable[[Provider, Key | None, Served, Passage], Any],
    ) -> Any:
        ctx = call.ctx
        provider = self.providers.get(target.provider)
        if provider is None:
            raise GatewayError(
                f"provider {target.provider} is not configured", 400,
                error_type="invalid_request_error", code="provider_not_configured",
            )
        passage = self._passage(provider, request_type, call)
        network = provider.config.network
        rate_limited: set[str] = set()
        # Key pins name a key of the primary provider; fallbacks choose their own.
        pinned = ctx.pinned_key if index == 0 else None
        allowed = ctx.key_filter.get(target.provider) if ctx.key_filter else None  # a virtual key's key_ids
        for retry in range(network.max_retries + 1):
            key = self._key(provider, target.model, pinned, rate_limited, allowed)
            served = Served(target.provider, target.model, index, key.name if key else None, retry)
            record = Attempt(target.provider, target.model, index, retry, served.key_name, time.perf_counter())
            call.attempts.append(record)
            try:
                result = attempt(provider, key, served, passage)
            except GatewayError as error:
                self.redactor.scrub(error)
                record.seconds = time.perf_counter() - record.started
                record.error = error
                if self.plugins:
                    self.plugins.on_attempt(call, record)
                if not error.retryable or retry == network.max_retries:
                    raise
                if error.rotate_key and key is not None:
                    rate_limited.add(key.name)
                delay = backoff(retry, network.retry_backoff_initial, network.retry_backoff_max)
                log.info(
                    "request %s: %s attempt %d failed (%s %s), retrying in %.0f ms",
                    ctx.request_id, target, retry + 1, error.http_status, error.message, delay * 1000,
                )
                gevent.sleep(delay)
                continue
            record.seconds = time.perf_counter() - record.started
            call.served = served
            if self.plugins:
                self.plugins.on_attempt(call, record)
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _key(provider: Provider, model: str, pinned: str | None, rate_limited: set[str],
             allowed: frozenset[str] | None = None) -> Key | None:
        keys = provider.config.keys
        if not keys and provider.config.keyless:
            return None
        if allowed is not None:
            keys = tuple(key for key in keys if key.name in allowed or key.id in allowed)
            if not keys:
                raise GatewayError(f"no key of {provider.name} is allowed for this virtual key", 403,
                                   type="key_blocked", allow_fallbacks=False)
        return select_key(keys, model, pinned=pinned, exclude=rate_limited)

    # -- model listing --------------------------------------------------------------------------

    def list_models(self, ctx: RequestContext, only: str | None = None) -> tuple[list[dict], Mapping[str, GatewayError]]:
        """Every configured provider's models as "provider/model" ids, fetched concurrently."""
        names = [only] if only else list(self.providers)
        if only and only not in self.providers:
            raise GatewayError(f"provider {only} is not configured", 400, param="provider")
        jobs = {name: gevent.spawn(self._models_or_error, name, ctx) for name in names}
        gevent.joinall(list(jobs.values()))
        models: list[dict] = []
        errors: dict[str, GatewayError] = {}
        for name, job in jobs.items():
            listed, error = job.value
            models.extend(listed)
            if error is not None:
                errors[name] = self.redactor.scrub(error)
                log.warning("request %s: models of %s unavailable: %s", ctx.request_id, name, error.message)
        return self.plugins.models(ctx, models), errors

    def _models_or_error(self, name: str, ctx: RequestContext) -> tuple[list[dict], GatewayError | None]:
        """One provider's models, or why not; never raises (a raising greenlet prints a traceback)."""
        try:
            return self._models_of(name, ctx), None
        except GatewayError as error:
            return [], error
        except Exception as exc:  # noqa: BLE001 - a bad listing is reported, not fatal
            return [], GatewayError(f"cannot list models: {exc}", 502, is_bifrost_error=True)

    def _models_of(self, name: str, ctx: RequestContext) -> list[dict]:
        provider = self.providers[name]
        if not provider.supports("list_models"):
            return []
        keys = [key for key in provider.config.keys if key.enabled]
        key = keys[0] if keys else None
        listed = []
        for model in provider.list_models(key, ctx):
            model = dict(model)
            model["id"] = f"{name}/{model.get('id')}"
            model.setdefault("object", "model")
            model.setdefault("owned_by", name)
            listed.append(model)
        return listed


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """min(initial x 2^attempt, max), with +-20% jitter so retries do not align."""
    return min(initial * (2 ** attempt), maximum) * random.uniform(0.8, 1.2)


def stream_extra_fields(request_type: str, served: Served) -> dict:
    """The ``extra_fields`` every reply carries: what was asked for and who answered."""
    extra = {"request_type": request_type, "provider": served.provider, "model_requested": served.model}
    if served.fallback_index:
        extra["fallback_index"] = served.fallback_index
    return extra


_NO_COST = object()


def stamp(reply: dict, request_type: str, served: Served, ctx: RequestContext, cost: Any = _NO_COST) -> dict:
    """Add ``extra_fields`` with the latency (and the USD cost, None if unknown) to a reply or a stream's final chunk."""
    extra = stream_extra_fields(request_type, served)
    extra["latency"] = round(ctx.elapsed_ms(), 3)
    if cost is not _NO_COST:
        extra["cost"] = cost
    reply["extra_fields"] = extra
    return reply
