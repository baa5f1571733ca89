"""Counters in an LMDB file shared by the workers of one instance: the embedded default.

LMDB is a memory-mapped B-tree with one writer at a time, serialised across processes by a
robust process-shared mutex in its lock file: a worker that dies inside a write transaction
leaves nothing behind (the next writer takes the mutex over; the uncommitted pages were never
published). A read-modify-write transaction over a request's few counters costs microseconds,
where SQLite's BEGIN IMMEDIATE + COMMIT cost tens.

The environment is one data file (``subdir=False``), ``counters.lmdb``, with its lock file
``counters.lmdb-lock`` beside it. Each row is ``<qqd``: usage and reserved (int64), window start.

Durability: commits are written to the file without fsync (``sync=False, metasync=False``),
so they survive a crash of the process (the page cache holds them); ``checkpoint()``, called
from a thread about once a second, and ``close()`` flush them, so a power loss risks about
the last second of counts (and, where the filesystem reorders writes, the file itself).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import struct
import threading
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import lmdb

from app.stores.counters import COUNT, Counters, Meter, Reading, StoreUnavailable, _roll

log = logging.getLogger("bifrost.governance")

ROW = struct.Struct("<qqd")  # usage, reserved, window start
# Virtual: the file grows with its contents only (sparse); the mapping costs address space, not memory.
# Measured: about 8,700 counters per MiB (keys of uuid ids, created in random order), so 1 GiB holds
# about 9 million: one per budget or rate limit of an entity, whatever the traffic.
MAP_SIZE_MB = 1024
MAX_READERS = 512  # reader slots in the lock file, for every process of the instance together
CREATED = b"\x00created"  # written once, when the environment is set up (and the old counters.db copied)
FORKED = "lmdb counters: the environment was opened before a fork; each worker must open its own"
T = TypeVar("T")

# One environment per file and process: LMDB forbids opening the same file twice in a process
# (its fcntl locks belong to the process), so LmdbCounters on one path share it.
_shared: dict[str, list] = {}  # path -> [environment, users, pid]
_shared_lock = threading.Lock()


def _key(name: str, limit: int = 511) -> bytes:
    raw = name.encode()
    # LMDB's key size limit (511 bytes): an id that long is stored under its digest.
    return raw if len(raw) <= limit else b"\x00sha256:" + hashlib.sha256(raw).digest()


class LmdbCounters(Counters):
    """Counters in an LMDB environment, opened on first use in the process that uses it.

    Opening lazily keeps the environment out of gunicorn's master (even with --preload), so every
    worker opens its own after the fork, as LMDB requires.
    """

    kind = "lmdb"

    def __init__(self, path: Path, *, map_size: int = MAP_SIZE_MB << 20, migrate_from: Path | None = None) -> None:
        self.path = path
        self.map_size = map_size
        self.migrate_from = migrate_from  # the old default's counters.db, copied once into a new environment
        self._env: lmdb.Environment | None = None
        self._pid = 0

    # -- the environment -----------------------------------------------------------------------

    def _open(self) -> lmdb.Environment:
        env = self._env
        if env is not None:
            if self._pid != os.getpid():
                raise StoreUnavailable(FORKED)
            return env
        name = str(self.path.expanduser().absolute())
        with _shared_lock:
            entry = _shared.get(name)
            if entry is not None and entry[2] != os.getpid():
                raise StoreUnavailable(FORKED)
            if entry is None:
                entry = _shared[name] = [self._open_environment(), 0, os.getpid()]
            entry[1] += 1
        self._env, self._pid = entry[0], entry[2]
        return entry[0]

    def _open_environment(self) -> lmdb.Environment:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            env = lmdb.open(str(self.path), subdir=False, map_size=self.map_size, sync=False, metasync=False,
                            max_readers=MAX_READERS, max_spare_txns=1)
        except (lmdb.Error, OSError) as exc:
            raise StoreUnavailable(f"lmdb counters: cannot open {self.path}: {_reason(exc)}") from None
        try:
            env.reader_check()  # frees the reader slots of processes that died holding one
            self._set_up(env)
        except StoreUnavailable:
            env.close()
            raise
        except lmdb.Error as exc:
            env.close()
            raise self._unavailable(exc) from None
        return env

    def _set_up(self, env: lmdb.Environment) -> None:
        """A new environment: copy the old default's counters.db into it, once, in one transaction."""
        with env.begin() as txn:
            if txn.get(CREATED) is not None:
                return
        rows = self._old_rows()
        with env.begin(write=True) as txn:
            if txn.get(CREATED) is not None:  # another worker set it up meanwhile
                return
            try:
                for key, usage, reserved, start in rows:
                    txn.put(_key(key), ROW.pack(int(usage), int(reserved), float(start)))
            except struct.error:
                raise StoreUnavailable(f"lmdb counters: {self.migrate_from} holds a value beyond 64 bits") from None
            txn.put(CREATED, b"1")
        if rows:
            log.info("governance counters: copied %d counter(s) from %s into %s",
                     len(rows), self.migrate_from, self.path)

    def _old_rows(self) -> list[tuple]:
        source = self.migrate_from
        if source is None or not source.is_file():
            return []
        try:
            db = sqlite3.connect(str(source), timeout=30)
            try:
                if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counters'").fetchone():
                    return db.execute("SELECT key, usage, reserved, start FROM counters").fetchall()
                return []
            finally:
                db.close()
        except sqlite3.Error as exc:
            # Failing beats starting every budget from zero: fix or remove the old file, and the next try copies it.
            raise StoreUnavailable(f"lmdb counters: cannot copy the old counters from {source}: {exc}") from None

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        if isinstance(exc, lmdb.MapFullError):
            return StoreUnavailable(f"lmdb counters: {self.path} is full ({self.map_size / 2**20:g} MiB); "
                                    "raise kv_store.config.map_size_mb")
        if isinstance(exc, (struct.error, OverflowError)):
            return StoreUnavailable("lmdb counters: a counter would pass 64 bits")
        return StoreUnavailable(f"lmdb counters: {_reason(exc)}")

    def _write(self, work: Callable[[lmdb.Transaction], T]) -> T:
        """``work`` in one write transaction, committed unless it raises."""
        # No yield between begin and commit (pure CPU work), so one worker's greenlets never interleave
        # transactions; begin blocks the OS thread only while another process holds the writer lock (microseconds).
        env = self._open()
        try:
            txn = env.begin(write=True)
        except lmdb.Error as exc:
            raise self._unavailable(exc) from None
        try:
            result = work(txn)
            txn.commit()
        except (lmdb.Error, struct.error, OverflowError) as exc:
            txn.abort()
            raise self._unavailable(exc) from None
        except BaseException:
            txn.abort()
            raise
        return result

    # -- the counters ----------------------------------------------------------------------------

    def admit(self, meters: Sequence[Meter], reserves: Sequence[int], now: float) -> int:
        def work(txn: lmdb.Transaction) -> int:
            rolled = []
            for index, meter in enumerate(meters):
                key = _key(meter.key)
                raw = txn.get(key)
                usage, reserved, start = ROW.unpack(raw) if raw is not None else (0, 0, 0.0)
                usage, start = _roll(usage, start, meter.window.seconds, meter.window.aligned_start(now), now)
                held = usage if meter.kind == COUNT else usage + reserved
                if held >= meter.limit:
                    return index  # nothing was written: the commit publishes nothing
                rolled.append((key, raw, usage, reserved, start))
            for meter, reserve, (key, raw, usage, reserved, start) in zip(meters, reserves, rolled):
                if meter.kind == COUNT:
                    usage += 1
                else:
                    reserved += reserve
                _put(txn, key, raw, ROW.pack(usage, reserved, start))
            return -1

        return self._write(work)

    def settle(self, meters: Sequence[Meter], releases: Sequence[int], adds: Sequence[int], now: float) -> None:
        def work(txn: lmdb.Transaction) -> None:
            for meter, release, add in zip(meters, releases, adds):
                key = _key(meter.key)
                raw = txn.get(key)
                usage, reserved, start = ROW.unpack(raw) if raw is not None else (0, 0, 0.0)
                usage, start = _roll(usage, start, meter.window.seconds, meter.window.aligned_start(now), now)
                _put(txn, key, raw, ROW.pack(usage + add, max(0, reserved - release), start))

        self._write(work)

    def read(self, meters: Sequence[Meter], now: float) -> list[Reading]:
        env = self._open()
        try:
            with env.begin() as txn:
                rows = [txn.get(_key(meter.key)) for meter in meters]
        except lmdb.Error as exc:
            raise self._unavailable(exc) from None
        readings = []
        for meter, raw in zip(meters, rows):
            if raw is None:
                readings.append(Reading(0, 0, 0.0))
                continue
            usage, reserved, start = ROW.unpack(raw)
            usage, start = _roll(usage, start, meter.window.seconds, meter.window.aligned_start(now), now)
            readings.append(Reading(usage, reserved, start))
        return readings

    def reset(self, keys: Sequence[str]) -> None:
        def work(txn: lmdb.Transaction) -> None:
            for name in keys:
                key = _key(name)
                raw = txn.get(key)
                if raw is not None:
                    txn.put(key, ROW.pack(0, ROW.unpack(raw)[1], 0.0))

        self._write(work)

    def checkpoint(self) -> None:
        """Flush the commits to disk (they are in the page cache already); called from a thread."""
        env = self._env
        if env is None or self._pid != os.getpid():
            return
        try:
            env.sync(True)
        except lmdb.Error as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        env = self._env
        if env is None or self._pid != os.getpid():
            return
        self._env = None
        name = str(self.path.expanduser().absolute())
        with _shared_lock:
            entry = _shared.get(name)
            if entry is None or entry[0] is not env:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _shared[name]
        try:
            env.sync(True)
        finally:
            env.close()


def _put(txn: lmdb.Transaction, key: bytes, old: bytes | None, new: bytes) -> None:
    """A row that does not change is not written (a request limit's settle): each put copies pages."""
    if new != old:
        txn.put(key, new)


def _reason(exc: BaseException) -> str:
    """LMDB's message (its function and error: never a value or a key), or the OS error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
