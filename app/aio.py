"""One asyncio event loop per worker, in its own OS thread, for asyncio libraries (the MCP SDK, aiortc).

Greenlets hand it coroutines with ``call`` and wait on a libev async watcher, so the
gevent hub never blocks (the recipe in realtime-webrtc.md: a raw thread started after
fork, never joined; its loop keeps gevent's selector so DNS and sleeps work there).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import threading
from typing import Any, Callable, Coroutine, Iterator, TypeVar

import gevent
import gevent.event
from gevent import monkey

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()  # patched: only greenlets of the main thread contend for it
_pid = 0


def loop() -> asyncio.AbstractEventLoop:
    """The worker's loop, started on first use (after the fork: threads do not survive it)."""
    global _loop, _pid
    if _loop is not None and _pid == os.getpid():
        return _loop
    with _lock:
        if _loop is None or _pid != os.getpid():
            asyncio.new_event_loop().close()  # lazy imports happen here, not in the thread (import-lock deadlock)
            box: list[asyncio.AbstractEventLoop] = []

            _unpatch_asyncio_subprocesses()

            def run() -> None:
                new = asyncio.new_event_loop()
                asyncio.set_event_loop(new)
                watcher = asyncio.PidfdChildWatcher()  # no helper threads, no waitpid(-1)
                watcher.attach_loop(new)
                asyncio.set_child_watcher(watcher)
                box.append(new)
                new.run_forever()

            monkey.get_original("_thread", "start_new_thread")(run, ())
            while not box:
                gevent.sleep(0.001)
            _loop, _pid = box[0], os.getpid()
    return _loop


def _unpatch_asyncio_subprocesses() -> None:
    """asyncio's subprocesses must use the original Popen: gevent's watches children on the main hub only."""
    import asyncio.base_subprocess
    import asyncio.unix_events
    import importlib.util
    import subprocess
    import types

    # A private, unpatched copy of the standard module (gevent rewrote the shared one in place).
    spec = importlib.util.spec_from_file_location("_aio_subprocess", subprocess.__file__)
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)
    # ... whose os functions are the originals too: gevent's os.close defers the close to a hub that
    # does not run while asyncio does, and Popen would wait forever on its exec-status pipe.
    private_os = types.ModuleType("os")
    private_os.__dict__.update(os.__dict__)
    private_os.__dict__.update(monkey.saved.get("os", {}))
    original.os = private_os
    asyncio.unix_events.subprocess = original
    asyncio.base_subprocess.subprocess = original


def submit(coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
    """Start a coroutine on the loop without waiting for it."""
    return asyncio.run_coroutine_threadsafe(coro, loop())


def wait(future: "concurrent.futures.Future[T]", timeout: float | None = None) -> T:
    """Wait for a future of the loop thread from a greenlet, cooperatively.

    On timeout the future is cancelled (the coroutine gets CancelledError) and
    ``TimeoutError`` is raised; a greenlet killed while waiting cancels it too.
    """
    if not future.done():
        done = gevent.event.Event()
        watcher = gevent.get_hub().loop.async_()
        watcher.start(done.set)  # started before the callback can fire, so no send is lost
        future.add_done_callback(lambda _f: watcher.send())  # async_.send() is thread-safe
        try:
            if not done.wait(timeout) and not future.done():
                raise TimeoutError(f"no result within {timeout}s")
        except BaseException:
            future.cancel()
            raise
        finally:
            watcher.stop()
            watcher.close()
    return future.result(0)


def call(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the loop thread and return its result to the calling greenlet."""
    return wait(submit(coro), timeout)


def run_sync(fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
    """Run a plain function on the loop thread (to touch loop-owned objects safely)."""

    async def invoke() -> T:
        return fn(*args)

    return call(invoke(), timeout)


class Channel:
    """Items from the loop thread to one greenlet, in order (a stream of ASGI messages, chunks...).

    ``put`` and ``close`` are called on the loop thread; iterating happens in the greenlet.
    """

    _END = object()

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        self._ready = gevent.event.Event()
        self._watcher = gevent.get_hub().loop.async_()  # of the consuming greenlet's thread
        self._watcher.start(self._ready.set)  # active for the channel's life: no send is lost
        self._disposed = False

    def put(self, item: Any) -> None:
        if self._disposed:  # the consumer left (client gone); drop what still comes
            return
        self._items.append(item)
        self._watcher.send()

    def close(self) -> None:
        self.put(self._END)

    def get(self, timeout: float | None = None) -> Any:
        """The next item; ``StopIteration`` once closed."""
        while not self._items:
            self._ready.clear()
            if self._items:
                break
            if not self._ready.wait(timeout) and not self._items:
                raise TimeoutError(f"nothing within {timeout}s")
        item = self._items.popleft()
        if item is self._END:
            self._items.appendleft(item)
            raise StopIteration
        return item

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def dispose(self) -> None:
        self._disposed = True
        self._watcher.stop()
        self._watcher.close()
