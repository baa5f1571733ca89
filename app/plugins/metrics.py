"""Prometheus metrics: the spec's and the reference's series, summed over every worker.

prometheus_client's multiprocess mode keeps each worker's values in mmap files under
PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py gives each server start a fresh one), so one
scrape of /metrics adds up all workers of this run. Each write to a file takes a lock
and a syscall, so a request's increments go to a per-worker Tally that writes them in one
go: at once when the worker has no other request in flight (a scrape after the traffic
sees every request), otherwise at most FLUSH_EVERY later, summed over every request of
that window (a busy worker writes about once per label set per window, not 17 times per request).
"""
from __future__ import annotations

import logging
import os
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import gevent

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.plugins import Plugin

if TYPE_CHECKING:
    from flask import Flask

    from app.call import Call
    from app.config import GatewayConfig
    from app.errors import GatewayError
    from app.mcp.manager import ToolExecution

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
OTHER = "other"  # the shared label value for anything unbounded (unknown model, route, provider)
UNMATCHED_PATH = "unmatched"
LABEL_VALUE_LIMIT = 64
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RETRY_BUCKETS = (0, 1, 2, 3, 5, 10)
FLUSH_EVERY = 0.05  # seconds a busy worker's increments may wait before they are written

log = logging.getLogger("bifrost.metrics")

# Outside gunicorn (no multiprocess dir) the metrics live in this registry; in multiprocess
# mode /metrics reads the workers' files instead and this registry stays empty.
REGISTRY = CollectorRegistry(auto_describe=True)


class Series:
    """Every metric this gateway exports, created once per process per set of custom labels."""

    _made: dict[tuple[str, ...], "Series"] = {}

    @classmethod
    def get(cls, custom: tuple[str, ...]) -> "Series":
        series = cls._made.get(custom)
        if series is None:
            series = cls._made[custom] = cls(custom)
        return series

    def __init__(self, custom: tuple[str, ...]) -> None:
        # In multiprocess mode the files are the registry. Otherwise the first set is exported
        # from REGISTRY; another set (a second app with other custom labels, in tests) gets its own.
        if MULTIPROCESS:
            registry = None
        else:
            registry = CollectorRegistry(auto_describe=True) if self._made else REGISTRY
        self.registry = registry
        base = ("provider", "model", "method", *custom)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        # The spec's three
        self.requests = counter("bifrost_requests_total", "Client requests by outcome", ("provider", "model", "status"))
        self.duration = histogram("bifrost_request_duration_seconds", "Client request duration in seconds",
                                  ("provider",), LATENCY_BUCKETS)
        self.provider_errors = counter("bifrost_provider_errors_total", "Failed upstream attempts by kind",
                                       ("provider", "error_type"))
        # The reference's set
        self.upstream = counter("bifrost_upstream_requests_total", "Upstream attempts (retries and fallbacks each count)", base)
        self.success = counter("bifrost_success_requests_total", "Client requests that succeeded", base)
        self.errors = counter("bifrost_error_requests_total", "Client requests that failed", base)
        self.upstream_latency = histogram("bifrost_upstream_latency_seconds", "Upstream attempt latency in seconds",
                                          (*base, "is_success"), LATENCY_BUCKETS)
        self.input_tokens = counter("bifrost_input_tokens_total", "Input (prompt) tokens", base)
        self.output_tokens = counter("bifrost_output_tokens_total", "Output (completion) tokens", base)
        self.cost = counter("bifrost_cost_total", "Cost in USD", base)
        self.first_token = histogram("bifrost_stream_first_token_latency_seconds",
                                     "Time to a stream's first chunk in seconds", base, LATENCY_BUCKETS)
        self.inter_token = histogram("bifrost_stream_inter_token_latency_seconds",
                                     "Mean time between a stream's chunks in seconds (one observation per stream)",
                                     base, TOKEN_LATENCY_BUCKETS)
        self.retries = histogram("bifrost_request_retries", "Retries and fallbacks per client request", base, RETRY_BUCKETS)
        self.active = Gauge("bifrost_active_requests", "Requests in flight", ("provider", "method"),
                            registry=registry, multiprocess_mode="livesum")
        # HTTP level, every route
        self.http_requests = counter("http_requests_total", "HTTP requests", ("path", "method", "status"))
        self.http_duration = histogram("http_request_duration_seconds", "HTTP request duration in seconds (to the headers)",
                                       ("path", "method", "status"), LATENCY_BUCKETS)
        # MCP tool executions (app/mcp/manager.py listeners): /v1/mcp/tool/execute, agent mode, /mcp
        self.mcp_executions = counter("bifrost_mcp_tool_executions_total", "MCP tool executions by outcome",
                                      ("client", "tool", "status"))
        self.mcp_duration = histogram("bifrost_mcp_tool_execution_duration_seconds",
                                      "MCP tool execution time in seconds", ("client", "tool"), LATENCY_BUCKETS)


# Counted by the request log plugin when its queue is full; one series, no labels.
LOG_WRITES_DROPPED = Counter("bifrost_log_writes_dropped_total", "Request log rows given up (queue full)",
                             registry=None if MULTIPROCESS else REGISTRY)


class Tally:
    """Increments and observations waiting to be written to prometheus_client's values.

    Histogram observations are summed per bucket: one write for the sum and one per bucket
    hit, however many observations the window had. This uses prometheus_client's histogram
    layout (``_upper_bounds``, ``_buckets``, ``_sum``, stable since its first releases);
    tests/unit/test_metrics_plugin.py checks the result against ``observe``.
    """

    def __init__(self) -> None:
        self.counts: dict[Any, float] = {}  # counter or gauge child -> amount
        self.observed: dict[Any, list] = {}  # histogram child -> [sum, hits per bucket...]
        self.busy = 0  # inference requests in flight in this worker
        self._timer = None

    def inc(self, child: Any, amount: float = 1.0) -> None:
        self.counts[child] = self.counts.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        bounds = child._upper_bounds
        slot = self.observed.get(child)
        if slot is None:
            slot = self.observed[child] = [0.0] + [0] * len(bounds)
        slot[0] += value
        slot[1 + bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value, as observe()

    def settle(self) -> None:
        """A request's increments are in: write them now if the worker is idle, else soon."""
        if self.busy <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = gevent.get_hub().loop.timer(FLUSH_EVERY)
            self._timer.start(self.flush)

    def flush(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        counts, self.counts = self.counts, {}
        observed, self.observed = self.observed, {}
        try:
            for child, amount in counts.items():
                if amount:
                    child.inc(amount)
            for child, slot in observed.items():
                child._sum.inc(slot[0])
                for index, hits in enumerate(slot[1:]):
                    if hits:
                        child._buckets[index].inc(hits)
        except Exception:  # never let a metrics write break the hub's timer callback
            log.exception("metrics: writing the tally failed")


TALLY = Tally()  # one per worker process


class _Children:
    """The labelled children of one (provider, model, method, custom...) label set."""

    __slots__ = ("provider", "upstream", "upstream_ok", "upstream_failed", "success", "errors", "input_tokens", "output_tokens",
                 "cost", "first_token", "inter_token", "retries", "requests_success", "requests_error", "duration",
                 "active")

    def __init__(self, series: Series, provider: str, model: str, method: str, custom: tuple[str, ...]) -> None:
        labels = (provider, model, method, *custom)
        self.provider = provider
        self.upstream = series.upstream.labels(*labels)
        self.upstream_ok = series.upstream_latency.labels(*labels, "true")
        self.upstream_failed = series.upstream_latency.labels(*labels, "false")
        self.success = series.success.labels(*labels)
        self.errors = series.errors.labels(*labels)
        self.input_tokens = series.input_tokens.labels(*labels)
        self.output_tokens = series.output_tokens.labels(*labels)
        self.cost = series.cost.labels(*labels)
        self.first_token = series.first_token.labels(*labels)
        self.inter_token = series.inter_token.labels(*labels)
        self.retries = series.retries.labels(*labels)
        self.requests_success = series.requests.labels(provider, model, "success")
        self.requests_error = series.requests.labels(provider, model, "error")
        self.duration = series.duration.labels(provider)
        self.active = series.active.labels(provider, method)


def error_type(error: "GatewayError") -> str:
    """The provider_errors_total kind of a failed attempt."""
    kind = error.error_type or ""
    status = error.http_status
    if status == 429:
        return "rate_limit"
    if kind == "timeout" or error.type == "request_timed_out":
        return "timeout"
    if kind == "upstream_connection_error":
        return "connection_error"
    if kind == "upstream_stream_error":
        return "stream_error"
    if kind == "upstream_invalid_response":
        return "invalid_response"
    if error.type == "request_dropped":
        return "queue_full"
    if status in (401, 403):
        return "authentication"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "invalid_request"
    return OTHER


class MetricsPlugin(Plugin):
    name = "metrics"

    def __init__(self, config: "GatewayConfig") -> None:
        self.custom = tuple(config.client.prometheus_labels)
        # x-bf-dim-<label> (and the legacy x-bf-prom-<label>) as WSGI environ keys
        self.custom_keys = tuple(
            ("HTTP_X_BF_DIM_" + label.upper().replace("-", "_"), "HTTP_X_BF_PROM_" + label.upper().replace("-", "_"))
            for label in self.custom
        )
        self.series = Series.get(self.custom)
        self.providers = frozenset(config.providers)
        # A model label comes only from a configured model (a key's models) or one that answered.
        self.known_models: dict[str, set[str]] = {
            name: {model for key in pc.keys for model in key.models if model != "*"}
            for name, pc in config.providers.items()
        }
        self._children: dict[tuple, _Children] = {}
        self.tally = TALLY
        self._active: dict[tuple[str, str], Any] = {}
        from app.mcp import manager_for

        self.mcp = manager_for(config)
        self.mcp.listeners.append(self.tool_executed)
        self._mcp_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def tool_executed(self, record: "ToolExecution") -> None:
        """One MCP tool execution (main thread). Labels only name clients this worker runs and their tools."""
        key = (record.client, record.tool, record.status)
        pair = self._mcp_children.get(key)
        if pair is None:
            config = self.mcp.configs.get(record.client)
            client = record.client if config is not None else OTHER
            tool = record.tool if config is not None and self._tool_known(record.client, record.tool) else OTHER
            pair = (self.series.mcp_executions.labels(client, tool, record.status),
                    self.series.mcp_duration.labels(client, tool))
            if client != OTHER and tool != OTHER:
                self._mcp_children[key] = pair
        pair[0].inc()
        pair[1].observe(record.seconds)

    def _tool_known(self, client: str, tool: str) -> bool:
        return any(entry.client == client for entry in self.mcp.catalog.by_tool.get(tool, ()))

    # -- labels ------------------------------------------------------------------------------

    def _custom_values(self, call: "Call") -> tuple[str, ...]:
        if not self.custom_keys:
            return ()
        environ = call.ctx.environ
        values = []
        for dim, legacy in self.custom_keys:
            value = environ.get(dim) or environ.get(legacy) or ""
            values.append(value[:LABEL_VALUE_LIMIT])
        return tuple(values)

    def _model_label(self, provider: str, model: str, answered: bool) -> str:
        known = self.known_models.get(provider)
        if known is None:
            return OTHER
        if model in known:
            return model
        if answered:
            known.add(model)  # bounded by what the upstream accepts
            return model
        return OTHER

    def children(self, call: "Call", provider: str, model: str, answered: bool) -> _Children:
        if provider not in self.providers:
            provider, model = OTHER, OTHER
        else:
            model = self._model_label(provider, model, answered)
        custom = call.state.get("metrics.custom")
        if custom is None:
            custom = call.state["metrics.custom"] = self._custom_values(call)
        key = (provider, model, call.request_type, custom)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _Children(self.series, provider, model, call.request_type, custom)
        return found

    # -- hooks -------------------------------------------------------------------------------

    def before(self, call: "Call") -> None:
        key = (call.target.provider, call.request_type)
        gauge = self._active.get(key)
        if gauge is None:
            provider = key[0] if key[0] in self.providers else OTHER
            gauge = self._active[key] = self.series.active.labels(provider, call.request_type)
        tally = self.tally
        tally.inc(gauge)
        tally.busy += 1
        call.state["metrics.active"] = gauge
        tally.settle()  # busy now: a long request shows as active within FLUSH_EVERY

    def after(self, call: "Call") -> None:
        tally = self.tally
        gauge = call.state.pop("metrics.active", None)
        if gauge is not None:
            tally.inc(gauge, -1.0)
            tally.busy -= 1
        try:
            self._count(call, tally)
        finally:
            tally.settle()

    def close(self) -> None:
        self.tally.flush()

    def _count(self, call: "Call", tally: Tally) -> None:
        inc, observe = tally.inc, tally.observe
        # Attempts are counted here, once the request is over, so that a model that answered
        # on a retry labels its failed first attempt too.
        attempts = call.attempts
        for attempt in attempts:
            if attempt.error is None:
                self._model_label(attempt.provider, attempt.model, True)
        for attempt in attempts:
            error = attempt.error
            counted = self.children(call, attempt.provider, attempt.model, False)
            inc(counted.upstream)
            if error is None:
                observe(counted.upstream_ok, attempt.seconds)
            else:
                observe(counted.upstream_failed, attempt.seconds)
                inc(self.series.provider_errors.labels(counted.provider, error_type(error)))
        served = call.served
        if served is not None:
            children = self.children(call, served.provider, served.model, True)
        else:
            last = call.attempts[-1] if call.attempts else None
            provider, model = (last.provider, last.model) if last else (call.target.provider, call.target.model)
            children = self.children(call, provider, model, False)
        failed = call.error is not None or call.cancelled
        if failed:
            inc(children.errors)
            inc(children.requests_error)
            if call.error is not None and served is not None and call.stream:
                # the stream had started (its attempt counted as answered) and then broke
                inc(self.series.provider_errors.labels(children.provider, "stream_error"))
        else:
            inc(children.success)
            inc(children.requests_success)
        observe(children.duration, call.seconds)
        if call.attempts:
            observe(children.retries, len(call.attempts) - 1)
        usage = call.usage
        if usage:
            prompt = usage.get("prompt_tokens") or 0
            completion = usage.get("completion_tokens") or 0
            if prompt:
                inc(children.input_tokens, prompt)
            if completion:
                inc(children.output_tokens, completion)
        if call.cost:
            inc(children.cost, call.cost)
        if call.stream and call.first_chunk_at is not None:
            observe(children.first_token, call.first_chunk_at - call.ctx.started)
            gaps = call.chunk_gaps
            if gaps:
                observe(children.inter_token, sum(gaps) / len(gaps))


# -- /metrics and the HTTP-level series -----------------------------------------------------


def install(app: "Flask", config: "GatewayConfig") -> None:
    """GET /metrics through prometheus-flask-exporter, plus http_requests_total per route template."""
    from flask import request
    from prometheus_flask_exporter import PrometheusMetrics

    from app.middleware import CONTEXT_KEY

    series = Series.get(tuple(config.client.prometheus_labels))
    # export_defaults=False: the exporter's own series are named http_request_total with no
    # path label; the reference's http_requests_total{path,method,status} is recorded below.
    PrometheusMetrics(app, path="/metrics", export_defaults=False, registry=REGISTRY)
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @app.after_request
    def _http_metrics(response):
        rule = request.url_rule
        path = rule.rule if rule is not None else UNMATCHED_PATH
        status = response.status_code
        key = (path, request.method, status)
        pair = children.get(key)
        if pair is None:
            method = key[1] if key[1] in _METHODS else OTHER
            pair = children[key] = (series.http_requests.labels(path, method, str(status)),
                                    series.http_duration.labels(path, method, str(status)))
        TALLY.inc(pair[0])
        ctx = request.environ.get(CONTEXT_KEY)
        if ctx is not None:
            TALLY.observe(pair[1], time.perf_counter() - ctx.started)
        TALLY.settle()
        return response


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def dropped_total() -> float:
    """bifrost_log_writes_dropped_total summed over every worker of this run."""
    if not MULTIPROCESS:
        return float(REGISTRY.get_sample_value("bifrost_log_writes_dropped_total") or 0.0)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    value = registry.get_sample_value("bifrost_log_writes_dropped_total")
    return float(value or 0.0)
