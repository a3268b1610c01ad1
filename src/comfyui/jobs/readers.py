"""The job store's reader threads: reads (and edits that wait for their commit) run here,
never on an event loop.

Invariant: a call with a ``key`` (a read whose result its callers do not change) that finds
a run of an equal key *not started yet* waits for that run instead of making its own; a run
that has started is never joined, so every answer reflects every change made before its call.
(Ten clients asking for the same page after one ``status`` message cost one or two runs.)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any, Callable


class Readers:
    def __init__(self, threads: int = 2):
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="comfyui-jobs-read")
        self._waiting: dict[Any, concurrent.futures.Future] = {}  # key -> a run not started yet
        self._lock = threading.Lock()

    async def call(self, fn: Callable, *args: Any, key: Any = None) -> Any:
        if key is None:
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        with self._lock:
            future = self._waiting.get(key)
            if future is None:
                future = self._waiting[key] = concurrent.futures.Future()
                self._pool.submit(self._run, key, future, fn, args)
        # shielded: a caller that goes away does not cancel the run the others wait for
        return await asyncio.shield(asyncio.wrap_future(future))

    def _run(self, key: Any, future: concurrent.futures.Future, fn: Callable, args: tuple) -> None:
        with self._lock:  # started: later calls make a run of their own
            if self._waiting.get(key) is future:
                del self._waiting[key]
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - the callers' to see
                future.set_exception(e)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
