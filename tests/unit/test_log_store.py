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
from app.stores.logs import LogFilter, LogStore, row_dict
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
    if section["type"] == "sqlite":
        assert _fts_consistent(section["config"]["path"])


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
    row = row_dict(row_of(call, "final", False))
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
    row = row_dict(row_of(call, "final", False))
    assert row["object"] == "text.completion" and row["stop_reason"] == "length"
    assert "gateway" in row["content"] and row["content_summary"] == "once upon a time"
    hidden = row_dict(row_of(call, "final", True))
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


# The log table, text index and triggers as an earlier version made them (full parent and virtual key
# indexes, a text-index trigger per inserted row), with two rows it wrote.
EARLIER_SCHEMA = (
    "CREATE TABLE logs (seq INTEGER NOT NULL, id VARCHAR(255) NOT NULL, parent_request_id VARCHAR(255), "
    "timestamp FLOAT NOT NULL, created_at FLOAT NOT NULL, object VARCHAR(64), provider VARCHAR(64), "
    "model VARCHAR(255), status VARCHAR(16) NOT NULL, stream BOOLEAN NOT NULL, latency FLOAT, cost FLOAT, "
    "stop_reason VARCHAR(64), number_of_retries INTEGER NOT NULL, fallback_index INTEGER NOT NULL, "
    "selected_key_id VARCHAR(255), selected_key_name VARCHAR(255), virtual_key_id VARCHAR(255), "
    "virtual_key_name VARCHAR(255), team_id VARCHAR(255), team_name VARCHAR(255), customer_id VARCHAR(255), "
    "customer_name VARCHAR(255), prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER, "
    "cached_tokens INTEGER, input_history TEXT, output_message TEXT, params TEXT, tools TEXT, error_details TEXT, "
    "metadata TEXT, content_summary TEXT, content_hidden BOOLEAN NOT NULL, content TEXT, PRIMARY KEY (seq), "
    "UNIQUE (id))",
    "CREATE INDEX ix_logs_timestamp ON logs (timestamp)",
    "CREATE INDEX ix_logs_provider_model ON logs (provider, model)",
    "CREATE INDEX ix_logs_status ON logs (status)",
    "CREATE INDEX ix_logs_parent ON logs (parent_request_id)",
    "CREATE INDEX ix_logs_virtual_key ON logs (virtual_key_id)",
    "CREATE VIRTUAL TABLE logs_fts USING fts5(content, content='logs', content_rowid='seq', detail=none, "
    "columnsize=0)",
    "CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN "
    "INSERT INTO logs_fts(rowid, content) VALUES (new.seq, new.content); END",
    "CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, content) VALUES ('delete', old.seq, old.content); END",
    "CREATE TRIGGER logs_fts_update AFTER UPDATE OF content ON logs BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, content) VALUES ('delete', old.seq, old.content); "
    "INSERT INTO logs_fts(rowid, content) VALUES (new.seq, new.content); END",
    "INSERT INTO logs (id, parent_request_id, timestamp, created_at, status, stream, number_of_retries, "
    "fallback_index, virtual_key_id, input_history, content_hidden, content) VALUES "
    "('old-1', 'parent-1', 1000.0, 1000.0, 'success', 0, 0, 0, 'vk-old', '[]', 0, 'an old walrus'), "
    "('old-2', NULL, 2000.0, 2000.0, 'processing', 0, 0, 0, NULL, '[]', 0, 'a slow narwhal')",
)


def _fts_consistent(path) -> bool:
    """FTS5's own check that the text index matches logs.content (raises when it does not)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('integrity-check', 1)")
        return True
    finally:
        conn.close()


def test_an_earlier_log_database_is_upgraded_and_keeps_its_rows_searchable(tmp_path):
    path = tmp_path / "logs.db"
    earlier = create_engine(f"sqlite:///{path}")
    with earlier.begin() as conn:
        for statement in EARLIER_SCHEMA:
            conn.exec_driver_sql(statement)
    earlier.dispose()
    section = {"type": "sqlite", "config": {"path": str(path)}}
    store = LogStore(section)
    store.ensure_schema()
    store.ensure_schema()  # every start-up runs it again
    with store.engine.connect() as conn:
        found = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
                                          "AND tbl_name = 'logs'").all())
    assert not {"ix_logs_parent", "ix_logs_virtual_key", "ix_logs_status", "logs_fts_insert"} & set(found)
    assert "logs_fts_writer" in found["logs_fts_update"]  # stands aside while the writer indexes a batch itself
    assert "IS NOT NULL" in found["ix_logs_parent_set"] and "IS NOT NULL" in found["ix_logs_virtual_key_set"]
    assert "status <> 'success'" in found["ix_logs_status_unsuccessful"]

    def search(**where) -> set[str]:
        return {row["id"] for row in store.search(LogFilter(**where), "timestamp", "desc", 10, 0)[0]}

    assert search(content_search="walrus") == {"old-1"} and search(content_search="narwhal") == {"old-2"}
    assert search(parent_request_id="parent-1") == {"old-1"} and search(virtual_key_ids=["vk-old"]) == {"old-1"}
    assert search(status=["processing"]) == {"old-2"} and search(status=["success"]) == {"old-1"}
    writer = LogStore(section, cooperative=True)
    new = a_call("new-1", body={"messages": [{"role": "user", "content": "a new walrus"}]})
    writer.write([row_of(new, "final", False)], True)
    late = a_call("old-2", body={"messages": [{"role": "user", "content": "a slow narwhal"}]})
    late.reply = {"choices": [{"message": {"role": "assistant", "content": "finally tusks"}, "finish_reason": "stop"}]}
    late.finished_at = time.perf_counter()
    writer.write([row_of(late, "final", False)])  # the earlier version's processing row, now finished
    assert search(content_search="walrus") == {"old-1", "new-1"} and search(content_search="tusks") == {"old-2"}
    assert store.get("old-2")["status"] == "success"
    assert store.delete(["old-1"]) == 1 and search(content_search="walrus") == {"new-1"}
    assert _fts_consistent(path)
    # an earlier version's worker, still flushing while new ones start, updates rows its own way
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("UPDATE logs SET status = 'success', content = 'a new walrus and a manatee' WHERE id = 'new-1'")
    conn.commit()
    conn.close()
    assert search(content_search="manatee") == {"new-1"} and _fts_consistent(path)


def test_a_fresh_row_whose_id_is_stored_already_replaces_it(section):
    """The writer inserts rows it never stored without the upsert; a client may send one request id twice."""
    store = LogStore(section)
    store.ensure_schema()
    writer = LogStore(section, cooperative=True) if section["type"] == "sqlite" else store
    first = a_call("twice", body={"messages": [{"role": "user", "content": "first walrus"}]})
    other = a_call("once", body={"messages": [{"role": "user", "content": "another walrus"}]})
    writer.write([row_of(first, "processing", False), row_of(other, "processing", False)], True)
    second = a_call("twice", body={"messages": [{"role": "user", "content": "second narwhal"}]})
    second.finished_at = time.perf_counter()
    third = a_call("new", body={"messages": [{"role": "user", "content": "third narwhal"}]})
    writer.write([row_of(third, "processing", False), row_of(second, "final", False)], True)
    assert store.get("twice")["status"] == "success" and store.get("new") is not None
    assert store.get("twice")["input_history"] == [{"role": "user", "content": "second narwhal"}]

    def total(words: str) -> int:
        return store.search(LogFilter(content_search=words), "timestamp", "desc", 10, 0)[1]

    assert (total("walrus"), total("narwhal"), total("first"), total("second")) == (1, 2, 0, 1)
    fourth = a_call("both", body={"messages": [{"role": "user", "content": "fourth dugong"}]})
    fourth.reply = {"choices": [{"message": {"role": "assistant", "content": "sea cow"}, "finish_reason": "stop"}]}
    fourth.finished_at = time.perf_counter()
    writer.write([row_of(fourth, "processing", False), row_of(fourth, "final", False)])  # one id twice in a batch
    assert store.get("both")["status"] == "success" and (total("dugong"), total("cow")) == (1, 1)
    if section["type"] == "sqlite":
        assert _fts_consistent(section["config"]["path"])


def test_the_indexes_of_an_earlier_version_are_replaced_at_start_up(section):
    from sqlalchemy import inspect

    store = LogStore(section)
    store.ensure_schema()
    with store.engine.begin() as conn:  # as an earlier version left them: full status and parent indexes
        conn.exec_driver_sql("DROP INDEX ix_logs_status_unsuccessful")
        conn.exec_driver_sql("DROP INDEX ix_logs_parent_set")
        conn.exec_driver_sql("CREATE INDEX ix_logs_status ON logs (status)")
        conn.exec_driver_sql("CREATE INDEX ix_logs_parent ON logs (parent_request_id)")
    store.ensure_schema()
    with store.engine.connect() as conn:
        names = {index["name"] for index in inspect(conn).get_indexes("logs")}
    assert {"ix_logs_status_unsuccessful", "ix_logs_parent_set", "ix_logs_virtual_key_set", "ix_logs_timestamp",
            "ix_logs_provider_model"} <= names
    assert not {"ix_logs_status", "ix_logs_parent"} & names
