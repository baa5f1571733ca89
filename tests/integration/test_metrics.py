"""GET /metrics: exact counts summed over two gunicorn workers, bounded labels, a fresh start per run."""
from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_process import GatewayProcess, free_port
from tests.integration.conftest import gateway_config
from tests.integration.observability_mix import JSON_CONCURRENT as J, run_mix, wait_for

pytestmark = pytest.mark.integration
BASE = {"method": "chat_completion", "team": "red"}


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    page = requests.get(url + "/metrics", timeout=5)
    assert page.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(page.text):  # prometheus_client's own parser
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name: str, **labels) -> float:
    """The sum over every series of a metric whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture()
def metrics_dir(tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left over from an earlier run")
    return folder


@pytest.fixture()
def metrics_gateway(fake, metrics_dir):
    config = gateway_config(fake.url, free_port())
    config["client"] = {"prometheus_labels": ["team"]}
    server = GatewayProcess(config, workers=2, env={"TEST_OPENAI_KEY": "sk-openai-1",
                                                     "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    server.start()
    yield server
    server.stop()


def test_metrics_of_a_known_mix_are_exact_over_two_workers(metrics_gateway, fake, metrics_dir):
    url = metrics_gateway.url
    assert not (metrics_dir / "counter_1.db").exists()  # the master emptied the operator's directory
    sent = run_mix(url, fake)
    ok = [s for s in sent if s.status == "success"]
    # the disconnected stream finishes in the background once the gateway notices
    assert wait_for(lambda: value(scrape(url), "bifrost_active_requests", provider="openai",
                                  method="chat_completion") == 0 and
                    total(scrape(url), "bifrost_requests_total") == len(sent), timeout=10)
    m = scrape(url)
    # both workers served part of the mix: each wrote its own counter file
    served = {path.name: sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
                             if json.loads(key)[1] == "bifrost_upstream_requests_total")
              for path in metrics_dir.glob("counter_*.db")}
    assert len(served) == 2 and all(served.values()), served

    # The mix (observability_mix.run_mix): J JSON and 2 streams on openai/gpt-4o-mini; openai/gpt-4o
    # answering after one 500 (2 attempts); refused/gpt-4o-mini (connection refused) falling back to
    # openai/gpt-4o-mini; perplexity/gpt-4o answering 429; a stream on openai/gpt-4o-mini whose client
    # leaves after the first event. J + 6 client requests, J + 8 upstream attempts.
    mini = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(m, "bifrost_requests_total", **mini, status="success") == J + 3  # JSON, 2 streams, fallback
    assert value(m, "bifrost_requests_total", provider="openai", model="gpt-4o", status="success") == 1
    assert value(m, "bifrost_requests_total", **mini, status="error") == 1  # the client that left
    # a model that never answered does not become a label
    assert value(m, "bifrost_requests_total", provider="perplexity", model="other", status="error") == 1
    assert total(m, "bifrost_requests_total") == J + 6
    assert not any(("model", "gpt-4o") in labels for (name, labels) in m if "perplexity" in dict(labels).values())

    assert value(m, "bifrost_upstream_requests_total", **mini, **BASE) == J + 4
    assert value(m, "bifrost_upstream_requests_total", provider="openai", model="gpt-4o", **BASE) == 2
    assert value(m, "bifrost_upstream_requests_total", provider="refused", model="other", **BASE) == 1
    assert value(m, "bifrost_upstream_requests_total", provider="perplexity", model="other", **BASE) == 1
    assert total(m, "bifrost_upstream_requests_total") == J + 8

    assert value(m, "bifrost_provider_errors_total", provider="openai", error_type="server_error") == 1
    assert value(m, "bifrost_provider_errors_total", provider="refused", error_type="connection_error") == 1
    assert value(m, "bifrost_provider_errors_total", provider="perplexity", error_type="rate_limit") == 1
    assert total(m, "bifrost_provider_errors_total") == 3

    assert value(m, "bifrost_success_requests_total", **mini, **BASE) == J + 3
    assert value(m, "bifrost_success_requests_total", provider="openai", model="gpt-4o", **BASE) == 1
    assert value(m, "bifrost_error_requests_total", **mini, **BASE) == 1
    assert value(m, "bifrost_error_requests_total", provider="perplexity", model="other", **BASE) == 1

    prompt = sum(s.usage["prompt_tokens"] for s in ok)
    completion = sum(s.usage["completion_tokens"] for s in ok)
    assert prompt > 0 and completion > 0
    assert total(m, "bifrost_input_tokens_total") == prompt
    assert total(m, "bifrost_output_tokens_total") == completion
    assert total(m, "bifrost_cost_total") == pytest.approx(sum(s.cost for s in ok), rel=1e-9)

    # histograms: one observation per client request / attempt / stream
    assert value(m, "bifrost_request_duration_seconds_count", provider="openai") == J + 5
    assert value(m, "bifrost_request_duration_seconds_count", provider="perplexity") == 1
    assert value(m, "bifrost_request_duration_seconds_bucket", provider="openai", le="+Inf") == J + 5
    assert total(m, "bifrost_upstream_latency_seconds_count") == J + 8
    assert total(m, "bifrost_upstream_latency_seconds_count", is_success="false") == 3
    assert total(m, "bifrost_request_retries_count") == J + 6
    assert total(m, "bifrost_request_retries_sum") == 2  # the retried 500 and the fallback
    assert total(m, "bifrost_stream_first_token_latency_seconds_count") == 3
    assert total(m, "bifrost_stream_inter_token_latency_seconds_count") == 3
    assert total(m, "bifrost_active_requests") == 0
    assert total(m, "bifrost_log_writes_dropped_total") == 0

    chat = {"path": "/v1/chat/completions", "method": "POST"}
    assert value(m, "http_requests_total", **chat, status="200") == J + 5
    assert value(m, "http_requests_total", **chat, status="429") == 1
    assert value(m, "http_request_duration_seconds_count", **chat, status="200") == J + 5
    # unknown routes share one label
    assert value(m, "http_requests_total", path="unmatched", method="GET", status="404") == 2
    assert not any(dict(labels).get("path", "").startswith("/nope") for (_, labels) in m)


def test_restart_starts_counters_from_zero(fake):
    server = GatewayProcess(gateway_config(fake.url, free_port()), workers=2, env={"TEST_OPENAI_KEY": "sk-openai-1"})
    with server:
        for _ in range(3):
            assert requests.post(server.url + "/v1/chat/completions", timeout=10, json={
                "model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
        assert total(scrape(server.url), "bifrost_requests_total") == 3
        server.stop()
        server.start()
        after = scrape(server.url)
        assert total(after, "bifrost_requests_total") == 0
        assert total(after, "bifrost_upstream_requests_total") == 0
        assert requests.post(server.url + "/v1/chat/completions", timeout=10, json={
            "model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
        assert total(scrape(server.url), "bifrost_requests_total") == 1


def test_a_stream_cut_upstream_counts_as_a_stream_error_and_logs_its_partial_output(fake):
    from tests.fakes import CutStream, Stream
    from tests.integration.observability_mix import chat, read_stream

    with GatewayProcess(gateway_config(fake.url, free_port()), env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        fake.plan((Stream(chunks=6), CutStream(3)), model="gpt-4o-mini")  # after its first events: no retry
        request_id, reply = chat(server.url, "openai/gpt-4o-mini", "cut me off", stream=True)
        text, usage, _ = read_stream(reply)
        assert reply.status_code == 200 and usage is None and text
        m = wait_for(lambda: (lambda s: s if total(s, "bifrost_requests_total") == 1 else None)(scrape(server.url)))
        assert value(m, "bifrost_requests_total", provider="openai", model="gpt-4o-mini", status="error") == 1
        assert value(m, "bifrost_provider_errors_total", provider="openai", error_type="stream_error") == 1
        assert total(m, "bifrost_input_tokens_total") == 0
        row = wait_for(lambda: (lambda r: r if r.get("status") == "error" else None)(
            requests.get(f"{server.url}/api/logs/{request_id}", timeout=5).json()))
        assert row["output_message"]["content"] == text  # what the client got before the cut
        assert row["error_details"]["error"]["type"] == "upstream_stream_error"
