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
from typing import Any, Callable, Iterator, Mapping

import gevent

from app.call import Attempt, Call
from app.config import GatewayConfig, Key
from app.context import RequestContext
from app.errors import GatewayError
from app.keys import select_key
from app.limits import ProviderGate
from app.plugins import Plugins, build_plugins
from app.pricing import Pricing
from app.providers.base import Provider
from app.providers.registry import build_provider
from app.providers.catalog import BUILTIN_PROVIDERS
from app.schemas import Target

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
    body: dict
    served: Served
    call: Call | None = None


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
    _on_close: Callable[["Stream"], None] | None = field(default=None, repr=False)
    price: Callable[[dict], float | None] | None = field(default=None, repr=False)  # usage -> USD
    _ended: bool = field(default=False, repr=False)  # the upstream stream ran to its end
    _closed: bool = field(default=False, repr=False)

    def __iter__(self) -> Iterator[dict]:
        try:
            yield self._count(self.first)
            for chunk in self._rest:
                yield self._count(chunk)
            self._ended = True
        except GatewayError as error:
            if self.call is not None:
                self.call.error = error
            raise
        finally:
            self.close()

    def _count(self, chunk: dict) -> dict:
        self.chunks += 1
        usage = chunk.get("usage")
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

    # -- public entry points ----------------------------------------------------------------

    def complete(
        self, request_type: str, body: dict, target: Target, fallbacks: list[Target], ctx: RequestContext,
        *, surface: str = "openai",
    ) -> Reply:
        call = Call(request_type, False, body, target, fallbacks, ctx, surface)

        def attempt(provider: Provider, key: Key | None, served: Served) -> Reply:
            gate = self.gates[provider.name]
            gate.acquire()
            try:
                return Reply(getattr(provider, request_type)(call.body, served.model, key, ctx), served, call)
            finally:
                gate.release()

        try:
            self.plugins.before(call)
            reply = self._run_chain(request_type, call, attempt)
        except GatewayError as error:
            self._finish(call, error=error)
            raise
        call.reply = reply.body
        self._finish(call, usage=reply.body.get("usage") if isinstance(reply.body, dict) else None)
        return reply

    def stream(
        self, request_type: str, body: dict, target: Target, fallbacks: list[Target], ctx: RequestContext,
        *, surface: str = "openai",
    ) -> Stream:
        stream_type = request_type + "_stream"
        call = Call(request_type, True, body, target, fallbacks, ctx, surface)

        def attempt(provider: Provider, key: Key | None, served: Served) -> Stream:
            gate = self.gates[provider.name]
            gate.acquire()
            try:
                chunks = getattr(provider, stream_type)(call.body, served.model, key, ctx)
                first = next(chunks, None)
                if first is None:
                    raise provider.stream_cut()
            except BaseException:
                gate.release()
                raise
            return Stream(served, first, chunks, gate.release, call=call, _on_close=self._stream_closed,
                          price=functools.partial(self.pricing.cost, served.provider, served.model))

        try:
            self.plugins.before(call)
            return self._run_chain(stream_type, call, attempt)
        except GatewayError as error:
            self._finish(call, error=error)
            raise

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
            call.cost = self.pricing.cost(call.served.provider, call.served.model, call.usage)
        self.plugins.after(call)

    # -- the chain of targets, each with its retries --------------------------------------------

    def _run_chain(self, request_type: str, call: Call, attempt: Callable[[Provider, Key | None, Served], Any]) -> Any:
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
        attempt: Callable[[Provider, Key | None, Served], Any],
    ) -> Any:
        ctx = call.ctx
        provider = self.providers.get(target.provider)
        if provider is None:
            raise GatewayError(
                f"provider {target.provider} is not configured", 400,
                error_type="invalid_request_error", code="provider_not_configured",
            )
        if not provider.supports(request_type):
            raise provider.unsupported(request_type)
        network = provider.config.network
        rate_limited: set[str] = set()
        # Key pins name a key of the primary provider; fallbacks choose their own.
        pinned = ctx.pinned_key if index == 0 else None
        for retry in range(network.max_retries + 1):
            key = self._key(provider, target.model, pinned, rate_limited)
            served = Served(target.provider, target.model, index, key.name if key else None, retry)
            record = Attempt(target.provider, target.model, index, retry, served.key_name, time.perf_counter())
            call.attempts.append(record)
            try:
                result = attempt(provider, key, served)
            except GatewayError as error:
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
    def _key(provider: Provider, model: str, pinned: str | None, rate_limited: set[str]) -> Key | None:
        keys = provider.config.keys
        if not keys and provider.config.keyless:
            return None
        return select_key(keys, model, pinned=pinned, exclude=rate_limited)

    # -- model listing --------------------------------------------------------------------------

    def list_models(self, ctx: RequestContext, only: str | None = None) -> tuple[list[dict], Mapping[str, GatewayError]]:
        """Every configured provider's models as "provider/model" ids, fetched concurrently."""
        names = [only] if only else list(self.providers)
        if only and only not in self.providers:
            raise GatewayError(f"provider {only} is not configured", 400, param="provider")
        jobs = {name: gevent.spawn(self._models_of, name, ctx) for name in names}
        gevent.joinall(list(jobs.values()))
        models: list[dict] = []
        errors: dict[str, GatewayError] = {}
        for name, job in jobs.items():
            if job.successful():
                models.extend(job.value)
            else:
                error = job.exception
                errors[name] = error if isinstance(error, GatewayError) else GatewayError(str(error), 502)
        return models, errors

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
