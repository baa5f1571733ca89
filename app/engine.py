"""The engine: one canonical request in, one canonical reply (or stream) out.

For each target (the primary, then each fallback in order) it picks a key, calls the
provider adapter, and retries transient failures with backoff. Streams are opened
the same way, and the first upstream event is pulled before the caller sees
anything, so a stream that fails early can still be retried, fall back, or become a
JSON error with the right status.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import gevent

from app.config import GatewayConfig, Key
from app.context import RequestContext
from app.errors import GatewayError
from app.keys import select_key
from app.limits import ProviderGate
from app.providers.base import Provider
from app.providers.registry import build_provider
from app.providers.catalog import BUILTIN_PROVIDERS
from app.redaction import Redactor
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


@dataclass
class Stream:
    """An open upstream stream whose first chunk has already arrived.

    Iterating yields canonical chunks, the first one included; ``close`` releases
    the upstream connection and the provider's concurrency slot, and is safe to call
    more than once (the client may disconnect at any point).
    """

    served: Served
    first: dict
    _rest: Iterator[dict]
    _release: Callable[[], None]
    usage: dict | None = None
    chunks: int = 0
    _closed: bool = field(default=False, repr=False)
    _scrub: Callable[[GatewayError], GatewayError] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[dict]:
        try:
            yield self._count(self.first)
            for chunk in self._rest:
                yield self._count(chunk)
        except GatewayError as error:
            raise (self._scrub(error) if self._scrub else error)
        finally:
            self.close()

    def _count(self, chunk: dict) -> dict:
        self.chunks += 1
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
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
        self.redactor = Redactor.from_config(config)  # every error passed on is scrubbed of key values

    # -- public entry points ----------------------------------------------------------------

    def complete(
        self, request_type: str, body: dict, target: Target, fallbacks: list[Target], ctx: RequestContext
    ) -> Reply:
        def call(provider: Provider, key: Key | None, served: Served) -> Reply:
            gate = self.gates[provider.name]
            gate.acquire()
            try:
                return Reply(getattr(provider, request_type)(body, served.model, key, ctx), served)
            finally:
                gate.release()

        return self._run_chain(request_type, target, fallbacks, ctx, call)

    def stream(
        self, request_type: str, body: dict, target: Target, fallbacks: list[Target], ctx: RequestContext
    ) -> Stream:
        stream_type = request_type + "_stream"

        def call(provider: Provider, key: Key | None, served: Served) -> Stream:
            gate = self.gates[provider.name]
            gate.acquire()
            try:
                chunks = getattr(provider, stream_type)(body, served.model, key, ctx)
                first = next(chunks, None)
                if first is None:
                    raise provider.stream_cut()
            except BaseException:
                gate.release()
                raise
            return Stream(served, first, chunks, gate.release, _scrub=self.redactor.scrub)

        return self._run_chain(stream_type, target, fallbacks, ctx, call)

    # -- the chain of targets, each with its retries --------------------------------------------

    def _run_chain(
        self,
        request_type: str,
        target: Target,
        fallbacks: list[Target],
        ctx: RequestContext,
        call: Callable[[Provider, Key | None, Served], Any],
    ) -> Any:
        primary_error: GatewayError | None = None
        for index, attempt_target in enumerate([target, *fallbacks]):
            try:
                return self._with_retries(request_type, attempt_target, index, ctx, call)
            except GatewayError as error:
                error.attribute(attempt_target.provider, attempt_target.model, request_type)
                if index == 0:
                    primary_error = error
                if not error.allow_fallbacks:
                    raise
                if index < len(fallbacks):
                    log.info(
                        "request %s: %s failed (%s %s), trying fallback %s",
                        ctx.request_id, attempt_target, error.http_status, error.message, fallbacks[index],
                    )
        assert primary_error is not None
        raise primary_error

    def _with_retries(
        self,
        request_type: str,
        target: Target,
        index: int,
        ctx: RequestContext,
        call: Callable[[Provider, Key | None, Served], Any],
    ) -> Any:
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
        for attempt in range(network.max_retries + 1):
            key = self._key(provider, target.model, pinned, rate_limited)
            served = Served(target.provider, target.model, index, key.name if key else None, attempt)
            try:
                return call(provider, key, served)
            except GatewayError as error:
                self.redactor.scrub(error)
                if not error.retryable or attempt == network.max_retries:
                    raise
                if error.rotate_key and key is not None:
                    rate_limited.add(key.name)
                delay = backoff(attempt, network.retry_backoff_initial, network.retry_backoff_max)
                log.info(
                    "request %s: %s attempt %d failed (%s %s), retrying in %.0f ms",
                    ctx.request_id, target, attempt + 1, error.http_status, error.message, delay * 1000,
                )
                gevent.sleep(delay)
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
        return models, errors

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


def stamp(reply: dict, request_type: str, served: Served, ctx: RequestContext) -> dict:
    """Add ``extra_fields`` with the latency to a canonical reply or a stream's final chunk."""
    extra = stream_extra_fields(request_type, served)
    extra["latency"] = round(ctx.elapsed_ms(), 3)
    reply["extra_fields"] = extra
    return reply
