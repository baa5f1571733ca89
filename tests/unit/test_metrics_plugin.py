"""The metrics plugin's labels: error kinds, bounded model labels, custom labels from x-bf-dim-* headers."""
from __future__ import annotations

import time

import gevent

from app.call import Attempt, Call
from app.config import parse_config
from app.context import RequestContext
from app.engine import Served
from app.errors import GatewayError
from app.plugins.metrics import MetricsPlugin, error_type
from app.schemas import Target
from app.transport import connection_error, timeout_error


def test_error_kinds():
    assert error_type(GatewayError("x", 429)) == "rate_limit"
    assert error_type(timeout_error(3)) == "timeout"
    assert error_type(connection_error(OSError("refused"))) == "connection_error"
    assert error_type(GatewayError("x", 502, error_type="upstream_stream_error")) == "stream_error"
    assert error_type(GatewayError("x", 401)) == "authentication"
    assert error_type(GatewayError("x", 503)) == "server_error"
    assert error_type(GatewayError("x", 404)) == "invalid_request"


def test_labels_are_bounded_and_custom_labels_come_from_headers():
    config = parse_config({"client": {"prometheus_labels": ["team"]}, "providers": {
        "openai": {"keys": [{"name": "k", "value": "x", "models": ["gpt-4o-mini"]}]},
        "groq": {"keys": [{"name": "g", "value": "x", "models": ["*"]}]}}}, environ={})
    plugin = MetricsPlugin(config)

    def run(provider, model, *, ok, environ):
        ctx = RequestContext(request_id="r", environ=environ)
        call = Call("chat_completion", False, {}, Target(provider, model), [], ctx)
        plugin.before(call)
        attempt = Attempt(provider, model, 0, 0, "k", time.perf_counter(), 0.01,
                          error=None if ok else GatewayError("no", 404))
        call.attempts.append(attempt)
        if ok:
            call.served = Served(provider, model, 0, "k", 0)
        else:
            call.error = attempt.error
        call.finished_at = time.perf_counter()
        plugin.after(call)

    run("groq", "made-up-1", ok=False, environ={"HTTP_X_BF_DIM_TEAM": "blue"})
    run("groq", "llama", ok=True, environ={"HTTP_X_BF_PROM_TEAM": "green"})  # the legacy header
    run("openai", "gpt-4o-mini", ok=False, environ={})  # a configured model keeps its name
    sample = plugin.series.registry.get_sample_value
    assert sample("bifrost_error_requests_total", {"provider": "groq", "model": "other", "method": "chat_completion",
                                                   "team": "blue"}) == 1
    assert sample("bifrost_success_requests_total", {"provider": "groq", "model": "llama", "method": "chat_completion",
                                                     "team": "green"}) == 1
    assert sample("bifrost_requests_total", {"provider": "openai", "model": "gpt-4o-mini", "status": "error"}) == 1
    assert sample("bifrost_active_requests", {"provider": "groq", "method": "chat_completion"}) == 0


def test_the_tally_writes_what_direct_increments_would_write():
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from app.plugins.metrics import LATENCY_BUCKETS, Tally

    def series():
        registry = CollectorRegistry()
        return (registry, Counter("c_total", "c", ("a",), registry=registry),
                Histogram("h_seconds", "h", ("a",), buckets=LATENCY_BUCKETS, registry=registry))

    direct, tallied = series(), series()
    tally = Tally()
    tally.busy = 1  # another request in flight: nothing is written until the flush
    values = (0.0, 0.005, 0.0051, 0.3, 0.3, 7.0, 120.0, 500.0)
    for value in values:
        direct[1].labels("x").inc(2.5)
        direct[2].labels("x").observe(value)
        tally.inc(tallied[1].labels("x"), 2.5)
        tally.observe(tallied[2].labels("x"), value)
    tally.settle()
    assert tallied[1].labels("x")._value.get() == 0  # waiting, up to FLUSH_EVERY
    gevent.sleep(0.2)  # the timer wrote it
    strip = lambda page: [line for line in page.decode().splitlines() if "_created" not in line]  # noqa: E731
    assert strip(generate_latest(tallied[0])) == strip(generate_latest(direct[0]))
    tally.busy = 0
    tally.inc(tallied[1].labels("x"))
    tally.settle()  # an idle worker writes at once
    assert tallied[1].labels("x")._value.get() == 2.5 * len(values) + 1
