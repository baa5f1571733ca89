"""Counters in Redis, shared by every instance: the admits and settlements of a worker go in batches.

A round trip to Redis costs more than the Lua work it carries, so the operations that
greenlets of one worker ask for while a batch is on its way go together in the next one:
one script call applies them in order, atomically, exactly as one call each would.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import gevent
from gevent.event import AsyncResult, Event
from gevent.monkey import get_original

from app.stores.counters import Counters, Meter, Reading, StoreUnavailable, _roll

log = logging.getLogger("bifrost.governance")

BATCH_MAX = 200  # operations per script call: Redis runs a script alone, so keep each one short
ADMIT, SETTLE = 0, 1
_thread_ident = get_original("_thread", "get_ident")  # the OS thread, even when threading is patched

# KEYS: the counter hashes of every operation, in order. ARGV[1]: the number of operations;
# then per operation: ADMIT or SETTLE, its number of keys, its time, and per key
#   ADMIT: kind, limit, window seconds, aligned start, reserve
#   SETTLE: window seconds, aligned start, release, add.
# Returns one number per operation: 0 (admitted, or settled), else the 1-based index of the
# counter that refused. Amounts are integers; %.0f keeps them exact past Lua's integer range.
BATCH_LUA = """
local function roll(usage, start, seconds, aligned, now)
  if aligned >= 0 then
    if start == aligned then return usage, start end
    return 0, aligned
  end
  if start <= 0 or now >= start + seconds then return 0, now end
  return usage, start
end
local function get(key)
  local v = redis.call('HMGET', key, 'u', 'r', 's')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
end
local function put(key, u, r, s)
  redis.call('HSET', key, 'u', string.format('%.0f', u), 'r', string.format('%.0f', r), 's', string.format('%.6f', s))
end
local results = {}
local a, k = 2, 1
for op = 1, tonumber(ARGV[1]) do
  local kind_of_op, n, now = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if kind_of_op == 0 then
    local rows, refused = {}, 0
    for i = 1, n do
      local b = a + (i - 1) * 5
      local u, r, s = get(KEYS[k + i - 1])
      u, s = roll(u, s, tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), now)
      local kind, limit = tonumber(ARGV[b]), tonumber(ARGV[b + 1])
      local held = u
      if kind == 1 then held = u + r end
      if held >= limit then refused = i break end
      rows[i] = {u, r, s, kind, tonumber(ARGV[b + 4])}
    end
    if refused == 0 then
      for i = 1, n do
        local row = rows[i]
        if row[4] == 0 then row[1] = row[1] + 1 else row[2] = row[2] + row[5] end
        put(KEYS[k + i - 1], row[1], row[2], row[3])
      end
    end
    results[op] = refused
    a = a + n * 5
  else
    for i = 1, n do
      local b = a + (i - 1) * 4
      local key = KEYS[k + i - 1]
      local u, r, s = get(key)
      u, s = roll(u, s, tonumber(ARGV[b]), tonumber(ARGV[b + 1]), now)
      r = r - tonumber(ARGV[b + 2])
      if r < 0 then r = 0 end
      put(key, u + tonumber(ARGV[b + 3]), r, s)
    end
    results[op] = 0
    a = a + n * 4
  end
  k = k + n
end
return results
"""


class _Operation:
    __slots__ = ("keys", "args", "waiter", "settlement")

    def __init__(self, keys: list[str], args: list, waiter: AsyncResult | None = None,
                 settlement: tuple | None = None) -> None:
        self.keys = keys
        self.args = args
        self.waiter = waiter  # an admit's caller waits for its result
        self.settlement = settlement  # (meters, releases, adds) of a settle, given back if its batch fails


class RedisCounters(Counters):
    """Every instance shares the counters; a worker's operations reach Redis in batches.

    An admit waits for its batch. A settle does not: it leaves with the next batch, which
    goes as soon as the request's greenlet yields (for a JSON reply, once it is written), and
    a later admit or read of this worker is ordered after it. Settlements of a batch that
    fails go to ``on_lost_settle`` (the governance service retries them).
    """

    kind = "redis"

    def __init__(self, config: Mapping[str, Any]) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, _, port = str(config.get("addr") or "127.0.0.1:6379").rpartition(":")
        self.prefix = str(config.get("key_prefix") or "bifrost:")
        # A blocking pool: with more requests in flight than connections, a request waits for
        # one (up to the timeout) instead of failing as if Redis were down.
        pool = redis.BlockingConnectionPool(
            host=host or "127.0.0.1", port=int(port or 6379), db=int(config.get("db") or 0),
            username=config.get("username") or None, password=config.get("password") or None,
            socket_connect_timeout=float(config.get("connect_timeout", 0.5)),
            socket_timeout=float(config.get("timeout", 1.0)),
            max_connections=int(config.get("pool_size", 100)), timeout=float(config.get("timeout", 1.0)),
            # One immediate retry replaces a pooled connection that died; an outage fails fast.
            retry=Retry(NoBackoff(), 1),
        )
        self.client = redis.Redis(connection_pool=pool)
        self._script = self.client.register_script(BATCH_LUA)
        self._errors = (redis.RedisError, OSError)
        self._loop_thread = _thread_ident()  # batches are a greenlet's work: only on the worker's own thread
        self._queue: list[_Operation] = []
        self._sender: gevent.Greenlet | None = None
        self._idle = Event()
        self._idle.set()
        self.on_lost_settle: Callable[[tuple, tuple, tuple, StoreUnavailable], None] | None = None

    def _keys(self, meters: Sequence[Meter]) -> list[str]:
        return [self.prefix + m.key for m in meters]

    # -- operations ---------------------------------------------------------------------------

    def admit(self, meters: Sequence[Meter], reserves: Sequence[int], now: float) -> int:
        args: list = [ADMIT, len(meters), repr(now)]
        for meter, reserve in zip(meters, reserves):
            args += [meter.kind, meter.limit, meter.window.seconds, meter.window.aligned_start(now), reserve]
        operation = _Operation(self._keys(meters), args)
        if _thread_ident() != self._loop_thread:
            return self._send([operation])[0] - 1
        operation.waiter = AsyncResult()
        self._enqueue(operation)
        return operation.waiter.get() - 1  # raises the batch's StoreUnavailable

    def settle(self, meters: Sequence[Meter], releases: Sequence[int], adds: Sequence[int], now: float) -> None:
        args: list = [SETTLE, len(meters), repr(now)]
        for meter, release, add in zip(meters, releases, adds):
            args += [meter.window.seconds, meter.window.aligned_start(now), release, add]
        operation = _Operation(self._keys(meters), args, settlement=(tuple(meters), tuple(releases), tuple(adds)))
        if _thread_ident() != self._loop_thread:
            self._send([operation])
            return
        self._enqueue(operation)

    def read(self, meters: Sequence[Meter], now: float) -> list[Reading]:
        self._wait_for_batches()
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in self._keys(meters):
                pipe.hmget(key, "u", "r", "s")
            rows = pipe.execute()
        except self._errors as exc:
            raise StoreUnavailable(f"redis counters: {type(exc).__name__}") from None
        readings = []
        for meter, (u, r, s) in zip(meters, rows):
            if u is None and s is None:
                readings.append(Reading(0, 0, 0.0))
                continue
            usage, start = _roll(int(float(u or 0)), float(s or 0), meter.window.seconds,
                                 meter.window.aligned_start(now), now)
            readings.append(Reading(usage, int(float(r or 0)), start))
        return readings

    def reset(self, keys: Sequence[str]) -> None:
        self._wait_for_batches()
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hset(self.prefix + key, mapping={"u": 0, "s": 0})
            pipe.execute()
        except self._errors as exc:
            raise StoreUnavailable(f"redis counters: {type(exc).__name__}") from None

    def close(self) -> None:
        """Send what is queued (the settlements of the last requests), then disconnect."""
        if self._sender is not None and _thread_ident() == self._loop_thread:
            self._sender.join(timeout=5.0)
        if self._queue:
            queued, self._queue = self._queue, []
            self._finish(queued)
        self.client.close()

    # -- batches --------------------------------------------------------------------------------

    def _enqueue(self, operation: _Operation) -> None:
        self._queue.append(operation)
        if self._sender is None:
            self._idle.clear()
            self._sender = gevent.spawn(self._send_queued)

    def _send_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
                self._finish(batch)
        finally:
            self._sender = None
            self._idle.set()

    def _finish(self, batch: list[_Operation]) -> None:
        """Send one batch and hand each operation its result (or the batch's failure)."""
        try:
            results = self._send(batch)
        except StoreUnavailable as exc:
            for operation in batch:
                if operation.waiter is not None:
                    operation.waiter.set_exception(exc)
                elif self.on_lost_settle is not None:
                    self.on_lost_settle(*operation.settlement, exc)
                else:
                    log.error("governance: a settlement could not be written: %s", exc)
            return
        except BaseException:  # killed at shutdown: no caller may wait forever
            for operation in batch:
                if operation.waiter is not None and not operation.waiter.ready():
                    operation.waiter.set_exception(StoreUnavailable("redis counters: the worker is stopping"))
            raise
        for operation, result in zip(batch, results):
            if operation.waiter is not None:
                operation.waiter.set(int(result))

    def _send(self, batch: list[_Operation]) -> list:
        keys: list[str] = []
        args: list = [len(batch)]
        for operation in batch:
            keys += operation.keys
            args += operation.args
        try:
            return self._script(keys=keys, args=args)
        except self._errors as exc:
            raise StoreUnavailable(f"redis counters: {type(exc).__name__}") from None

    def _wait_for_batches(self) -> None:
        """A read sees every operation this worker sent before it."""
        if self._sender is not None and _thread_ident() == self._loop_thread:
            self._idle.wait(timeout=5.0)
