"""The worker's media thread: one asyncio loop, in a real OS thread, that runs aiortc.

Greenlets hand it coroutines with ``run`` and wait on a gevent async watcher, so the hub
keeps serving HTTP. The recipe and its pitfalls are in docs/realtime.md: start it lazily
after fork, let it keep gevent's selector, import everything here at module level (a lazy
import inside the thread can deadlock on the import lock), and never join it. This module itself
is imported on a worker's first WebRTC call, by that request's greenlet on the main thread
(app/realtime/calls.py ``_media``), so idle workers never load aiortc or PyAV.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine

import gevent
from gevent import monkey

# aiortc and PyAV are imported here, before the thread exists, for the import-lock reason above.
import aiortc  # noqa: F401
import av  # noqa: F401

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()  # patched: only greenlets of this worker contend for it


def media_loop() -> asyncio.AbstractEventLoop:
    """The running media loop of this worker, started on first use."""
    global _loop
    if _loop is not None:
        return _loop
    with _lock:
        if _loop is None:
            asyncio.new_event_loop().close()  # pre-warm asyncio's lazy imports on this thread
            box: list[asyncio.AbstractEventLoop] = []

            def run() -> None:
                loop = asyncio.new_event_loop()  # GeventSelector: this thread's own hub
                asyncio.set_event_loop(loop)
                box.append(loop)
                loop.run_forever()

            monkey.get_original("_thread", "start_new_thread")(run, ())
            while not box:
                gevent.sleep(0.001)
            _loop = box[0]
    return _loop


def started() -> bool:
    return _loop is not None


def run(coro: Coroutine[Any, Any, Any], timeout: float | None = 30.0) -> Any:
    """Run ``coro`` on the media loop and wait for it cooperatively; re-raise its error.

    On timeout the coroutine is cancelled and ``gevent.Timeout`` is raised.
    """
    future = asyncio.run_coroutine_threadsafe(coro, media_loop())
    return wait(future, timeout)


def wait(future: concurrent.futures.Future, timeout: float | None) -> Any:
    hub = gevent.get_hub()
    watcher = hub.loop.async_()
    future.add_done_callback(lambda _f: watcher.send())  # async_.send() is thread-safe
    try:
        with gevent.Timeout(timeout):
            while not future.done():
                hub.wait(watcher)
    except gevent.Timeout:
        future.cancel()
        raise
    finally:
        watcher.close()
    return future.result(0)


def call_soon(callback, *args) -> None:
    """Schedule a plain function on the media loop (fire and forget)."""
    media_loop().call_soon_threadsafe(callback, *args)
