"""The embedded client: ComfyUI as a library, in-process, no server.

    from comfyui import Comfy

    async with Comfy() as client:                      # starts the engine's worker thread
        outputs = await client.queue_prompt(prompt)     # API or UI format
        print(outputs["9"]["images"][0]["abs_path"])

        async for event in client.queue_with_progress(prompt):
            if event.event == "progress": ...
            elif event.event == "preview_image": event.data["image"]  # PIL image
            elif event.event == "result": outputs = event.data["outputs"]
    # leaving the context stops the worker thread and frees models and memory

Settings: ``Comfy(config)`` with a ``comfyui.config.Config``, and/or keyword overrides of
its fields (``Comfy(base_directory="/ws", cache_lru=10)``); without a config the defaults
(and ``COMFYUI_*`` environment variables) apply, exactly like the ``comfyui`` command.
``Comfy(engine=engine)`` drives an existing Engine instead (started if needed, not stopped
or freed on exit).

The client changes no process-wide setting of the process that embeds it (allocator, garbage
collector): see :mod:`comfyui.process` for what the ``comfyui`` command sets and how a process
dedicated to CPU inference opts in.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import Any, AsyncIterator

from .common import (
    TERMINAL_EVENTS, ExecutionError, PreparedPrompt, ProgressEvent, PromptInterrupted,
    error_from_history, prepare_prompt, with_abs_paths,
)

log = logging.getLogger(__name__)

__all__ = ["Comfy", "ProgressTask", "ProgressEvent", "ExecutionError", "PromptInterrupted"]

_DONE = object()


def build_config(config: Any = None, **overrides: Any) -> Any:
    """A Config from ``comfyui.config`` (defaults + environment) with ``overrides`` applied."""
    from .. import config as config_module

    if config is None:
        config = config_module.load_config([])
    if overrides:
        if dataclasses.is_dataclass(config) and getattr(type(config), "__dataclass_params__").frozen:
            config = dataclasses.replace(config, **overrides)
        else:
            for key, value in overrides.items():
                if not hasattr(config, key):
                    raise TypeError(f"unknown configuration option {key!r}")
                setattr(config, key, value)
    return config


def build_engine(config: Any) -> Any:
    """An Engine for ``config``: its paths, built-in nodes plus the custom nodes the config
    allows, its cache policy (an in-memory queue unless ``--database-url`` is given); with
    ``distributed_queue_frontend`` a cluster frontend's engine, whose prompts run on the
    cluster's workers (docs/distributed.md)."""
    from ..engine.engine import Engine

    if getattr(config, "distributed_queue_frontend", False):
        from ..distributed.frontend import FrontendEngine

        return FrontendEngine.for_cluster(config)
    return Engine.from_config(config)


class Comfy:
    """In-process ComfyUI: an :class:`~comfyui.engine.engine.Engine` plus a worker thread."""

    def __init__(self, config: Any = None, *, engine: Any = None, **overrides: Any):
        self._config_arg = config
        self._overrides = overrides
        self._engine = engine
        self._owns_engine = engine is None
        self.config: Any = None
        self._started = False
        self._client_id = f"embedded-{uuid.uuid4().hex}"

    # ---- lifecycle ----------------------------------------------------------------

    @property
    def engine(self) -> Any:
        if self._engine is None:
            raise RuntimeError("Comfy is not started: use 'async with Comfy() as client'")
        return self._engine

    def _start_sync(self) -> None:
        if self._engine is None:
            # the engine gets a runtime of its own (comfyui.runtime): this config's folders,
            # flags and models, shared with no other client in the process
            self.config = build_config(self._config_arg, **self._overrides)
            self._engine = build_engine(self.config)
        try:
            self._engine.start()
        except BaseException:
            if self._owns_engine:
                self._engine = None
            raise
        self._started = True

    def _stop_sync(self) -> None:
        engine = self._engine
        if engine is None or not self._started:
            return
        self._started = False
        try:
            if self._owns_engine:  # an engine handed in by the caller stays theirs to stop
                engine.stop()
        finally:
            if self._owns_engine:
                try:
                    engine.free(unload_models=True, free_memory=True)
                except Exception:  # freeing must never hide the real exit reason
                    log.exception("freeing the engine failed")
                self._engine = None
                _release_accelerator_memory()

    async def start(self) -> "Comfy":
        if not self._started:
            await asyncio.to_thread(self._start_sync)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop_sync)

    async def __aenter__(self) -> "Comfy":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---- prompts -------------------------------------------------------------------

    def prepare(self, prompt: Any, extra_data: dict | None = None) -> PreparedPrompt:
        """Normalize an API/UI prompt (UI workflows are converted with this engine's nodes)."""
        return prepare_prompt(prompt, self.engine.object_info, extra_data)

    async def _submit(self, prepared: PreparedPrompt, prompt_id: str | None, client_id: str | None,
                      partial_execution_targets: list[str] | None) -> str:
        """Queue through the submission policy every way in shares; -> the prompt id."""
        from ..jobs.submission import PromptRequest, PromptSubmitter

        request = PromptRequest(prepared.prompt, prompt_id=prompt_id, client_id=client_id or self._client_id,
                                extra_data=prepared.extra_data,
                                partial_execution_targets=partial_execution_targets)
        return (await PromptSubmitter(self.engine).submit(request)).prompt_id

    async def queue_prompt(self, prompt: Any, *, extra_data: dict | None = None, prompt_id: str | None = None,
                           client_id: str | None = None, partial_execution_targets: list[str] | None = None) -> dict:
        """Run ``prompt`` to completion and return its outputs (history ``outputs`` with an
        ``abs_path`` on every file). Raises ``PromptRejected`` (a ``PromptError``: ComfyUI's
        error body and an HTTP status) when the prompt is refused,
        :class:`ExecutionError` when a node fails, :class:`PromptInterrupted` when interrupted."""
        entry = await self.queue_prompt_history(prompt, extra_data=extra_data, prompt_id=prompt_id,
                                                client_id=client_id,
                                                partial_execution_targets=partial_execution_targets)
        return with_abs_paths(entry.get("outputs") or {}, self.engine.runtime.folders.get_directory_by_type)

    async def queue_prompt_history(self, prompt: Any, *, extra_data: dict | None = None, prompt_id: str | None = None,
                                   client_id: str | None = None,
                                   partial_execution_targets: list[str] | None = None) -> dict:
        """Like :meth:`queue_prompt` but returns the whole history entry (raw outputs)."""
        prepared = self.prepare(prompt, extra_data)
        prompt_id = await self._submit(prepared, prompt_id, client_id, partial_execution_targets)
        entry = await asyncio.wrap_future(await self.engine.queue.call(self.engine.wait, prompt_id))
        error = error_from_history(prompt_id, entry)
        if error is not None:
            raise error
        return entry

    def queue_with_progress(self, prompt: Any, *, extra_data: dict | None = None, prompt_id: str | None = None,
                            partial_execution_targets: list[str] | None = None) -> "ProgressTask":
        """Queue ``prompt`` and stream its events: ``async for event in task`` (or
        ``task.progress()``) yields :class:`ProgressEvent` s ending with ``result``;
        ``await task`` (or ``task.get()``) gives the outputs."""
        return ProgressTask(self, prompt, extra_data, prompt_id, partial_execution_targets)

    # ---- queue control ------------------------------------------------------------------

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.engine.interrupt(prompt_id)

    @property
    def registry(self) -> Any:
        return self.engine.registry

    def object_info(self) -> dict:
        return self.engine.object_info()


class ProgressTask:
    """A queued prompt whose events can be consumed while it runs (see
    :meth:`Comfy.queue_with_progress`). Submission happens when iteration (or ``get``) starts."""

    def __init__(self, client: Comfy, prompt: Any, extra_data: dict | None, prompt_id: str | None,
                 targets: list[str] | None):
        self._client = client
        self._prompt = prompt
        self._extra = extra_data
        self.prompt_id = prompt_id or str(uuid.uuid4())
        self._targets = targets
        self._client_id = f"progress-{uuid.uuid4().hex}"
        self._iterating = False
        self._result: asyncio.Future | None = None
        self.outputs: dict | None = None

    def __aiter__(self) -> AsyncIterator[ProgressEvent]:
        return self.progress()

    def __await__(self):
        return self.get().__await__()

    async def get(self) -> dict:
        """The outputs (absolute paths), consuming the events if nobody iterates them."""
        if self._result is None:
            async for _ in self.progress():
                pass
        assert self._result is not None
        return await self._result

    async def progress(self) -> AsyncIterator[ProgressEvent]:
        if self._iterating or self._result is not None:
            raise RuntimeError("the events of a ProgressTask can be consumed only once")
        self._iterating = True
        loop = asyncio.get_running_loop()
        self._result = loop.create_future()
        queue: asyncio.Queue = asyncio.Queue()
        engine = self._client.engine
        prompt_id, client_id = self.prompt_id, self._client_id

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop closed: nobody listens any more
                pass

        def listener(event: str, data: Any, cid: str | None) -> None:
            if _belongs_to(event, data, cid, prompt_id, client_id):
                put(ProgressEvent(event, data, cid))

        engine.add_listener(listener)
        try:
            prepared = self._client.prepare(self._prompt, self._extra)
            await self._client._submit(prepared, prompt_id, client_id, self._targets)
            future = await engine.queue.call(engine.wait, prompt_id)
            future.add_done_callback(lambda _f: put(_DONE))
            terminal_seen = False
            while True:
                if terminal_seen and future.done():
                    # drain what is already queued, then stop
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                else:
                    try:
                        item = await (asyncio.wait_for(queue.get(), 0.5) if future.done() else queue.get())
                    except asyncio.TimeoutError:
                        break  # finished without a terminal event
                if item is _DONE:
                    continue
                if item.event in TERMINAL_EVENTS:
                    terminal_seen = True
                yield item
            entry = await asyncio.wrap_future(future)
            error = error_from_history(prompt_id, entry)
            if error is not None:
                self._result.set_exception(error)
                self._result.exception()  # mark retrieved; re-raised below and by get()
                raise error
            self.outputs = with_abs_paths(entry.get("outputs") or {}, self._client.engine.runtime.folders.get_directory_by_type)
            self._result.set_result(self.outputs)
            yield ProgressEvent("result", {"prompt_id": prompt_id, "outputs": self.outputs}, client_id)
        except BaseException as exc:
            if not self._result.done():
                if isinstance(exc, Exception):
                    self._result.set_exception(exc)
                    self._result.exception()
                else:
                    self._result.cancel()
            raise
        finally:
            engine.remove_listener(listener)


def _belongs_to(event: str, data: Any, cid: str | None, prompt_id: str, client_id: str) -> bool:
    if cid == client_id:
        return True
    if isinstance(data, dict):
        if data.get("prompt_id") == prompt_id:
            return True
        meta = data.get("metadata")
        if isinstance(meta, dict) and meta.get("prompt_id") == prompt_id:
            return True
    return False


def _release_accelerator_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")  # only if something already imported it
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
