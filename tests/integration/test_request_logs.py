"""Request logs through the real gateway: the mix's rows, /api/logs filters, sorts, pages, search; SQLite and PostgreSQL."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.gateway_process import GatewayProcess, free_port
from tests.integration.conftest import gateway_config
from tests.integration.observability_mix import STREAM_WORDS, Sent, chat, run_mix, wait_for
from tests.pg import postgres_store, scratch_database

pytestmark = pytest.mark.integration


def api(url: str, path: str = "", **params):
    reply = requests.get(f"{url}/api/logs{path}", params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request):
    return request.param


@pytest.fixture()
def logs_gateway(fake, store_kind):
    config = gateway_config(fake.url, free_port())
    if store_kind == "postgres":
        with scratch_database() as name:
            config["logs_store"] = postgres_store(name)
            with GatewayProcess(config, workers=2, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
                yield server
    else:
        with GatewayProcess(config, workers=2, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
            yield server


def test_every_request_of_the_mix_is_logged(logs_gateway, fake):
    url = logs_gateway.url
    sent = run_mix(url, fake)
    parent = str(uuid.uuid4())
    request_id, reply = chat(url, "chatonly/gpt-4o-mini", "no price for me", headers={"x-bf-parent-request-id": parent})
    assert reply.status_code == 200 and reply.json()["extra_fields"]["cost"] is None
    assert "x-bifrost-cost-usd" not in reply.headers
    sent.append(Sent(request_id, "unpriced", "success", "chatonly", "gpt-4o-mini", usage=reply.json()["usage"],
                     output=reply.json()["choices"][0]["message"]["content"], prompt="no price for me"))
    finished = time.monotonic()

    def settled():
        page = api(url, limit=1000)
        done = [row for row in page["logs"] if row["status"] != "processing"]
        return page if len(done) == len(sent) else None

    page = wait_for(settled, timeout=5)
    assert page, api(url, limit=1000)
    assert time.monotonic() - finished < 2.0, time.monotonic() - finished
    rows = {row["id"]: row for row in page["logs"]}
    assert page["pagination"] == {"limit": 1000, "offset": 0, "sort_by": "timestamp", "order": "desc",
                                  "total_count": len(sent)}
    assert page["has_logs"] is True
    for s in sent:
        row = rows[s.id]
        assert row["status"] == s.status, (s.kind, row)
        assert (row["provider"], row["model"], row["stream"]) == (s.provider, s.model, s.stream), s.kind
        assert row["object"] == "chat.completion"
        assert row["number_of_retries"] == s.retries, s.kind
        assert row["fallback_index"] == s.fallback_index, s.kind
        assert row["input_history"] == [{"role": "user", "content": s.prompt}]
        assert row["content_hidden"] is False and row["content_summary"] == s.prompt
        assert row["latency"] > 0
        if s.status == "success":
            assert row["token_usage"]["prompt_tokens"] == s.usage["prompt_tokens"], s.kind
            assert row["token_usage"]["completion_tokens"] == s.usage["completion_tokens"], s.kind
            assert row["token_usage"]["total_tokens"] == s.usage["total_tokens"], s.kind
            assert row["token_usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
            assert row["output_message"]["content"] == s.output, s.kind
            assert row["output_message"]["role"] == "assistant"
            assert row["stop_reason"] == "stop"
            assert row["error_details"] is None
            if s.cost is None:
                assert row["cost"] is None
            else:
                assert row["cost"] == pytest.approx(s.cost, rel=1e-9)
            assert row["selected_key_id"] == {"openai": "oa-1", "chatonly": "c"}[s.provider]
        else:
            assert row["cost"] is None and row["token_usage"] is None
            assert row["error_details"]["status_code"] == {"429": 429, "disconnect": 499}[s.kind]
    stream = next(s for s in sent if s.output == STREAM_WORDS)
    assert rows[stream.id]["output_message"] == {"role": "assistant", "content": STREAM_WORDS}
    assert rows[request_id]["parent_request_id"] == parent

    check_filters(url, sent, rows, parent)
    check_sorts_and_pages(url, sent)
    check_other_routes(url, sent, rows)


def ids(page) -> set[str]:
    return {row["id"] for row in page["logs"]}


def check_filters(url: str, sent: list[Sent], rows: dict, parent: str) -> None:
    every = {s.id for s in sent}
    by = lambda test: {s.id for s in sent if test(s)}  # noqa: E731
    assert ids(api(url, providers="perplexity")) == by(lambda s: s.provider == "perplexity")
    assert ids(api(url, providers="perplexity,chatonly")) == by(lambda s: s.provider in ("perplexity", "chatonly"))
    assert ids(api(url, models="gpt-4o")) == by(lambda s: s.model == "gpt-4o")
    assert ids(api(url, status="error")) == by(lambda s: s.status == "error")
    assert ids(api(url, status="success,error")) == every
    assert ids(api(url, status="processing")) == set()
    assert ids(api(url, objects="chat.completion")) == every
    assert ids(api(url, objects="text.completion")) == set()
    assert ids(api(url, stop_reasons="stop")) == by(lambda s: s.status == "success")
    assert ids(api(url, selected_key_ids="c")) == by(lambda s: s.provider == "chatonly")
    for name in ("virtual_key_ids", "team_ids", "customer_ids"):
        assert ids(api(url, **{name: "nobody"})) == set()
    assert ids(api(url, parent_request_id=parent)) == by(lambda s: s.kind == "unpriced")
    one = sent[0].id
    assert ids(api(url, request_id=one)) == {one}
    assert ids(api(url, start_time="2000-01-01T00:00:00Z")) == every
    assert ids(api(url, start_time="2999-01-01T00:00:00Z")) == set()
    assert ids(api(url, end_time="2000-01-01T00:00:00+00:00")) == set()
    latencies = sorted(row["latency"] for row in rows.values())
    middle = latencies[len(latencies) // 2]
    assert ids(api(url, min_latency=middle)) == {i for i, r in rows.items() if r["latency"] >= middle}
    assert ids(api(url, max_latency=middle)) == {i for i, r in rows.items() if r["latency"] <= middle}
    tokens = {i: (r["token_usage"] or {}).get("total_tokens") for i, r in rows.items()}
    most = max(t for t in tokens.values() if t is not None)
    assert ids(api(url, min_tokens=most)) == {i for i, t in tokens.items() if t is not None and t >= most}
    assert ids(api(url, max_tokens=most - 1)) == {i for i, t in tokens.items() if t is not None and t <= most - 1}
    costs = {i: r["cost"] for i, r in rows.items()}
    top = max(c for c in costs.values() if c is not None)
    assert ids(api(url, min_cost=top)) == {i for i, c in costs.items() if c is not None and c >= top}
    assert ids(api(url, max_cost=top / 2)) == {i for i, c in costs.items() if c is not None and c <= top / 2}
    assert ids(api(url, missing_cost_only="true")) == by(lambda s: s.cost is None)
    assert ids(api(url, missing_cost_only="false")) == every
    stream = next(s for s in sent if s.output == STREAM_WORDS)
    assert ids(api(url, content_search="xylophone")) == {stream.id}  # a word of a stream's output
    assert ids(api(url, content_search="XYLOPHONE quasar")) == {stream.id}
    assert ids(api(url, content_search="retry")) == by(lambda s: s.kind == "retried")  # a word of an input
    assert ids(api(url, content_search="nowhere-to-be-found")) == set()
    assert ids(api(url, content_search='"quoted" OR *')) == set()  # no query syntax leaks through
    # filters combine, and stats follow the filters
    page = api(url, providers="openai", status="success")
    assert ids(page) == by(lambda s: s.provider == "openai" and s.status == "success")
    assert page["stats"]["total_requests"] == len(ids(page)) and page["stats"]["success_rate"] == 100.0


def check_sorts_and_pages(url: str, sent: list[Sent]) -> None:
    for sort_by, key in (("timestamp", "timestamp"), ("latency", "latency"), ("cost", "cost"), ("tokens", None)):
        for order in ("asc", "desc"):
            page = api(url, sort_by=sort_by, order=order, limit=1000)
            values = [row[key] if key else (row["token_usage"] or {}).get("total_tokens") for row in page["logs"]]
            present = [v for v in values if v is not None]
            assert present == sorted(present, reverse=order == "desc"), (sort_by, order, values)
            assert page["pagination"]["sort_by"] == sort_by and page["pagination"]["order"] == order
    seen = []
    for offset in range(0, len(sent), 4):
        page = api(url, limit=4, offset=offset, sort_by="latency", order="asc")
        assert page["pagination"]["total_count"] == len(sent)
        assert len(page["logs"]) == min(4, len(sent) - offset)
        seen.extend(row["id"] for row in page["logs"])
    assert sorted(seen) == sorted(s.id for s in sent) and len(set(seen)) == len(sent)
    assert api(url, offset=len(sent))["logs"] == []


def check_other_routes(url: str, sent: list[Sent], rows: dict) -> None:
    ok = [s for s in sent if s.status == "success"]
    stats = api(url, "/stats")
    assert stats["total_requests"] == len(sent)
    assert stats["success_rate"] == pytest.approx(100.0 * len(ok) / len(sent))
    assert stats["prompt_tokens"] == sum(s.usage["prompt_tokens"] for s in ok)
    assert stats["completion_tokens"] == sum(s.usage["completion_tokens"] for s in ok)
    assert stats["total_tokens"] == sum(s.usage["total_tokens"] for s in ok)
    assert stats["total_cost"] == pytest.approx(sum(s.cost or 0 for s in ok), rel=1e-9)
    assert stats["average_latency"] == pytest.approx(sum(r["latency"] for r in rows.values()) / len(rows), abs=1e-3)
    assert api(url, "/stats", providers="perplexity")["total_requests"] == 1

    histogram = api(url, "/histogram")
    assert sum(b["count"] for b in histogram["buckets"]) == len(sent)
    assert sum(b["success"] for b in histogram["buckets"]) == len(ok)
    assert sum(b["error"] for b in histogram["buckets"]) == len(sent) - len(ok)
    assert histogram["bucket_size"] >= 1
    assert sum(b["count"] for b in api(url, "/histogram", bucket_size=3600, status="error")["buckets"]) == 2

    data = api(url, "/filterdata")
    assert set(data["providers"]) == {"openai", "perplexity", "chatonly"}
    assert {"gpt-4o-mini", "gpt-4o"} <= set(data["models"])
    assert {"id": "oa-1", "name": "oa-1"} in data["selected_keys"] and data["virtual_keys"] == []
    assert api(url, "/dropped") == {"dropped_requests": 0}

    first = sent[0].id
    assert api(url, f"/{first}") == rows[first]
    missing = requests.get(f"{url}/api/logs/no-such-id", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "log no-such-id not found"

    for params, name in (({"limit": "abc"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
                         ({"offset": "-1"}, "offset"), ({"sort_by": "size"}, "sort_by"), ({"order": "up"}, "order"),
                         ({"status": "done"}, "status"), ({"start_time": "yesterday"}, "start_time"),
                         ({"min_cost": "cheap"}, "min_cost"), ({"max_tokens": "1.5"}, "max_tokens"),
                         ({"min_latency": "-3"}, "min_latency"), ({"missing_cost_only": "maybe"}, "missing_cost_only"),
                         ({"colour": "red"}, "colour")):
        reply = requests.get(f"{url}/api/logs", params=params, timeout=5)
        assert reply.status_code == 400, (params, reply.text)
        assert reply.json()["error"]["param"] == name and name in reply.json()["error"]["message"]
    assert requests.get(f"{url}/api/logs/histogram", params={"bucket_size": "0"}, timeout=5).status_code == 400
    assert requests.delete(f"{url}/api/logs", json={"ids": "x"}, timeout=5).status_code == 400

    gone = requests.delete(f"{url}/api/logs", json={"ids": [first, "no-such-id"]}, timeout=5)
    assert gone.status_code == 200 and gone.json() == {"deleted": 1}
    assert requests.get(f"{url}/api/logs/{first}", timeout=5).status_code == 404
    assert api(url)["pagination"]["total_count"] == len(sent) - 1


def test_content_logging_off_and_the_per_request_header(fake):
    config = gateway_config(fake.url, free_port())
    config["client"] = {"allow_per_request_content_storage_override": True}
    with GatewayProcess(config, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        shown, _ = chat(server.url, "openai/gpt-4o-mini", "visible words")
        hidden, _ = chat(server.url, "openai/gpt-4o-mini", "secret words", stream=True,
                         headers={"x-bf-disable-content-logging": "true"})
        assert wait_for(lambda: api(server.url, status="success")["pagination"]["total_count"] == 2)
        row = api(server.url, f"/{hidden}")
        assert row["content_hidden"] is True and row["token_usage"]["total_tokens"] > 0
        for name in ("input_history", "output_message", "content_summary"):
            assert name not in row
        assert api(server.url, content_search="secret")["logs"] == []
        assert api(server.url, f"/{shown}")["input_history"] == [{"role": "user", "content": "visible words"}]

    config["client"] = {"disable_content_logging": True}  # and no override allowed: the header cannot turn it on
    with GatewayProcess(config, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        request_id, _ = chat(server.url, "openai/gpt-4o-mini", "private", headers={"x-bf-disable-content-logging": "false"})
        assert wait_for(lambda: api(server.url, status="success")["logs"])
        assert api(server.url, f"/{request_id}")["content_hidden"] is True


def test_logging_can_be_turned_off(fake):
    config = gateway_config(fake.url, free_port())
    config["client"] = {"enable_logging": False}
    with GatewayProcess(config, env={"TEST_OPENAI_KEY": "sk-openai-1"}) as server:
        assert chat(server.url, "openai/gpt-4o-mini", "hi")[1].status_code == 200
        reply = requests.get(server.url + "/api/logs", timeout=5)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "logging_disabled"
        assert "components" not in requests.get(server.url + "/health", timeout=5).json()
        assert not (server.app_dir and __import__("pathlib").Path(server.app_dir, "logs.db").exists())
