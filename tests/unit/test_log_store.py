"""The log store and the row of a Call: upserts, schema creation and migration under concurrent start, assembly."""
from __future__ import annotations

import multiprocessing
import time

import pytest
from sqlalchemy import create_engine, text

from app.call import Call
from app.context import RequestContext
from app.engine import Served
from app.plugins.request_logs import row_of
from app.schemas import Target
from app.stores.logs import LogFilter, LogStore
from tests.pg import postgres_store, scratch_database


@pytest.fixture(params=["sqlite", "postgres"])
def section(request, tmp_path):
    if request.param == "sqlite":
        yield {"type": "sqlite", "config": {"path": str(tmp_path / "logs.db")}}
    else:
        with scratch_database() as name:
            yield postgres_store(name)


def a_call(request_id="r1", stream=False, body=None) -> Call:
    ctx = RequestContext(request_id=request_id, environ={})
    body = body or {"messages": [{"role": "user", "content": "find the walrus"}], "temperature": 0.2}
    call = Call("chat_completion", stream, body, Target("openai", "gpt-4o-mini"), [], ctx)
    call.served = Served("openai", "gpt-4o-mini", 0, "k1", 0)
    return call


def _schema_in_process(section):
    LogStore(section).ensure_schema()


def test_schema_is_created_safely_by_many_processes_at_once(section):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_schema_in_process, args=(section,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    store = LogStore(section)
    store.ensure_schema()
    assert store.search(LogFilter(), "timestamp", "desc", 10, 0) == ([], 0)


def test_a_missing_column_is_added_at_start_up(tmp_path):
    path = tmp_path / "old.db"
    old = create_engine(f"sqlite:///{path}")
    with old.begin() as conn:  # an older table without the cost and team columns
        conn.execute(text("CREATE TABLE logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id VARCHAR(255) NOT NULL UNIQUE, "
                          "timestamp FLOAT NOT NULL, created_at FLOAT NOT NULL, status VARCHAR(16) NOT NULL, "
                          "stream BOOLEAN NOT NULL, number_of_retries INTEGER NOT NULL, "
                          "fallback_index INTEGER NOT NULL, content_hidden BOOLEAN NOT NULL)"))
    store = LogStore({"type": "sqlite", "config": {"path": str(path)}})
    store.ensure_schema()
    call = a_call()
    call.reply = {"choices": [{"message": {"role": "assistant", "content": "a walrus"}, "finish_reason": "stop"}]}
    call.finished_at = time.perf_counter()
    call.cost = 0.5
    store.write([row_of(call, "final", False)])
    assert store.get("r1")["cost"] == 0.5


def test_processing_then_final_and_never_back(section):
    store = LogStore(section)
    store.ensure_schema()
    call = a_call()
    store.write([row_of(call, "processing", False)])
    assert store.get("r1")["status"] == "processing"
    call.usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                  "prompt_tokens_details": {"cached_tokens": 2}}
    call.reply = {"choices": [{"message": {"role": "assistant", "content": "the walrus is here"},
                               "finish_reason": "stop"}]}
    call.finished_at = time.perf_counter()
    store.write([row_of(call, "final", False)])
    store.write([row_of(call, "processing", False)])  # a late processing row does not undo the result
    row = store.get("r1")
    assert row["status"] == "success" and row["token_usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert row["params"] == {"temperature": 0.2}
    assert store.search(LogFilter(content_search="walrus"), "timestamp", "desc", 10, 0)[1] == 1
    assert store.search(LogFilter(content_search="here"), "timestamp", "desc", 10, 0)[1] == 1  # the output, updated


def test_retention_deletes_only_old_rows(section):
    store = LogStore(section)
    store.ensure_schema()
    old, new = a_call("old"), a_call("new")
    old.started_at = time.time() - 40 * 86400
    store.write([row_of(old, "processing", False), row_of(new, "processing", False)])
    assert store.delete_older_than(time.time() - 30 * 86400) == 1
    assert store.get("old") is None and store.get("new") is not None
    assert store.search(LogFilter(content_search="walrus"), "timestamp", "desc", 10, 0)[1] == 1  # index kept in step


def test_a_stream_is_assembled_with_its_tool_calls():
    call = a_call(stream=True)
    call.chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me "}}]},
        {"choices": [{"index": 0, "delta": {"content": "check."}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_", "arguments": '{"ci'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"name": "weather", "arguments": 'ty": "Oslo"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}},
    ]
    call.usage = call.chunks[-1]["usage"]
    call.finished_at = time.perf_counter()
    row = row_of(call, "final", False)
    import orjson

    assert orjson.loads(row["output_message"]) == {
        "role": "assistant", "content": "Let me check.",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    assert row["stop_reason"] == "tool_calls" and row["stream"] is True and row["total_tokens"] == 14
    assert "Oslo" in row["content"]


def test_text_completion_and_hidden_content():
    call = a_call(body={"prompt": "once upon a time", "max_tokens": 5})
    call.request_type = "text_completion"
    call.reply = {"choices": [{"text": " there was a gateway", "finish_reason": "length"}]}
    call.finished_at = time.perf_counter()
    row = row_of(call, "final", False)
    assert row["object"] == "text.completion" and row["stop_reason"] == "length"
    assert "gateway" in row["content"] and row["content_summary"] == "once upon a time"
    hidden = row_of(call, "final", True)
    assert hidden["content"] is None and hidden["input_history"] is None and hidden["content_hidden"] is True


def test_attribution_from_an_earlier_plugin_fills_the_virtual_key_columns(tmp_path):
    store = LogStore({"type": "sqlite", "config": {"path": str(tmp_path / "logs.db")}})
    store.ensure_schema()
    call = a_call()
    call.state["governance"] = {"virtual_key_id": "vk-1", "virtual_key_name": "team red", "team_id": "t1"}
    store.write([row_of(call, "processing", False)])
    row = store.get("r1")
    assert (row["virtual_key_id"], row["virtual_key_name"], row["team_id"], row["customer_id"]) == (
        "vk-1", "team red", "t1", None)
    assert store.search(LogFilter(virtual_key_ids=["vk-1"]), "timestamp", "desc", 10, 0)[1] == 1
    assert store.filterdata()["virtual_keys"] == [{"id": "vk-1", "name": "team red"}]
