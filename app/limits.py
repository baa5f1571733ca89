"""Per-provider concurrency: at most ``concurrency`` calls in flight, ``buffer_size`` waiting.

The limit is per worker process, like Bifrost's per-node queue: it protects one
process's sockets and memory, not a global quota (governance does that).
"""
from __future__ import annotations

from gevent.lock import BoundedSemaphore

from app.errors import GatewayError


class ProviderGate:
    def __init__(self, provider: str, concurrency: int, buffer_size: int, drop_excess: bool) -> None:
        self.provider = provider
        self.buffer_size = buffer_size
        self.drop_excess = drop_excess
        self._slots = BoundedSemaphore(concurrency)
        self.waiting = 0

    def acquire(self) -> None:
        if self._slots.acquire(blocking=False):
            return
        if self.waiting >= self.buffer_size:
            if self.drop_excess:
                raise GatewayError(
                    "request dropped: queue is full", 503, type="request_dropped",
                    error_type="request_dropped", is_bifrost_error=True, provider=self.provider,
                )
            # With drop_excess_requests off a full queue still waits, as Bifrost blocks.
        self.waiting += 1
        try:
            self._slots.acquire()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._slots.release()
