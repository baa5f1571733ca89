"""The request log store: one row per inference request, SQLite or PostgreSQL (SQLAlchemy Core).

Rows are upserted by request id (``processing`` first for long requests, then the final
state), in batches from the writer in app/plugins/request_logs.py. Searching the content
goes through a real text index: FTS5 on SQLite, a GIN tsvector index on PostgreSQL.
The JSON shape of a row is logs-api.md's; ``to_json`` builds it.
"""
from __future__ import annotations

import logging
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping, Sequence

import orjson
from sqlalchemy import (Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, and_, case, cast,
                        delete, func, inspect, literal, select, text)
from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine

from app.stores.db import make_engine

log = logging.getLogger("bifrost.logs")

metadata = MetaData()
logs = Table(
    "logs", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(255), nullable=False, unique=True),
    Column("parent_request_id", String(255)),
    Column("timestamp", Float, nullable=False),  # epoch seconds, when the request arrived
    Column("created_at", Float, nullable=False),  # when the row was last written
    Column("object", String(64)),
    Column("provider", String(64)),
    Column("model", String(255)),
    Column("status", String(16), nullable=False),
    Column("stream", Boolean, nullable=False, default=False),
    Column("latency", Float),  # ms
    Column("cost", Float),  # USD; NULL when the model has no known price
    Column("stop_reason", String(64)),
    Column("number_of_retries", Integer, nullable=False, default=0),
    Column("fallback_index", Integer, nullable=False, default=0),
    Column("selected_key_id", String(255)),
    Column("selected_key_name", String(255)),
    Column("virtual_key_id", String(255)),
    Column("virtual_key_name", String(255)),
    Column("team_id", String(255)),
    Column("team_name", String(255)),
    Column("customer_id", String(255)),
    Column("customer_name", String(255)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("total_tokens", Integer),
    Column("cached_tokens", Integer),
    Column("input_history", Text),  # JSON
    Column("output_message", Text),  # JSON
    Column("params", Text),  # JSON
    Column("tools", Text),  # JSON
    Column("error_details", Text),  # JSON
    Column("metadata", Text),  # JSON
    Column("content_summary", Text),
    Column("content_hidden", Boolean, nullable=False, default=False),
    Column("content", Text),  # the searchable text (input and output), never returned
    Index("ix_logs_timestamp", "timestamp"),
    Index("ix_logs_provider_model", "provider", "model"),
    # Partial: most rows have neither, and a row that is not indexed costs nothing to write
    # (a sixth of a row's write); `= x` and `IN (...)` filters still use them.
    *(Index(f"ix_logs_{name}_set", column, sqlite_where=text(f"{column} IS NOT NULL"),
            postgresql_where=text(f"{column} IS NOT NULL"))
      for name, column in (("parent", "parent_request_id"), ("virtual_key", "virtual_key_id"))),
    # Likewise only the rows that did not succeed: a status filter without "success" adds
    # UNFINISHED_OR_FAILED to its query so that SQLite sees it may use it.
    Index("ix_logs_status_unsuccessful", "status", sqlite_where=text("status <> 'success'"),
          postgresql_where=text("status <> 'success'")),
)
# Full indexes of earlier versions
_REPLACED_INDEXES = ("ix_logs_parent", "ix_logs_virtual_key", "ix_logs_status")
UNFINISHED_OR_FAILED = text("logs.status <> 'success'")  # the partial status index's condition, word for word
# MCP tool executions (/v1/mcp/tool/execute, agent mode, /mcp): a table of their own, as the
# reference keeps them apart from the request logs (GET /api/logs/mcp); request_id joins the two.
mcp_logs = Table(
    "mcp_tool_logs", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("request_id", String(255)),
    Column("timestamp", Float, nullable=False),  # epoch seconds, when the tool was called
    Column("created_at", Float, nullable=False),
    Column("client_name", String(255), nullable=False),
    Column("tool_name", String(255), nullable=False),
    Column("source", String(32), nullable=False),  # api | agent | mcp_server
    Column("status", String(16), nullable=False),  # success | error | unavailable | timeout
    Column("latency", Float, nullable=False),  # ms
    Column("arguments", Text),  # JSON; NULL with content logging off
    Column("error", Text),
    Column("content_hidden", Boolean, nullable=False, default=False),
    Index("ix_mcp_tool_logs_timestamp", "timestamp"),
    Index("ix_mcp_tool_logs_request", "request_id"),
)
JSON_COLUMNS = ("input_history", "output_message", "params", "tools", "error_details", "metadata")
CONTENT_COLUMNS = ("input_history", "output_message", "content_summary")
WRITE_COLUMNS = tuple(str(c.name) for c in logs.columns if c.name != "seq")  # plain str: orjson keys
SORT_COLUMNS = {"timestamp": logs.c.timestamp, "latency": logs.c.latency, "tokens": logs.c.total_tokens,
                "cost": logs.c.cost}
_TOKENS = re.compile(r"[^\W_]+")
PG_SCHEMA_LOCK = 0x6266_6C6F_6773  # pg_advisory_xact_lock key: "bflogs"

_SQLITE_FTS = (
    # detail=none: no positions (a fifth less work per row); a search is an AND of single words
    "CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(content, content='logs', content_rowid='seq', "
    "detail=none, columnsize=0)",
    # New and upserted rows are indexed by the writer, a statement or two per batch
    # (LogStore.write): a trigger costs per row twice the new row itself, and ten times the
    # batch statement for an updated one. The update trigger stays for any other writer (an
    # earlier version's worker still flushing its queue while new ones start), which never
    # sets logs_fts_writer.batched; deletes (retention, DELETE /api/logs) keep theirs.
    "DROP TRIGGER IF EXISTS logs_fts_insert",
    "CREATE TABLE IF NOT EXISTS logs_fts_writer (batched INTEGER NOT NULL)",
    "INSERT INTO logs_fts_writer (batched) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM logs_fts_writer)",
    "DROP TRIGGER IF EXISTS logs_fts_update",  # the unconditional one of earlier versions
    "CREATE TRIGGER logs_fts_update AFTER UPDATE OF content ON logs "
    "WHEN (SELECT batched FROM logs_fts_writer) = 0 BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, content) VALUES ('delete', old.seq, old.content); "
    "INSERT INTO logs_fts(rowid, content) VALUES (new.seq, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS logs_fts_delete AFTER DELETE ON logs BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, content) VALUES ('delete', old.seq, old.content); END",
)
# A stored tsvector column rather than an expression index: ANALYZE then knows how common a
# word is, so the planner takes the GIN index instead of walking the timestamp index.
_PG_FTS = (
    "ALTER TABLE logs ADD COLUMN IF NOT EXISTS content_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', coalesce(content, ''))) STORED",
    "CREATE INDEX IF NOT EXISTS ix_logs_content_tsv ON logs USING GIN (content_tsv)",
)


@dataclass
class LogFilter:
    """The filters of GET /api/logs (logs-api.md); empty lists and None mean "any"."""

    providers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    stop_reasons: list[str] = field(default_factory=list)
    selected_key_ids: list[str] = field(default_factory=list)
    virtual_key_ids: list[str] = field(default_factory=list)
    team_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    parent_request_id: str | None = None
    request_id: str | None = None
    start_time: float | None = None  # epoch seconds
    end_time: float | None = None
    min_latency: float | None = None
    max_latency: float | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    missing_cost_only: bool = False
    content_search: str | None = None


class LogStore:
    def __init__(self, section: Mapping[str, Any] | None, *, cooperative: bool = False) -> None:
        """``cooperative``: the writer's own store, used from the event loop (app/stores/db.py)."""
        self.engine: Engine = make_engine(section, "logs.db", pool_size=1 if cooperative else 5,
                                          cooperative=cooperative)
        self.postgres = self.engine.dialect.name == "postgresql"

    # -- schema ----------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create or migrate the table and its text index; safe when many processes start at once."""
        with self.engine.begin() as conn:
            if self.postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SCHEMA_LOCK})
            else:  # take SQLite's write lock first: another worker may be creating the table now
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            metadata.create_all(conn, checkfirst=True)
            present = {column["name"] for column in inspect(conn).get_columns("logs")}
            for column in logs.columns:
                if column.name not in present:  # a column added since the table was made
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE logs ADD COLUMN "{column.name}" {kind}')
            for name in _REPLACED_INDEXES:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
            for index in (*logs.indexes, *mcp_logs.indexes):  # create_all makes them only with a new table
                index.create(conn, checkfirst=True)
            for statement in _PG_FTS if self.postgres else _SQLITE_FTS:
                conn.exec_driver_sql(statement)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(literal(1)))

    # -- writes ----------------------------------------------------------------------------

    def write(self, rows: Sequence[tuple], fresh: bool = False) -> None:
        """Upsert rows (values in WRITE_COLUMNS order) by id; a ``processing`` row never replaces a finished one.

        ``fresh``: the writer has not stored these ids before, so on SQLite they are inserted
        without the upsert (a tenth of a row's write); should one be there after all (a client
        that sent an x-request-id twice), the chunk is upserted instead.
        """
        if not rows:
            return
        with self.engine.begin() as conn:
            if self.postgres:
                # The whole batch as one JSON parameter: pg8000's executemany is a round trip per
                # row, and a multi-row VALUES costs more to compile than to run.
                unique = {row[0]: row for row in rows}.values()  # ON CONFLICT touches a row once
                conn.execute(_PG_UPSERT, {"rows": orjson.dumps(list(unique)).decode()})
                return
            # The write lock first, so the rows after `last` are exactly this batch's new ones.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            cursor = conn.connection.dbapi_connection.cursor()
            last = cursor.execute("SELECT coalesce(max(seq), 0) FROM logs").fetchone()[0]
            if fresh:
                cursor.execute("SAVEPOINT fresh")
                try:
                    cursor.executemany(_SQLITE_INSERT, rows)
                except sqlite3.IntegrityError:
                    cursor.execute("ROLLBACK TO fresh")
                    fresh = False
                cursor.execute("RELEASE fresh")
            if not fresh:  # the rows these ids have leave the text index, and come back as they are now
                ids = orjson.dumps([row[0] for row in rows]).decode()
                cursor.execute("UPDATE logs_fts_writer SET batched = 1")  # the update trigger stands aside
                cursor.execute(_SQLITE_UNINDEX_IDS, (ids,))
                cursor.executemany(_SQLITE_UPSERT, rows)
                cursor.execute(_SQLITE_REINDEX_IDS, (ids, last))
                cursor.execute("UPDATE logs_fts_writer SET batched = 0")
            cursor.execute(_SQLITE_INDEX_NEW, (last,))
            cursor.close()

    def checkpoint(self) -> None:
        """Move SQLite's write-ahead log into the database file (PASSIVE: never waits for readers)."""
        if not self.postgres:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def write_mcp(self, rows: Sequence[dict]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(mcp_logs.insert(), list(rows))

    def mcp_page(self, where: Mapping[str, Any], limit: int, offset: int) -> tuple[list[dict], int, bool]:
        """MCP tool executions, newest first: the page, how many match, whether there is any."""
        conditions = []
        for name, column in (("request_id", mcp_logs.c.request_id), ("clients", mcp_logs.c.client_name),
                             ("tools", mcp_logs.c.tool_name), ("status", mcp_logs.c.status),
                             ("sources", mcp_logs.c.source)):
            value = where.get(name)
            if value:
                conditions.append(column.in_(value) if isinstance(value, list) else column == value)
        with self._snapshot() as conn:
            total = conn.execute(select(func.count()).select_from(mcp_logs).where(*conditions)).scalar_one()
            rows = conn.execute(select(mcp_logs).where(*conditions).order_by(mcp_logs.c.timestamp.desc(),
                                mcp_logs.c.seq.desc()).limit(limit).offset(offset)).mappings().all()
            has_logs = bool(total) or conn.execute(select(mcp_logs.c.seq).limit(1)).first() is not None
        return [mcp_to_json(row) for row in rows], int(total), has_logs

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self.engine.begin() as conn:
            return conn.execute(delete(logs).where(logs.c.id.in_(ids))).rowcount if ids else 0

    def delete_older_than(self, cutoff: float) -> int:
        with self.engine.begin() as conn:
            conn.execute(delete(mcp_logs).where(mcp_logs.c.timestamp < cutoff))
            return conn.execute(delete(logs).where(logs.c.timestamp < cutoff)).rowcount

    # -- reads -----------------------------------------------------------------------------

    def get(self, log_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(logs).where(logs.c.id == log_id)).mappings().first()
        return to_json(row) if row is not None else None

    def page(self, where: LogFilter, sort_by: str, order: str, limit: int, offset: int) -> tuple[list[dict], dict, bool]:
        """A page of rows, the stats of every matching row, and whether the store has any row, from one snapshot."""
        column = SORT_COLUMNS[sort_by]
        if where.content_search and self.postgres:
            # "+ 0": sort the few text matches (GIN bitmap) instead of walking the timestamp
            # index and testing every row against the query
            column = column + 0
        ordering = column.asc() if order == "asc" else column.desc()
        tiebreak = logs.c.seq.asc() if order == "asc" else logs.c.seq.desc()
        conditions = self._conditions(where)
        with self._snapshot() as conn:
            stats = _stats(conn.execute(self._stats_query(conditions)).one())
            rows = conn.execute(
                select(logs).where(*conditions).order_by(ordering, tiebreak).limit(limit).offset(offset)
            ).mappings().all()
            has_logs = bool(stats["total_requests"]) or conn.execute(select(logs.c.seq).limit(1)).first() is not None
        return [to_json(row) for row in rows], stats, has_logs

    def search(self, where: LogFilter, sort_by: str, order: str, limit: int, offset: int) -> tuple[list[dict], int]:
        rows, stats, _ = self.page(where, sort_by, order, limit, offset)
        return rows, stats["total_requests"]

    def stats(self, where: LogFilter) -> dict:
        with self.engine.connect() as conn:
            return _stats(conn.execute(self._stats_query(self._conditions(where))).one())

    @staticmethod
    def _stats_query(conditions: list):
        return select(
            func.count(),
            func.sum(case((logs.c.status == "success", 1), else_=0)),
            func.avg(logs.c.latency),
            func.sum(logs.c.total_tokens),
            func.sum(logs.c.prompt_tokens),
            func.sum(logs.c.completion_tokens),
            func.sum(logs.c.cost),
        ).where(*conditions)

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """One read transaction, so that a page and its totals agree while the writer commits."""
        with self.engine.connect() as conn:
            if self.postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if not self.postgres:
                    conn.exec_driver_sql("BEGIN")  # pysqlite would not start one for reads
                yield conn

    def time_range(self, where: LogFilter) -> tuple[float | None, float | None]:
        query = select(func.min(logs.c.timestamp), func.max(logs.c.timestamp)).where(*self._conditions(where))
        with self.engine.connect() as conn:
            low, high = conn.execute(query).one()
        return low, high

    def histogram(self, where: LogFilter, bucket_size: int) -> list[dict]:
        size = literal(int(bucket_size), Integer, literal_execute=True)  # inlined: the same text in GROUP BY
        if self.postgres:
            start = func.floor(logs.c.timestamp / size) * size
        else:
            start = cast(logs.c.timestamp / size, Integer) * size
        start = start.label("bucket")
        query = (
            select(start, func.count(),
                   func.sum(case((logs.c.status == "success", 1), else_=0)),
                   func.sum(case((logs.c.status == "error", 1), else_=0)))
            .where(*self._conditions(where)).group_by(text("bucket")).order_by(text("bucket"))
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).all()
        return [{"timestamp": iso(float(bucket)), "count": int(count), "success": int(ok or 0), "error": int(bad or 0)}
                for bucket, count, ok, bad in found]

    def filterdata(self) -> dict:
        with self.engine.connect() as conn:
            models = conn.execute(select(logs.c.model).where(logs.c.model.is_not(None)).distinct()).scalars().all()
            providers = conn.execute(
                select(logs.c.provider).where(logs.c.provider.is_not(None)).distinct()).scalars().all()
            keys = conn.execute(select(logs.c.selected_key_id, logs.c.selected_key_name)
                                .where(logs.c.selected_key_id.is_not(None)).distinct()).all()
            virtual = conn.execute(select(logs.c.virtual_key_id, logs.c.virtual_key_name)
                                   .where(logs.c.virtual_key_id.is_not(None)).distinct()).all()
        return {
            "models": sorted(models),
            "providers": sorted(providers),
            "selected_keys": [{"id": key, "name": name} for key, name in sorted(keys, key=lambda k: k[0])],
            "virtual_keys": [{"id": key, "name": name} for key, name in sorted(virtual, key=lambda k: k[0])],
        }

    def _conditions(self, f: LogFilter) -> list:
        c = logs.c
        conditions: list = []
        if f.status and "success" not in f.status:
            conditions.append(UNFINISHED_OR_FAILED)
        for values, column in ((f.providers, c.provider), (f.models, c.model), (f.status, c.status),
                               (f.objects, c.object), (f.stop_reasons, c.stop_reason),
                               (f.selected_key_ids, c.selected_key_id), (f.virtual_key_ids, c.virtual_key_id),
                               (f.team_ids, c.team_id), (f.customer_ids, c.customer_id)):
            if values:
                conditions.append(column.in_(values))
        for value, column in ((f.parent_request_id, c.parent_request_id), (f.request_id, c.id)):
            if value:
                conditions.append(column == value)
        for low, high, column in ((f.start_time, f.end_time, c.timestamp), (f.min_latency, f.max_latency, c.latency),
                                  (f.min_tokens, f.max_tokens, c.total_tokens), (f.min_cost, f.max_cost, c.cost)):
            if low is not None:
                conditions.append(column >= low)
            if high is not None:
                conditions.append(column <= high)
        if f.missing_cost_only:
            conditions.append(and_(c.cost.is_(None), c.status != "processing"))
        if f.content_search:
            conditions.append(self._matches(f.content_search))
        return conditions

    def _matches(self, words: str):
        if self.postgres:
            return text("logs.content_tsv @@ plainto_tsquery('simple', :words)").bindparams(words=words)
        # The words as FTS5's tokenizer (unicode61) splits them, each quoted, all required:
        # no query syntax gets through.
        tokens = _TOKENS.findall(words)
        if not tokens:
            return literal(False)
        query = " ".join(f'"{token}"' for token in tokens)
        return logs.c.seq.in_(text("SELECT rowid FROM logs_fts WHERE logs_fts MATCH :query").bindparams(query=query))


_COLUMNS = ", ".join(f'"{name}"' for name in WRITE_COLUMNS)
# Plain DB-API text, run by exec_driver_sql: the writer binds rows without SQLAlchemy's
# per-row parameter processing, and by position (named parameters cost sqlite3 a string and a
# lookup per column per row: a quarter of the write).
_SQLITE_INSERT = f"INSERT INTO logs ({_COLUMNS}) VALUES ({', '.join('?' * len(WRITE_COLUMNS))})"
_SQLITE_UPSERT = (
    f"{_SQLITE_INSERT} ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f'"{name}" = excluded."{name}"' for name in WRITE_COLUMNS if name != "id")
    + " WHERE logs.status = 'processing' OR excluded.status <> 'processing'"
)
_SQLITE_INDEX_NEW = "INSERT INTO logs_fts(rowid, content) SELECT seq, content FROM logs WHERE seq > ?"
_SQLITE_UNINDEX_IDS = ("INSERT INTO logs_fts(logs_fts, rowid, content) SELECT 'delete', seq, content FROM logs "
                       "WHERE id IN (SELECT value FROM json_each(?))")
_SQLITE_REINDEX_IDS = ("INSERT INTO logs_fts(rowid, content) SELECT seq, content FROM logs "
                       "WHERE id IN (SELECT value FROM json_each(?)) AND seq <= ?")  # newer ones: INDEX_NEW
_PG_TYPES = {Float: "float8", Integer: "bigint", BigInteger: "bigint", Boolean: "boolean"}
# The batch is one JSON array of row arrays (as written: no keys to build, send and parse), each
# value cast from text; strings to text, so that too long a value fails instead of being cut.
_PG_VALUES = ", ".join(
    f"(r ->> {i})::{_PG_TYPES.get(type(logs.c[name].type), 'text')}" for i, name in enumerate(WRITE_COLUMNS))
_PG_UPSERT = text(
    f"INSERT INTO logs ({_COLUMNS}) SELECT {_PG_VALUES} FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in WRITE_COLUMNS if name != "id")
    + " WHERE logs.status = 'processing' OR EXCLUDED.status <> 'processing'"
)


def row_dict(row: Sequence) -> dict:
    """A row as written (WRITE_COLUMNS order) by column name."""
    return dict(zip(WRITE_COLUMNS, row))


def _stats(found: Sequence) -> dict:
    total, succeeded, latency, tokens, prompt, completion, cost = found
    total = int(total or 0)
    return {
        "total_requests": total,
        "success_rate": round(100.0 * int(succeeded or 0) / total, 4) if total else 0.0,
        "average_latency": round(float(latency), 3) if latency is not None else 0.0,
        "total_tokens": int(tokens or 0),
        "prompt_tokens": int(prompt or 0),
        "completion_tokens": int(completion or 0),
        "total_cost": float(cost or 0.0),
    }


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    stamp = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def to_json(row: Mapping[str, Any]) -> dict:
    """A stored row in logs-api.md's shape."""
    out: dict[str, Any] = {
        "id": row["id"],
        "parent_request_id": row["parent_request_id"],
        "timestamp": iso(row["timestamp"]),
        "object": row["object"],
        "provider": row["provider"],
        "model": row["model"],
        "status": row["status"],
        "stream": bool(row["stream"]),
        "latency": row["latency"],
        "cost": row["cost"],
        "stop_reason": row["stop_reason"],
        "number_of_retries": row["number_of_retries"],
        "fallback_index": row["fallback_index"],
        "selected_key_id": row["selected_key_id"],
        "selected_key_name": row["selected_key_name"],
        "virtual_key_id": row["virtual_key_id"],
        "virtual_key_name": row["virtual_key_name"],
        "team_id": row["team_id"],
        "team_name": row["team_name"],
        "customer_id": row["customer_id"],
        "customer_name": row["customer_name"],
    }
    for name in JSON_COLUMNS:
        raw = row[name]
        out[name] = orjson.loads(raw) if raw is not None else None
    if row["prompt_tokens"] is None and row["completion_tokens"] is None:
        out["token_usage"] = None
    else:
        out["token_usage"] = {
            "prompt_tokens": row["prompt_tokens"] or 0,
            "completion_tokens": row["completion_tokens"] or 0,
            "total_tokens": row["total_tokens"] or 0,
            "prompt_tokens_details": {"cached_tokens": row["cached_tokens"] or 0},
        }
    out["content_summary"] = row["content_summary"]
    out["content_hidden"] = bool(row["content_hidden"])
    out["metadata"] = out["metadata"] or {}
    out["created_at"] = iso(row["created_at"])
    if out["content_hidden"]:
        for name in CONTENT_COLUMNS:
            out.pop(name, None)
    return out


def mcp_to_json(row: Mapping[str, Any]) -> dict:
    out = {"id": row["id"], "request_id": row["request_id"], "timestamp": iso(row["timestamp"]),
           "client_name": row["client_name"], "tool_name": row["tool_name"], "source": row["source"],
           "status": row["status"], "latency": row["latency"],
           "arguments": orjson.loads(row["arguments"]) if row["arguments"] is not None else None,
           "error": row["error"], "content_hidden": bool(row["content_hidden"]), "created_at": iso(row["created_at"])}
    if out["content_hidden"]:
        out.pop("arguments")
    return out
