"""Engine: node registry + caches + prompt queue + history + a worker thread + event listeners.

Every way in (server, embedded client, CLI batch mode) drives prompts through one Engine and
consumes the same event stream.

Thread model: ``start()`` launches one worker thread that owns its own asyncio loop and
executes prompts one at a time. ``submit``/``interrupt``/queue methods are thread-safe.
Listeners are called on the worker thread with ``(event, data, client_id)``; a listener that
lives on another event loop must hop over with ``loop.call_soon_threadsafe``. Events:
status (client_id None = broadcast), execution_start, execution_cached, executing, progress,
progress_state, executed, execution_success, execution_error, execution_interrupted,
"preview_image" {"image": PIL.Image, "format": "JPEG"|"PNG", "max_size": int|None,
"metadata": {node_id, prompt_id, display_node_id, parent_node_id, real_node_id, image_type}},
"progress_text" {"node_id", "prompt_id", "text"}, and custom events nodes send through
``PromptServer.instance.send_sync``.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import copy
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import runtime as runtime_module
from ..jsonutil import dumps
from ..nodes.registry import NodeRegistry
from ..runtime import Runtime
from .caching import OutputCache
from .executor import PromptRun
from .queue import PromptQueue, QueueItem, history_entry
from .runlog import RunLog, log_rejected, log_validation
from .validation import PromptError, validate_prompt, validate_prompt_async

log = logging.getLogger(__name__)
prompt_log = logging.getLogger("comfyui.prompt")

Listener = Callable[[str, dict, "str | None"], None]

# extra_data keys that must never reach history, logs or disk.
SECRET_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")

__all__ = ["Engine", "PromptError", "SubmitResult", "QueueFull", "SECRET_KEYS"]


class QueueFull(Exception):
    """The queue holds --max-queue-size prompts already."""


@dataclass
class SubmitResult:
    prompt_id: str
    number: float
    node_errors: dict = field(default_factory=dict)
    duplicate: bool = False  # the prompt id was already known; nothing new was queued



class _PromptIds:
    """Random (version 4) UUID strings for new prompts, from the OS's random source read 4 KB
    at a time: ``uuid4()`` makes a system call per id, and on the event loop every system call
    lets go of the interpreter lock, which the worker thread may then keep for a while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)  # a forked child must not reuse them

    def _forget(self) -> None:
        self._pool, self._pos = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._pos + 16 > len(self._pool):
                self._pool, self._pos = os.urandom(4096), 0
            raw = self._pool[self._pos:self._pos + 16]
            self._pos += 16
        return str(uuid.UUID(bytes=raw, version=4))


_new_prompt_id = _PromptIds()


class Engine:
    def __init__(self, registry: NodeRegistry | None = None, *, cache: str = "classic", cache_size: int = 0,
                 queue: PromptQueue | None = None, max_queue_size: int = 0, preview_size: int = 512,
                 runtime: Runtime | None = None, panic_when: list[str] | tuple = ()):
        # settings, folders, devices, loaded models, the interrupt flag: the runtime given,
        # else the active one (from_config makes a fresh one per engine)
        self.runtime = runtime if runtime is not None else runtime_module.current()
        self.registry = registry if registry is not None else NodeRegistry.with_builtins()
        self.queue = queue if queue is not None else PromptQueue()
        self.cache = OutputCache(cache, cache_size)
        self.max_queue_size = max_queue_size
        self.preview_size = preview_size
        self.objects: dict = {}
        self._listeners: list[Listener] = []
        self._runlog = RunLog(panic_when)  # ComfyUI's log lines of each run (runlog.py)
        self._number = self.queue.last_number()
        self._number_lock = threading.Lock()
        self._secrets: dict[str, dict] = {}
        self._ids_lock = threading.Lock()
        self._reserved: set[str] = set()  # client-supplied ids being submitted right now
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._futures_lock = threading.Lock()
        # the newest finished entries, so that waiting for a prompt that has just finished
        # (a sync API call, whose job often ends before its wait starts) reads no store:
        # id -> (entry, its size as JSON), at most FINISHED_ENTRIES and FINISHED_BYTES of them
        # (a bigger entry is not kept: its wait reads the store); released with history
        self._finished: collections.OrderedDict[str, tuple[dict, int]] = collections.OrderedDict()
        self._finished_bytes = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._current: tuple[QueueItem, threading.Event] | None = None
        self.current_node: str | None = None  # last node reported executing (for reconnects)
        self._free_request: dict[str, bool] = {}

    @classmethod
    def from_config(cls, config: Any, *, durable: bool = False, custom_nodes: bool = True,
                    registry: NodeRegistry | None = None, runtime: Runtime | None = None,
                    queue: Any = None) -> "Engine":
        """An Engine for a ``comfyui.config.Config`` with a runtime of its own (see
        :mod:`comfyui.runtime`; ``runtime`` if given, made for this config): the config's folders and device flags, built-in nodes plus the
        custom nodes the config allows (imported with that runtime active, so what they
        register at import lands in it), its cache policy, and a durable job store (SQLite in
        the user directory, or ``--database-url``) when ``durable`` or a database URL is given,
        unless a ``queue`` is given (a cluster's processes: :mod:`comfyui.distributed`)."""
        rt = runtime if runtime is not None else Runtime(config)
        if getattr(config, "cache_none", False):
            policy, size = "none", 0
        elif getattr(config, "cache_lru", 0):
            policy, size = "lru", int(config.cache_lru)
        else:
            policy, size = "classic", 0
        with rt.active():
            if queue is None and (durable or getattr(config, "database_url", None)):
                from ..jobs import DurableQueue

                queue = DurableQueue(config.resolved_database_url(),
                                     requeue_interrupted=bool(getattr(config, "requeue_interrupted", False)))
            if registry is None:
                registry = NodeRegistry.with_builtins(api_nodes=not getattr(config, "disable_api_nodes", False))
                if custom_nodes:
                    from ..nodes.custom_nodes import load_custom_nodes

                    # kept for the Manager's import-failure answers (server/routes_manager.py)
                    registry.custom_node_results = load_custom_nodes(
                        registry,
                        disable_all=bool(getattr(config, "disable_all_custom_nodes", False)),
                        whitelist=getattr(config, "whitelist_custom_nodes", None) or None,
                        blacklist=getattr(config, "blacklist_custom_nodes", None) or None)
        return cls(registry, cache=policy, cache_size=size, queue=queue,
                   max_queue_size=int(getattr(config, "max_queue_size", 0) or 0),
                   preview_size=int(getattr(config, "preview_size", 512) or 512), runtime=rt,
                   panic_when=list(getattr(config, "panic_when", None) or ()))

    # ---- listeners ----
    def add_listener(self, fn: Listener) -> None:
        self._listeners = self._listeners + [fn]

    def remove_listener(self, fn: Listener) -> None:
        self._listeners = [f for f in self._listeners if f is not fn]

    def send(self, event: str, data: dict, client_id: str | None = None) -> None:
        self._runlog(event, data, client_id)
        for fn in self._listeners:
            try:
                fn(event, data, client_id)
            except Exception:  # a broken listener must not break execution
                log.exception("event listener failed on %s", event)

    def _status(self) -> None:
        self.send("status", {"status": {"exec_info": {"queue_remaining": self.queue.remaining()}}}, None)

    # ---- lifecycle ----
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._worker, name="comfyui-engine", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self.interrupt()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---- submission ----
    def validate(self, prompt: dict, partial_execution_targets: list | None = None) -> tuple[list[str], dict]:
        with self.runtime.active():  # nodes' INPUT_TYPES list this engine's folders
            return validate_prompt(prompt, self.registry, partial_execution_targets)

    async def validate_async(self, prompt: dict, partial_execution_targets: list | None = None) -> tuple[list[str], dict]:
        with self.runtime.active():
            return await validate_prompt_async(prompt, self.registry, partial_execution_targets)

    def object_info(self) -> dict:
        """``/object_info`` for this engine's nodes (their file lists from its folders)."""
        with self.runtime.active():
            return self.registry.object_info()

    def next_number(self) -> int:
        with self._number_lock:
            self._number += 1
            return self._number

    def submit(self, prompt: dict, **options) -> SubmitResult:
        """Validate and queue a prompt; returns once it is stored. Raises PromptError/QueueFull.
        Options: prompt_id, client_id, extra_data, front, number, partial_execution_targets."""
        try:
            validated = self.validate(prompt, options.pop("partial_execution_targets", None))
        except PromptError as e:
            log_rejected(e.error, e.node_errors)
            raise
        result, ack = self._enqueue(prompt, validated, wait=True, **options)
        self._status()
        return result

    async def submit_async(self, prompt: dict, **options) -> SubmitResult:
        """``submit`` for an event loop: validation runs here (an async VALIDATE_INPUTS is
        awaited on this loop), the store's commit is awaited (a durable store commits
        concurrent submits together on its writer thread)."""
        try:
            validated = await self.validate_async(prompt, options.pop("partial_execution_targets", None))
        except PromptError as e:
            log_rejected(e.error, e.node_errors)
            raise
        if options.get("prompt_id") is not None and self.queue.durable:
            # a client-chosen id is looked up in the store: a read that waits on the disk
            result, ack = await asyncio.to_thread(self._enqueue, prompt, validated, wait=False, **options)
        else:
            result, ack = self._enqueue(prompt, validated, wait=False, **options)
        if ack is not None:  # a future of this loop, or a concurrent one from a thread
            try:
                await asyncio.wrap_future(ack)
            except BaseException:  # not stored: nothing of it stays
                self._secrets.pop(result.prompt_id, None)
                raise
        self._status()
        return result

    def _enqueue(self, prompt: dict, validated: tuple[list[str], dict], *, wait: bool, prompt_id: str | None = None,
                 client_id: str | None = None, extra_data: dict | None = None, front: bool = False,
                 number: float | None = None) -> tuple[SubmitResult, concurrent.futures.Future | None]:
        """Queue a validated prompt: ``validated`` is what validation returned for it."""
        reserved = prompt_id is not None
        if reserved:
            # The id check and the insert must be one step, or two concurrent submits of one
            # id both get in: reserve the id under the lock, then work outside it.
            with self._ids_lock:
                if prompt_id in self._reserved or self.queue.contains(prompt_id):
                    existing = self.queue.find(prompt_id)
                    return SubmitResult(prompt_id, existing.number if existing else -1, {}, duplicate=True), None
                self._reserved.add(prompt_id)
        try:
            if self.max_queue_size and self.queue.remaining() >= self.max_queue_size:
                raise QueueFull(f"the queue already holds {self.max_queue_size} prompts")
            outputs, node_errors = validated
            prompt_id = prompt_id or _new_prompt_id()
            extra = dict(extra_data or {})
            secrets = {k: extra.pop(k) for k in SECRET_KEYS if k in extra}
            if client_id is not None:
                extra["client_id"] = client_id
            client_id = extra.get("client_id")
            if number is None:
                n = self.next_number()
                number = -n if front else n
            if secrets:
                self._secrets[prompt_id] = secrets
            item = QueueItem(number=number, prompt_id=prompt_id, prompt=prompt, extra_data=extra,
                             outputs=outputs, client_id=client_id, created_at=time.time())
            if reserved:  # a client's id may come again once its history is deleted
                self._forget_finished([prompt_id])
            log_validation(outputs, node_errors)  # outputs that will not run, as ComfyUI logs them
            prompt_log.info("got prompt %s", prompt_id)
            # once handed to the queue the id is visible to contains(), so the reservation ends
            ack = self.queue.put(item, wait=wait)
        finally:
            if reserved:
                self._reserved.discard(prompt_id)
        return SubmitResult(prompt_id, number, node_errors), ack

    def wait(self, prompt_id: str) -> concurrent.futures.Future:
        """A future that resolves to the prompt's history entry once it has finished."""
        with self._futures_lock:
            kept = self._finished.get(prompt_id)
            if kept is not None:
                done: concurrent.futures.Future = concurrent.futures.Future()
                done.set_result(kept[0])
                return done
            future = self._futures.get(prompt_id)
            if future is None:
                future = self._futures[prompt_id] = concurrent.futures.Future()
        if self.queue.find(prompt_id) is not None:
            return future  # queued or running: the worker resolves it (no history read)
        entry = self.queue.get_history(prompt_id=prompt_id).get(prompt_id)
        if entry is not None and not future.done():
            self._resolve(prompt_id, entry)
        return future

    FINISHED_ENTRIES = 256
    FINISHED_BYTES = 32 * 1024 * 1024

    def _resolve(self, prompt_id: str, entry: dict) -> None:
        try:
            size = len(dumps(entry))
        except Exception:  # noqa: BLE001 - an entry JSON cannot hold is not kept
            size = self.FINISHED_BYTES + 1
        with self._futures_lock:
            future = self._futures.pop(prompt_id, None)
            old = self._finished.pop(prompt_id, None)
            if old is not None:
                self._finished_bytes -= old[1]
            if size <= self.FINISHED_BYTES // 4:
                self._finished[prompt_id] = (entry, size)
                self._finished_bytes += size
            while self._finished and (len(self._finished) > self.FINISHED_ENTRIES
                                      or self._finished_bytes > self.FINISHED_BYTES):
                self._finished_bytes -= self._finished.popitem(last=False)[1][1]
        if future is not None and not future.done():
            future.set_result(entry)

    def _forget_finished(self, prompt_ids=None) -> None:
        """Drop kept finished entries (all of them: None), as their history goes."""
        with self._futures_lock:
            if prompt_ids is None:
                self._finished.clear()
                self._finished_bytes = 0
                return
            for prompt_id in prompt_ids:
                old = self._finished.pop(prompt_id, None)
                if old is not None:
                    self._finished_bytes -= old[1]

    # ---- control ----
    def interrupt(self, prompt_id: str | None = None) -> bool:
        current = self._current
        if current is None:
            return False
        item, flag = current
        if prompt_id is not None and item.prompt_id != prompt_id:
            return False
        flag.set()
        return True

    def cancel(self, prompt_id: str) -> str | None:
        """Cancel a job: a pending one is removed and recorded as cancelled; a running one
        is interrupted. Returns "pending", "running" or None (unknown or already finished)."""
        with self._ids_lock:  # a resubmission must not slip in between delete and record
            removed = self.queue.delete([prompt_id])
            if removed:
                self._record_cancelled(removed)
        if removed:
            self._status()
            return "pending"
        return "running" if self.interrupt(prompt_id) else None

    def delete_pending(self, prompt_ids) -> None:
        removed = self.queue.delete(prompt_ids)
        if removed:
            self._record_cancelled(removed, keep_history=False)
            self._status()

    def clear_pending(self) -> None:
        removed = self.queue.clear()
        self._record_cancelled(removed, keep_history=False)
        self._status()

    def _record_cancelled(self, items: list[QueueItem], keep_history: bool = True) -> None:
        for item in items:
            self._secrets.pop(item.prompt_id, None)
            entry = history_entry(item, status="cancelled", outputs={}, meta={},
                                  messages=[["execution_interrupted", {"prompt_id": item.prompt_id,
                                                                       "node_id": None, "node_type": None,
                                                                       "executed": [], "timestamp": int(time.time() * 1000)}]],
                                  extra={"cancelled": True})
            if keep_history:
                self.queue.record(item.prompt_id, entry)
            self._resolve(item.prompt_id, entry)

    def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        self._free_request = {"unload_models": unload_models or self._free_request.get("unload_models", False),
                              "free_memory": free_memory or self._free_request.get("free_memory", False)}
        self.queue.wake()
        if self._thread is None:
            self._apply_free()

    def _apply_free(self) -> None:
        request, self._free_request = self._free_request, {}
        if not request:
            return
        if request.get("free_memory"):
            self.cache.clear()
            self.objects.clear()
        self.runtime.free_models(request.get("unload_models", False), request.get("free_memory", False))

    # ---- queue views (thin wrappers so callers need only the engine) ----
    def queue_remaining(self) -> int:
        return self.queue.remaining()

    def get_queue(self) -> tuple[list, list]:
        return self.queue.get_current_queue()

    def get_history(self, max_items: int | None = None, offset: int = -1) -> dict:
        return self.queue.get_history(max_items, offset)

    def get_history_item(self, prompt_id: str) -> dict | None:
        return self.queue.get_history(prompt_id=prompt_id).get(prompt_id)

    def delete_history(self, prompt_ids) -> None:
        prompt_ids = list(prompt_ids)
        self.queue.delete_history(prompt_ids)
        self._forget_finished(prompt_ids)

    def clear_history(self) -> None:
        self.queue.clear_history()
        self._forget_finished()

    @property
    def running_prompt_id(self) -> str | None:
        current = self._current
        return current[0].prompt_id if current else None

    # ---- worker ----
    def _worker(self) -> None:
        self.runtime.activate()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            while not self._stop.is_set():
                if self._free_request:
                    self._apply_free()
                item = self.queue.get(timeout=0.5)
                if item is None:
                    continue
                try:
                    loop.run_until_complete(self.execute_item(item))
                except Exception:  # never let one prompt kill the worker
                    log.exception("engine worker failed on prompt %s", item.prompt_id)
        finally:
            loop.close()

    async def execute_item(self, item: QueueItem) -> dict:
        flag = threading.Event()
        self._current = (item, flag)
        self.runtime.interrupt.clear()
        self._status()
        client_id = item.client_id
        extra = dict(item.extra_data)
        extra.update(self._secrets.pop(item.prompt_id, {}))

        def emit(event: str, data: dict) -> None:
            if event == "executing":
                self.current_node = data.get("node")
            self.send(event, data, client_id)

        def emit_preview(node_id: str, preview: Any, dynprompt) -> None:
            fmt, image, max_size = (tuple(preview) + (None,))[:3] if isinstance(preview, (tuple, list)) else ("JPEG", preview, None)
            self.send("preview_image", {
                "image": image, "format": fmt, "max_size": max_size or self.preview_size,
                "metadata": {"node_id": node_id, "prompt_id": item.prompt_id,
                             "display_node_id": dynprompt.get_display_node_id(node_id),
                             "parent_node_id": dynprompt.get_parent_node_id(node_id),
                             "real_node_id": dynprompt.get_real_node_id(node_id),
                             "image_type": "image/png" if str(fmt).upper() == "PNG" else "image/jpeg"}}, client_id)

        def emit_text(node_id: str, text: str) -> None:
            self.send("progress_text", {"node_id": node_id, "prompt_id": item.prompt_id, "text": text}, client_id)

        run = PromptRun(registry=self.registry, cache=self.cache, objects=self.objects, prompt_id=item.prompt_id,
                        prompt=copy.copy(item.prompt), outputs=item.outputs, extra_data=extra, emit=emit,
                        interrupt_flag=flag, emit_preview=emit_preview, emit_text=emit_text)
        try:
            with self.runtime.active():
                result = await run.run()
        finally:
            self.cache.end_prompt()
            self._prune_objects(item.prompt)
            self._current = None
            self.current_node = None
        entry = history_entry(item, status=result.status, outputs=result.ui_outputs, messages=result.messages,
                              meta=result.meta, timings=result.timings)
        self.queue.task_done(item, entry)
        self._status()
        self.send("executing", {"node": None, "prompt_id": item.prompt_id}, client_id)
        self._resolve(item.prompt_id, entry)
        return entry

    def _prune_objects(self, prompt: dict) -> None:
        if self.cache.policy == "lru":
            return
        for key in [k for k in self.objects if k[0].split(".", 1)[0] not in prompt]:
            del self.objects[key]

