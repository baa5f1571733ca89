"""Log store figures: write throughput of one worker's writer, and content_search latency on a big table.

    .venv/bin/python bench/logstore.py                      # SQLite and PostgreSQL, 1,000,000 rows
    .venv/bin/python bench/logstore.py --stores sqlite --rows 200000

Writes: the writer's own path (a Call turned into a row by row_of, written in transactions of
WRITE_CHUNK rows on SQLite's cooperative writer store, BATCH_MAX on PostgreSQL, as rows the writer
has not stored before) for --writes rows, reported as rows per second and CPU microseconds per row.
Search: the table is filled to --rows inside the database (a generated series, so filling is
quick), then /api/logs' queries (a page of 50 by timestamp, its count and its stats) run for
--queries different words, each matching about 0.02 % of the rows; the p50 and p95 are reported.
PostgreSQL runs on 127.0.0.1:5432 in a database made for the run and dropped after.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from app.call import Call  # noqa: E402
from app.context import RequestContext  # noqa: E402
from app.engine import Served  # noqa: E402
from app.plugins.request_logs import BATCH_MAX, WRITE_CHUNK, row_of  # noqa: E402
from app.schemas import Target  # noqa: E402
from app.stores.logs import LogFilter, LogStore  # noqa: E402

VOCABULARY = 5000  # "term<n>" words; each row carries one, so a word matches rows/VOCABULARY rows


def a_call(index: int) -> Call:
    ctx = RequestContext(request_id=f"bench-{index}-{time.time_ns()}", environ={})
    body = {"messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": f"Summarise ticket {index}: the printer on floor 3 jams again"}],
            "temperature": 0.3, "max_tokens": 200}
    call = Call("chat_completion", False, body, Target("openai", "gpt-4o-mini"), [], ctx)
    call.served = Served("openai", "gpt-4o-mini", 0, "oa-1", 0)
    call.usage = {"prompt_tokens": 31, "completion_tokens": 42, "total_tokens": 73,
                  "prompt_tokens_details": {"cached_tokens": 0}}
    call.reply = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "The floor 3 printer jams; replace the feed roller. " * 3}}]}
    call.cost = 0.0000301
    call.finished_at = time.perf_counter()
    return call


def measure_writes(store: LogStore, count: int) -> tuple[float, float]:
    calls = [a_call(i) for i in range(count)]
    size = BATCH_MAX if store.postgres else WRITE_CHUNK  # as the writer does
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, count, size):
        rows = [row_of(call, "final", False) for call in calls[start:start + size]]
        store.write(rows, True)  # ids never stored: the writer's plain insert
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1e6


def fill(store: LogStore, rows: int) -> float:
    """Bring the table to ``rows`` rows inside the database: generated ids, times and words."""
    started = time.perf_counter()
    content = ("'ticket ' || n || ' term' || ((n * 7919) % {v}) || ' the printer jams again, "
               "replace the feed roller'").format(v=VOCABULARY)
    columns = ("id, timestamp, created_at, object, provider, model, status, stream, latency, cost, "
               "number_of_retries, fallback_index, prompt_tokens, completion_tokens, total_tokens, cached_tokens, "
               "content_hidden, content_summary, content")
    values = (f"'fill-' || n, {time.time()} - n, {time.time()}, 'chat.completion', 'openai', 'gpt-4o-mini', "
              "CASE WHEN n % 50 = 0 THEN 'error' ELSE 'success' END, {false}, 100 + n % 900, 0.00003, 0, 0, 30, 40, "
              f"70, 0, {{false}}, 'ticket ' || n, {content}")
    with store.engine.begin() as conn:
        have = conn.execute(text("SELECT count(*) FROM logs")).scalar_one()
    missing = rows - have
    if missing <= 0:
        return 0.0
    if store.postgres:  # in slices: the driver's socket timeout (10 s) bounds one statement
        for low in range(1, missing + 1, 50_000):
            high = min(missing, low + 49_999)
            with store.engine.begin() as conn:
                conn.execute(text(f"INSERT INTO logs ({columns}) SELECT {values.format(false='false')} "
                                  f"FROM generate_series({low}::bigint, {high}::bigint) AS n"))
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE logs"))
        return time.perf_counter() - started
    with store.engine.begin() as conn:
        last = conn.execute(text("SELECT coalesce(max(seq), 0) FROM logs")).scalar_one()
        conn.execute(text(f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {missing}) "
                          f"INSERT INTO logs ({columns}) SELECT {values.format(false='0')} FROM s"))
        # new rows are indexed by the writer, not by a trigger (app/stores/logs.py): do as it does
        conn.execute(text("INSERT INTO logs_fts(rowid, content) SELECT seq, content FROM logs WHERE seq > :last"),
                     {"last": last})
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def measure_search(store: LogStore, queries: int) -> list[float]:
    timings = []
    for index in range(queries):
        where = LogFilter(content_search=f"term{(index * 37) % VOCABULARY}")
        started = time.perf_counter()
        rows, total = store.search(where, "timestamp", "desc", 50, 0)
        store.stats(where)
        timings.append((time.perf_counter() - started) * 1000)
        assert rows and total, where
    return timings


def run(name: str, section: dict, args) -> None:
    store = LogStore(section)
    store.ensure_schema()
    writer = LogStore(section, cooperative=True) if name == "sqlite" else store
    per_second, cpu_us = measure_writes(writer, args.writes)
    size = BATCH_MAX if store.postgres else WRITE_CHUNK
    print(f"{name}: writer {per_second:,.0f} rows/s, {cpu_us:.0f} us CPU per row "
          f"(row_of + write, {size} rows a transaction)")
    filled = fill(store, args.rows)
    print(f"{name}: table filled to {args.rows:,} rows in {filled:.0f} s")
    measure_search(store, 3)  # warm the caches
    timings = sorted(measure_search(store, args.queries))
    p50 = statistics.median(timings)
    p95 = timings[int(len(timings) * 0.95) - 1]
    print(f"{name}: content_search over {args.rows:,} rows (page + count + stats): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    store.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    stores = args.stores.split(",")
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as folder:
            run("sqlite", {"type": "sqlite", "config": {"path": f"{folder}/logs.db"}}, args)
    if "postgres" in stores:
        from tests.pg import postgres_store, scratch_database

        with scratch_database("bifrost_bench") as name:
            run("postgres", postgres_store(name), args)


if __name__ == "__main__":
    main()
