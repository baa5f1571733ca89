"""The logging plugin: one log row per inference request, written off the request path.

Hooks only note the request in a bounded per-worker queue: the Call while it is in flight
(``calls``), then its finished row (``pending``, a dict by request id), so the Call's
bodies and chunks are freed at once instead of being walked by the garbage collector until
the next batch. A writer greenlet stores the rows in batches every FLUSH_INTERVAL; a call
in flight for PROCESSING_AFTER or more gets a ``processing`` row first, which its final
row then replaces (upsert), while a shorter one is written once, with a plain insert. A
full queue drops the row and counts it; a store that is down keeps its rows waiting
(within the bound) until it is back; close() flushes on shutdown.

SQLite is written from the greenlet itself, in short transactions that never wait in C
for another worker's lock (app/stores/db.py, cooperative): a thread of gevent's pool cost
a tenth more CPU per request in GIL hand-offs. Only the WAL checkpoint and the retention
delete, which can take long, run in a thread.
"""
from __future__ import annotations

import logging
import time
import uuid
from itertools import islice
from typing import TYPE_CHECKING, Any

import gevent
import orjson
from gevent.event import Event

from app.plugins import Plugin
from app.stores.db import is_locked
from app.stores.logs import WRITE_COLUMNS, LogStore

if TYPE_CHECKING:
    from app.call import Call
    from app.config import GatewayConfig
    from app.mcp.manager import ToolExecution

log = logging.getLogger("bifrost.logs")

FLUSH_INTERVAL = 0.25  # seconds: a worker killed hard loses at most about this much
BATCH_MAX = 500
WRITE_CHUNK = 100  # rows per SQLite transaction: ~2 ms of the event loop at most
PROCESSING_AFTER = 1.0  # seconds in flight before a request gets a processing row (else one row, when it ends)
LOCK_RETRY = 0.002  # seconds between tries while another worker holds SQLite's write lock
LOCK_PATIENCE = 10.0  # then the store counts as down (rows wait in the queue)
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints, in a thread
DEFAULT_QUEUE_SIZE = 10_000
RETRY_MAX = 5.0  # seconds between attempts while the store is down
RETENTION_EVERY = 3600.0
HEALTH_CACHE = 2.0  # seconds a store ping result is reused by /health
PING_TIMEOUT = 2.0
SUMMARY_LIMIT = 200
SEARCH_TEXT_LIMIT = 100_000  # characters of a row's text that are indexed for content_search
PARAMS_SKIPPED = frozenset({"messages", "prompt", "tools", "stream", "stream_options", "input"})
ATTRIBUTION_FIELDS = ("virtual_key_id", "virtual_key_name", "team_id", "team_name", "customer_id", "customer_name")
_TRUE = frozenset({"1", "true", "yes", "on"})
# The order in which row_of builds a row's values: the store binds them by position.
ROW_COLUMNS = ("id", "parent_request_id", "timestamp", "created_at", "object", "provider", "model", "status",
               "stream", "latency", "cost", "stop_reason", "number_of_retries", "fallback_index", "selected_key_id",
               "selected_key_name", *ATTRIBUTION_FIELDS, "prompt_tokens", "completion_tokens", "total_tokens",
               "cached_tokens", "input_history", "output_message", "params", "tools", "error_details", "metadata",
               "content_summary", "content_hidden", "content")
if ROW_COLUMNS != WRITE_COLUMNS:  # a column added to the table must be added to row_of too
    raise RuntimeError(f"row_of builds {ROW_COLUMNS}, the log table takes {WRITE_COLUMNS}")


class RequestLogs(Plugin):
    name = "logging"

    def __init__(self, config: "GatewayConfig") -> None:
        client = config.client
        section = dict((config.raw or {}).get("logs_store") or {})
        self.store = LogStore(section)  # reads (/api/logs, /health) from greenlets
        # pg8000 sockets are cooperative already; SQLite gets a writer engine of its own that never blocks.
        self.sqlite = not self.store.postgres
        self.writer_store = LogStore(section, cooperative=True) if self.sqlite else self.store
        self._checkpointed = time.monotonic()
        self.hide_content = client.disable_content_logging
        self.allow_override = client.allow_per_request_content_storage_override
        retention = section.get("retention_days")
        self.retention_days = int(retention if retention is not None else client.log_retention_days)
        self.queue_size = int(section.get("queue_size") or DEFAULT_QUEUE_SIZE)
        self.calls: dict[str, "Call"] = {}  # request id -> the call in flight (no row stored yet)
        self.pending: dict[str, tuple] = {}  # request id -> its final row, waiting for the writer
        self.shown: set[str] = set()  # ids whose processing row went to the store: their final row is upserted
        self.inflight: list[tuple] = []  # rows being written (kept until the store took them)
        self.inflight_fresh = 0  # the first rows of inflight have ids never stored before (plain inserts)
        self.dropped = 0
        self.store_ok: bool | None = None  # None: not tried yet
        self._health: tuple[float, bool] = (0.0, True)
        self._wake = Event()
        self._stopping = False
        self.schema_ready = False
        try:  # at start-up when the store answers; otherwise the writer keeps trying
            with gevent.Timeout(PING_TIMEOUT * 2):
                self.store.ensure_schema()
            self.schema_ready = True
        except (Exception, gevent.Timeout) as exc:
            log.warning("request logs: store not ready at start-up (%s); rows wait in the queue", exc)
        self.mcp_pending: list[dict] = []  # MCP tool executions waiting for the writer (their own table)
        from app.mcp import manager_for

        manager_for(config).listeners.append(self.tool_executed)
        self._writer = gevent.spawn(self._run)

    # -- hooks (request path: keep them tiny) -------------------------------------------------

    def before(self, call: "Call") -> None:
        # an earlier plugin (governance: a virtual key's disable_content_logging) may have hidden it already
        by_key = (call.state.get("governance") or {}).get("disable_content_logging") is True
        hidden = self.hide_content or by_key or call.state.get("logs.hidden") is True
        if self.allow_override and not by_key and not call.state.get("logs.hidden"):
            header = call.ctx.environ.get("HTTP_X_BF_DISABLE_CONTENT_LOGGING")
            if header is not None:
                hidden = header.strip().lower() in _TRUE
        call.state["logs.hidden"] = hidden
        if call.stream and not hidden:
            call.keep_chunks = True  # for the assembled output
        if len(self.calls) + len(self.pending) + len(self.inflight) < self.queue_size:
            self.calls[call.ctx.request_id] = call

    def after(self, call: "Call") -> None:
        request_id = call.ctx.request_id
        # the call's place in the queue passes to its row
        had_place = self.calls.pop(request_id, None) is not None or request_id in self.pending
        if not had_place and len(self.calls) + len(self.pending) + len(self.inflight) >= self.queue_size:
            self._count_dropped()
            return
        try:
            row = row_of(call, "final", call.state.get("logs.hidden", self.hide_content))
        except Exception:
            log.exception("request logs: cannot build the row of request %s", request_id)
            self.shown.discard(request_id)
            self._count_dropped()
            return
        self.pending[request_id] = row
        if len(self.pending) >= BATCH_MAX:
            self._wake.set()

    def tool_executed(self, record: "ToolExecution") -> None:
        """One MCP tool execution (app/mcp/manager.py listeners, main thread): queued like a request's row."""
        if len(self.calls) + len(self.pending) + len(self.inflight) + len(self.mcp_pending) >= self.queue_size:
            self._count_dropped()
            return
        hidden = self.hide_content or record.arguments is None
        self.mcp_pending.append({
            "id": uuid.uuid4().hex, "request_id": record.request_id, "timestamp": record.started_at,
            "created_at": time.time(), "client_name": record.client, "tool_name": record.tool,
            "source": record.source, "status": record.status, "latency": round(record.seconds * 1000.0, 3),
            "arguments": None if hidden else _dumps(record.arguments), "error": record.error,
            "content_hidden": hidden,
        })

    def close(self) -> None:
        """Flush what is queued (gunicorn worker_exit), giving the store a few seconds."""
        self._stopping = True
        self._wake.set()
        self._writer.join(timeout=15)
        if not self._writer.dead:
            self._writer.kill(block=False)
        left = len(self.pending) + len(self.inflight)
        if left:
            log.warning("request logs: %d row(s) not written at shutdown (store unreachable)", left)

    # -- the writer greenlet ---------------------------------------------------------------

    def _run(self) -> None:
        delay = FLUSH_INTERVAL
        schema_ready = self.schema_ready
        next_retention = 0.0
        deadline = None
        while True:
            stopping = self._stopping
            try:
                if not schema_ready:
                    self.store.ensure_schema()
                    schema_ready = True
                if self.retention_days and time.time() >= next_retention and not stopping:
                    next_retention = time.time() + RETENTION_EVERY
                    cutoff = time.time() - self.retention_days * 86400
                    removed = self._in_thread(self.store.delete_older_than, cutoff)
                    if removed:
                        log.info("request logs: %d row(s) past retention deleted", removed)
                self._flush()
                while stopping and (self.pending or self.calls or self.inflight or self.mcp_pending):
                    self._flush()
                if self.sqlite and time.monotonic() - self._checkpointed >= CHECKPOINT_EVERY:
                    self._checkpointed = time.monotonic()
                    self._in_thread(self.store.checkpoint)
                if self.store_ok is False:
                    log.warning("request logs: store reachable again, writing the queued rows")
                self.store_ok = True
                delay = 0.0 if len(self.pending) >= BATCH_MAX else FLUSH_INTERVAL
            except Exception as exc:
                if self.store_ok is not False:
                    log.warning("request logs: store write failed, rows wait in the queue: %s", exc)
                self.store_ok = False
                delay = min(max(delay * 2, 0.5), RETRY_MAX)
                if schema_ready and self.inflight:
                    self._salvage()
            if stopping:
                if not (self.pending or self.calls or self.inflight or self.mcp_pending):
                    return
                deadline = deadline or time.monotonic() + 10.0
                if time.monotonic() > deadline:
                    return
                delay = min(delay, 0.5)
            if delay:
                self._wake.wait(delay)
            self._wake.clear()

    def _flush(self) -> None:
        if self.mcp_pending:
            rows, self.mcp_pending = self.mcp_pending, []
            try:
                self._write(self.writer_store.write_mcp, rows)
            except Exception:
                self.mcp_pending[:0] = rows  # the store is down: they wait with the rest
                raise
        if not self.inflight:
            self._take()
        size = WRITE_CHUNK if self.sqlite else BATCH_MAX  # PostgreSQL never holds the event loop
        while self.inflight:  # a chunk the store took leaves inflight at once
            fresh = self.inflight_fresh > 0
            chunk = self.inflight[:min(size, self.inflight_fresh) if fresh else size]
            self._write(self.writer_store.write, chunk, fresh)
            del self.inflight[:len(chunk)]
            if fresh:
                self.inflight_fresh -= len(chunk)
            if self.inflight:
                gevent.sleep(0)  # let requests run between chunks

    def _take(self) -> None:
        """The next batch into inflight: finished rows, and a processing row for each call in flight
        for PROCESSING_AFTER or more (a shorter request is only ever written once, when it ends)."""
        fresh: list[tuple] = []
        known: list[tuple] = []
        shown = self.shown
        if self.pending:
            if len(self.pending) <= BATCH_MAX:
                taken, self.pending = self.pending, {}
                rows = taken.values()
            else:
                rows = [self.pending.pop(request_id) for request_id in list(islice(self.pending, BATCH_MAX))]
            for row in rows:
                if row[0] in shown:
                    shown.remove(row[0])
                    known.append(row)
                else:
                    fresh.append(row)
        if self.calls:
            if len(shown) > self.queue_size:  # calls that never ended; should one end after all, its plain
                shown.clear()  # insert meets the processing row and the store upserts that chunk instead
            cutoff = float("inf") if self._stopping else time.perf_counter() - PROCESSING_AFTER
            due = []
            for request_id, call in self.calls.items():  # oldest first
                if call.ctx.started > cutoff:
                    break
                due.append(request_id)
            for request_id in due:
                call = self.calls.pop(request_id)
                try:
                    fresh.append(row_of(call, "processing", call.state.get("logs.hidden", self.hide_content)))
                except Exception:
                    log.exception("request logs: cannot build the row of request %s", request_id)
                    self._count_dropped()
                    continue
                shown.add(request_id)
        self.inflight = fresh + known
        self.inflight_fresh = len(fresh)

    def _salvage(self) -> None:
        """A batch failed while the store answers pings: write it row by row, dropping bad rows."""
        try:
            with gevent.Timeout(PING_TIMEOUT):
                self.store.ping()
        except (Exception, gevent.Timeout):  # the store is down: the rows keep waiting
            return
        for row in self.inflight:
            try:
                self._write(self.writer_store.write, [row])
            except Exception:
                log.exception("request logs: row of request %s rejected by the store", row[0])
                self._count_dropped()
        self.inflight = []
        self.inflight_fresh = 0

    def _write(self, method, rows: list, *args) -> None:
        """One write; while another worker holds SQLite's write lock, wait for it cooperatively."""
        give_up = None
        while True:
            try:
                return method(rows, *args)
            except Exception as exc:
                if not (self.sqlite and is_locked(exc)):
                    raise
                now = time.monotonic()
                give_up = give_up or now + LOCK_PATIENCE
                if now > give_up:
                    raise
                gevent.sleep(LOCK_RETRY)

    def _in_thread(self, method, *args):
        """Long SQLite work (a checkpoint, a retention delete) off the event loop."""
        if self.sqlite:
            return gevent.get_hub().threadpool.apply(method, args)
        return method(*args)

    def _count_dropped(self) -> None:
        from app.plugins.metrics import LOG_WRITES_DROPPED

        self.dropped += 1
        LOG_WRITES_DROPPED.inc()

    # -- health --------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Can the store be reached? A ping at most every HEALTH_CACHE seconds."""
        checked, ok = self._health
        now = time.monotonic()
        if now - checked < HEALTH_CACHE:
            return ok
        try:
            with gevent.Timeout(PING_TIMEOUT):
                self.store.ping()
            ok = True
        except (Exception, gevent.Timeout):
            ok = False
        self._health = (time.monotonic(), ok)
        return ok


def find(plugins: Any) -> RequestLogs | None:
    for plugin in plugins.plugins:
        if isinstance(plugin, RequestLogs):
            return plugin
    return None


# -- a Call as a row --------------------------------------------------------------------------


def row_of(call: "Call", kind: str, hidden: bool) -> tuple:
    """The stored row of a call, its values in ``WRITE_COLUMNS`` order; ``kind`` "processing" while in flight.

    A tuple built in place: a dict of the 35 columns and an itemgetter over it cost twice as much.
    """
    body = call.body
    if not isinstance(body, dict):
        body = {}
    served = call.served
    if served:
        provider, model, fallback_index, key = served.provider, served.model, served.fallback_index, served.key_name
    elif call.attempts:
        last = call.attempts[-1]
        provider, model, fallback_index, key = last.provider, last.model, last.fallback_index, last.key_name
    else:
        provider, model, fallback_index, key = call.target.provider, call.target.model, 0, None
    request_type = call.request_type
    object_ = _OBJECTS.get(request_type) or _OBJECTS.setdefault(request_type, request_type.replace("_", "."))
    attribution = call.state.get("governance")  # set by governance: virtual key, team, customer ids and names
    if attribution:
        vk_id, vk_name, team_id, team_name, customer_id, customer_name = (
            None if (value := attribution.get(name)) is None else str(value) for name in ATTRIBUTION_FIELDS)
    else:
        vk_id = vk_name = team_id = team_name = customer_id = customer_name = None
    metadata = call.state.get("logs.metadata")  # e.g. a realtime call's transport, turns, duration
    prompt = completion = total = cached = latency = cost = error_details = output = stop_reason = None
    if kind == "final":
        latency = round(call.seconds * 1000.0, 3)
        cost = call.cost
        if call.error is not None:
            status = "error"
            error_details = _dumps(call.error.to_dict())
        elif call.cancelled:
            status = "error"
            error_details = _CANCELLED
        else:
            status = "success"
        usage = call.usage
        if usage:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            total = int(usage.get("total_tokens") or prompt + completion)
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        output, stop_reason = _output(call)
    else:
        status = "processing"
    if hidden:
        input_history = output_message = summary = content = None
    else:
        inputs = _inputs(body)
        texts = []
        summary = None
        for message in inputs:
            value = message.get("content")
            text = value if type(value) is str else _text(value)
            if text:
                texts.append(text)
            if message.get("role") == "user":
                summary = text
        if summary is not None and len(summary) > SUMMARY_LIMIT:
            summary = summary[:SUMMARY_LIMIT] + "..."
        input_history = _dumps(inputs)
        if output is None:
            output_message = None
        else:
            output_message = _dumps(output)
            value = output.get("content")
            text = value if type(value) is str else _text(value)
            if text:
                texts.append(text)
            for tool_call in output.get("tool_calls") or ():
                text = _text((tool_call.get("function") or {}).get("arguments"))
                if text:
                    texts.append(text)
        content = "\n".join(texts)
        if len(content) > SEARCH_TEXT_LIMIT:
            content = content[:SEARCH_TEXT_LIMIT]
    tools = body.get("tools")
    return (
        call.ctx.request_id, call.ctx.environ.get("HTTP_X_BF_PARENT_REQUEST_ID") or None, call.started_at,
        time.time(), object_, provider, model, status, call.stream, latency, cost, stop_reason,
        max(0, len(call.attempts) - 1), fallback_index, key, key,
        vk_id, vk_name, team_id, team_name, customer_id, customer_name,
        prompt, completion, total, cached,
        input_history, output_message, _dumps({k: v for k, v in body.items() if k not in PARAMS_SKIPPED}),
        _dumps(tools) if tools else None, error_details, _dumps(metadata) if metadata else None,
        summary, hidden, content,
    )


def _inputs(body: dict) -> list[dict]:
    if "messages" in body:
        messages = body["messages"]
        for message in messages:
            if not isinstance(message, dict):
                return [m for m in messages if isinstance(m, dict)]
        return messages
    prompt = body.get("prompt", body.get("input"))
    if prompt is None:
        return []
    if isinstance(prompt, list):
        return [{"role": "user", "content": item if isinstance(item, str) else _dumps_text(item)} for item in prompt]
    return [{"role": "user", "content": prompt if isinstance(prompt, str) else _dumps_text(prompt)}]


def _output(call: "Call") -> tuple[dict | None, str | None]:
    """The assistant's message (assembled from the chunks for a stream) and its finish reason."""
    if call.stream:
        return _assemble(call.chunks) if call.chunks else (None, None)
    reply = call.reply
    if not isinstance(reply, dict):
        return None, None
    choices = reply.get("choices") or []
    if not choices:
        return None, None
    choice = choices[0]
    if "message" in choice:
        return choice["message"], choice.get("finish_reason")
    if "text" in choice:
        return {"role": "assistant", "content": choice.get("text")}, choice.get("finish_reason")
    return None, choice.get("finish_reason")


def _assemble(chunks: list[dict]) -> tuple[dict | None, str | None]:
    role = "assistant"
    pieces: list[str] = []
    reasoning: list[str] = []
    tools: dict[int, dict] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            finish = choice.get("finish_reason") or finish
            if "text" in choice and choice.get("text"):  # text completion
                pieces.append(choice["text"])
            delta = choice.get("delta") or {}
            role = delta.get("role") or role
            if delta.get("content"):
                pieces.append(delta["content"])
            if delta.get("reasoning_content"):
                reasoning.append(delta["reasoning_content"])
            for part in delta.get("tool_calls") or ():
                slot = tools.setdefault(part.get("index", 0), {"id": None, "type": "function",
                                                                "function": {"name": "", "arguments": ""}})
                if part.get("id"):
                    slot["id"] = part["id"]
                function = part.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] += function["name"]
                if function.get("arguments"):
                    slot["function"]["arguments"] += function["arguments"]
    message: dict[str, Any] = {"role": role, "content": "".join(pieces) if pieces or not tools else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if tools:
        message["tool_calls"] = [tools[index] for index in sorted(tools)]
    return message, finish


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text ones
        return " ".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return str(content)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _dumps_text(value: Any) -> str:
    return _dumps(value)


_OBJECTS: dict[str, str] = {}  # request type -> the row's "object" (chat_completion -> chat.completion)
_CANCELLED = _dumps({"is_bifrost_error": True, "status_code": 499, "type": "request_cancelled",
                     "error": {"message": "the client disconnected before the stream ended"}})
