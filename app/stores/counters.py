"""Usage counters that enforce rate limits and budgets, exact across workers and instances.

Each counter is (usage, reserved, window start) under one key. ``admit`` checks a whole
chain of counters and changes them only if every one passes, in one atomic step: an LMDB
write transaction (the workers of one instance, the default: app/stores/counters_lmdb.py),
a SQLite ``BEGIN IMMEDIATE`` transaction (the previous default, still selectable) or a Lua
script in Redis (every instance). Amounts are integers (requests, tokens, nano-USD), so
sums are exact and Lua's doubles never round them.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger("bifrost.governance")

COUNT = 0  # a request counter: admitted while usage < limit; admission adds 1
AMOUNT = 1  # tokens or cost: admitted while usage + reserved < limit; admission reserves an estimate

NANO_USD = 1_000_000_000  # budgets are counted in nano-dollars

# Rolling windows of months, quarters and years are 30, 90 and 365 days long;
# calendar-aligned ones follow the real UTC calendar.
DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "M": 30 * 86400, "Q": 90 * 86400, "Y": 365 * 86400}


class StoreUnavailable(Exception):
    """The counter store cannot be reached; the message never carries a secret."""


@dataclass(frozen=True)
class Window:
    """A reset duration such as "1m" or "1M", rolling from the last reset or aligned to the UTC calendar."""

    text: str
    seconds: int
    unit: str
    count: int
    calendar_aligned: bool = False

    @classmethod
    def parse(cls, text: str, calendar_aligned: bool = False) -> "Window":
        if not isinstance(text, str) or len(text) < 2 or text[-1] not in DURATIONS or not text[:-1].isdigit():
            raise ValueError(f"not a reset duration: {text!r} (e.g. 30s, 1m, 5m, 1h, 1d, 1w, 1M, 1Q, 1Y)")
        count = int(text[:-1])
        if count < 1:
            raise ValueError(f"not a reset duration: {text!r}")
        return cls(text, count * DURATIONS[text[-1]], text[-1], count, calendar_aligned)

    def aligned_start(self, now: float) -> int:
        """The start of the calendar period holding ``now`` (UTC), or -1 for a rolling window."""
        if not self.calendar_aligned:
            return -1
        moment = datetime.fromtimestamp(now, timezone.utc)
        if self.unit in "smhd":
            return int(now // self.seconds * self.seconds)
        if self.unit == "w":  # weeks start on Monday
            day = int(now // 86400 * 86400)
            return day - moment.weekday() * 86400
        months = {"M": 1, "Q": 3, "Y": 12}[self.unit] * self.count
        index = (moment.year * 12 + moment.month - 1) // months * months
        return int(datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class Meter:
    """One limit to check: a counter key, its limit in integer units, and its window."""

    key: str
    kind: int  # COUNT or AMOUNT
    limit: int
    window: Window
    decision: str  # the error type when it refuses: request_limited, token_limited, budget_exceeded
    label: str  # for the message: "virtual key budget", "team budget", ...


@dataclass(frozen=True)
class Reading:
    usage: int
    reserved: int
    start: float  # the window's start (epoch seconds), 0 when never used


def _window_args(meters: Sequence[Meter], now: float) -> list:
    return [value for meter in meters for value in (meter.window.seconds, meter.window.aligned_start(now))]


class Counters:
    """The interface both stores implement."""

    kind = "none"
    # A store that sends settlements later (Redis) hands those a failed batch lost to this
    # callback (meters, releases, adds, error); the others raise StoreUnavailable from settle.
    on_lost_settle = None

    def admit(self, meters: Sequence[Meter], reserves: Sequence[int], now: float) -> int:
        """Admit atomically: -1 when every meter passes (and is charged), else the index of the first that refuses."""
        raise NotImplementedError

    def settle(self, meters: Sequence[Meter], releases: Sequence[int], adds: Sequence[int], now: float) -> None:
        """After the call: give back each reservation and add the real usage (to the current window)."""
        raise NotImplementedError

    def read(self, meters: Sequence[Meter], now: float) -> list[Reading]:
        raise NotImplementedError

    def reset(self, keys: Sequence[str]) -> None:
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Periodic housekeeping off the event loop (LMDB's fsync, SQLite's WAL); nothing for Redis."""

    def close(self) -> None:
        pass


def _roll(usage: int, start: float, window_seconds: int, aligned: int, now: float) -> tuple[int, float]:
    """The counter as the current window sees it: a new window starts at zero."""
    if aligned >= 0:
        return (usage, start) if start == aligned else (0, float(aligned))
    if start <= 0 or now >= start + window_seconds:
        return 0, now
    return usage, start


class SqliteCounters(Counters):
    """Counters in a SQLite file shared by the workers of one instance.

    ``BEGIN IMMEDIATE`` takes the write lock before reading, so a check and its
    increment are one step for every worker. The calls do not yield to other
    greenlets, so a worker's single connection never interleaves two transactions.
    """

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Commits never checkpoint (an fsync on the request path every few hundred requests);
        # checkpoint() does it from a thread (the governance plugin's timer).
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: sqlite3.Connection | None = None
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, usage INTEGER NOT NULL, "
            "reserved INTEGER NOT NULL, start REAL NOT NULL)"
        )

    def _rows(self, keys: Sequence[str]) -> dict[str, tuple[int, int, float]]:
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(f"SELECT key, usage, reserved, start FROM counters WHERE key IN ({marks})", tuple(keys))
        return {key: (usage, reserved, start) for key, usage, reserved, start in rows}

    def _transaction(self, work):
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite counters: {exc}") from None
        try:
            result = work()
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreUnavailable(f"sqlite counters: {exc}") from None
        except BaseException:
            self._rollback()
            raise
        return result

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back

    def _write(self, rows: Sequence[tuple[str, int, int, float]]) -> None:
        """(key, usage, reserved, start) rows, in one statement."""
        self.db.execute(
            "INSERT INTO counters (key, usage, reserved, start) VALUES "
            + ", ".join(("(?, ?, ?, ?)",) * len(rows))
            + " ON CONFLICT(key) DO UPDATE SET usage = excluded.usage, reserved = excluded.reserved, "
            "start = excluded.start",
            [value for row in rows for value in row],
        )

    def checkpoint(self) -> None:
        """Move the write-ahead log into the file (PASSIVE: never waits); called from a thread."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(str(self.path), timeout=5, isolation_level=None,
                                                 check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def admit(self, meters: Sequence[Meter], reserves: Sequence[int], now: float) -> int:
        def work() -> int:
            rows = self._rows([m.key for m in meters])
            rolled = []
            for index, meter in enumerate(meters):
                usage, reserved, start = rows.get(meter.key, (0, 0, 0.0))
                usage, start = _roll(usage, start, meter.window.seconds, meter.window.aligned_start(now), now)
                held = usage if meter.kind == COUNT else usage + reserved
                if held >= meter.limit:
                    return index
                rolled.append((usage, reserved, start))
            writes = []
            for meter, reserve, (usage, reserved, start) in zip(meters, reserves, rolled):
                if meter.kind == COUNT:
                    usage += 1
                else:
                    reserved += reserve
                writes.append((meter.key, usage, reserved, start))
            if writes:
                self._write(writes)
            return -1

        return self._transaction(work)

    def settle(self, meters: Sequence[Meter], releases: Sequence[int], adds: Sequence[int], now: float) -> None:
        def work() -> None:
            rows = self._rows([m.key for m in meters])
            writes = []
            for meter, release, add in zip(meters, releases, adds):
                usage, reserved, start = rows.get(meter.key, (0, 0, 0.0))
                usage, start = _roll(usage, start, meter.window.seconds, meter.window.aligned_start(now), now)
                writes.append((meter.key, usage + add, max(0, reserved - release), start))
            if writes:
                self._write(writes)

        self._transaction(work)

    def read(self, meters: Sequence[Meter], now: float) -> list[Reading]:
        try:
            rows = self._rows([m.key for m in meters])
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite counters: {exc}") from None
        readings = []
        for meter in meters:
            row = rows.get(meter.key)
            if row is None:
                readings.append(Reading(0, 0, 0.0))
                continue
            usage, start = _roll(row[0], row[2], meter.window.seconds, meter.window.aligned_start(now), now)
            readings.append(Reading(usage, row[1], start))
        return readings

    def reset(self, keys: Sequence[str]) -> None:
        marks = ",".join("?" * len(keys))
        self._transaction(lambda: self.db.execute(f"UPDATE counters SET usage = 0, start = 0 WHERE key IN ({marks})",
                                                  tuple(keys)))

    def close(self) -> None:
        self.db.close()
        if self._checkpointer is not None:
            self._checkpointer.close()


def make_counters(kv_store: Mapping[str, Any] | None, directory: Path) -> Counters:
    """No ``kv_store``: LMDB in ``directory`` (the app dir), the old default's counters.db copied in once.

    ``{"type": "lmdb" | "sqlite" | "redis", "config": {...}}`` names a store (app/config.py checks it).
    """
    kind, config = (kv_store.get("type", "redis"), kv_store.get("config") or {}) if kv_store else ("lmdb", {})
    if kind == "redis":
        from app.stores.counters_redis import RedisCounters

        return RedisCounters(config)
    if kind == "sqlite":
        path = config.get("path")
        return SqliteCounters(Path(path).expanduser() if path else directory / "counters.db")
    if kind == "lmdb":
        from app.stores.counters_lmdb import MAP_SIZE_MB, LmdbCounters  # a C extension: only where it is used

        path = Path(config["path"]).expanduser() if config.get("path") else directory / "counters.lmdb"
        return LmdbCounters(path, map_size=int(config.get("map_size_mb") or MAP_SIZE_MB) << 20,
                            migrate_from=path.parent / "counters.db")
    raise ValueError(f"kv_store.type: unknown counter store {kind!r} (lmdb, sqlite or redis)")


def now() -> float:
    return time.time()
