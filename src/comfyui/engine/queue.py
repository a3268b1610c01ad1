"""Prompt queue and history (in memory).

The queue orders by ``number`` (lower first; ``front=True`` submissions get negative
numbers, as in ComfyUI). History keeps the newest ``max_history`` entries in ComfyUI's
shape, and their Jobs API items in ``create_time`` order, so a page of jobs costs the page.
A durable store implements the same methods (see ``comfyui.jobs``).

From an event loop, ``await queue.call(fn, *args)`` runs a read or an edit of the store where
it does not hold up the loop (here in place: everything is in memory, and a page costs the
page; a durable store runs it on its own threads).
"""
from __future__ import annotations

import bisect
import collections
import concurrent.futures
import heapq
import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..jobs.listing import create_time_of, finished_job, finished_status, job_detail, sort_key, workflow_id_of

MAX_HISTORY = 10000


class StoreUnavailable(Exception):
    """The job store cannot take a change now (its database connection is lost and not
    regained in time, the disk is full, the database is read-only): nothing of the change was
    stored. The server answers 503 with the reason; the store recovers by itself."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(order=True)
class QueueItem:
    number: float
    prompt_id: str = field(compare=False)
    prompt: dict = field(compare=False)
    extra_data: dict = field(compare=False, default_factory=dict)  # secrets already removed
    outputs: list = field(compare=False, default_factory=list)
    client_id: str | None = field(compare=False, default=None)
    created_at: float = field(compare=False, default=0.0)
    # (create_time, number): where the Jobs API lists it (comfyui.jobs.listing)
    list_key: tuple = field(compare=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.list_key = (create_time_of(self.extra_data, self.created_at), self.number)

    def as_list(self) -> list:
        """The queue/history item shape of ComfyUI: [number, prompt_id, prompt, extra_data, outputs]."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    durable = False  # True for stores that commit every change (comfyui.jobs.DurableQueue)

    def __init__(self, max_history: int = MAX_HISTORY):
        self._cond = threading.Condition()
        self._heap: list[QueueItem] = []
        self._running: dict[str, QueueItem] = {}
        self._history: OrderedDict[str, dict] = OrderedDict()
        self._listed: dict[str, dict] = {}  # prompt_id -> Jobs API item of a finished job
        self._created: list[tuple] = []  # (create_time, number, prompt_id) of history, ascending
        self._counts: collections.Counter = collections.Counter()  # finished jobs per status
        self._max_history = max_history
        self._woken = False

    # ---- queue ----
    def put(self, item: QueueItem, wait: bool = True) -> concurrent.futures.Future | None:
        """Queue ``item``. A durable queue with ``wait=False`` returns a future that resolves
        once the item is stored (it is runnable from then on); None means accepted already."""
        self._push([item])

    def _push(self, items: list[QueueItem]) -> None:
        """Make ``items`` runnable, with one wake-up of the worker."""
        with self._cond:
            for item in items:
                heapq.heappush(self._heap, item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> QueueItem | None:
        """Next item (now running), or None on timeout or ``wake()``."""
        with self._cond:
            if not self._heap and not self._woken:
                self._cond.wait(timeout)
            self._woken = False
            if not self._heap:
                return None
            item = heapq.heappop(self._heap)
            self._running[item.prompt_id] = item
            return item

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def task_done(self, item: QueueItem, history_entry: dict) -> None:
        with self._cond:
            self._running.pop(item.prompt_id, None)
            self._add_history(item.prompt_id, history_entry)
            self._cond.notify_all()

    def _add_history(self, prompt_id: str, entry: dict) -> None:
        """(The caller holds ``_cond``.)"""
        self._forget(prompt_id)
        self._history[prompt_id] = entry
        number, _pid, _prompt, extra = entry["prompt"][:4]
        extra = extra if isinstance(extra, dict) else {}
        job = self._listed[prompt_id] = finished_job(prompt_id, number, extra.get("create_time"),
                                                     workflow_id_of(extra), entry)
        bisect.insort(self._created, (job["create_time"], number, prompt_id))
        self._counts[job["status"]] += 1
        while len(self._history) > self._max_history:
            self._forget(next(iter(self._history)))

    def _forget(self, prompt_id: str) -> None:
        """(The caller holds ``_cond``.)"""
        if self._history.pop(prompt_id, None) is None:
            return
        job = self._listed.pop(prompt_id)
        self._counts[job["status"]] -= 1
        key = (job["create_time"], job["priority"], prompt_id)
        del self._created[bisect.bisect_left(self._created, key)]

    def remaining(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._running)

    def get_current_queue(self) -> tuple[list, list]:
        with self._cond:
            running = [i.as_list() for i in self._running.values()]
            pending = [i.as_list() for i in sorted(self._heap)]
            return running, pending

    def queued_items(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """Running and pending items, the pending ones in no particular order (no sort)."""
        with self._cond:
            return list(self._running.values()), list(self._heap)

    def pending_items(self) -> list[QueueItem]:
        with self._cond:
            return sorted(self._heap)

    def running_items(self) -> list[QueueItem]:
        with self._cond:
            return list(self._running.values())

    def delete(self, prompt_ids) -> list[QueueItem]:
        ids = set(prompt_ids)
        with self._cond:
            removed = [i for i in self._heap if i.prompt_id in ids]
            if removed:
                self._heap = [i for i in self._heap if i.prompt_id not in ids]
                heapq.heapify(self._heap)
            return removed

    def clear(self) -> list[QueueItem]:
        with self._cond:
            removed, self._heap = self._heap, []
            return removed

    def contains(self, prompt_id: str) -> bool:
        with self._cond:
            return (prompt_id in self._running or prompt_id in self._history
                    or any(i.prompt_id == prompt_id for i in self._heap))

    def find(self, prompt_id: str) -> QueueItem | None:
        with self._cond:
            if prompt_id in self._running:
                return self._running[prompt_id]
            return next((i for i in self._heap if i.prompt_id == prompt_id), None)

    # ---- reads ----
    async def call(self, fn: Callable, *args: Any, key: Any = None) -> Any:
        """``fn(*args)``, a read or edit of this store, from an event loop. (``key``: reads
        with an equal key may share one run; here each runs in place.)"""
        return fn(*args)

    def jobs_page(self, statuses, sort_by: str, descending: bool, offset: int, limit: int | None,
                  workflow_id: str | None = None) -> tuple[list[tuple[tuple, dict]], int]:
        """One page of finished jobs with ``statuses`` as Jobs API items, each with its sort
        key (``comfyui.jobs.listing.sort_key``), and how many there are."""
        key = sort_key(sort_by)
        with self._cond:
            if sort_by == "created_at":
                ordered = (self._listed[k[2]] for k in (reversed(self._created) if descending else self._created))
            else:
                ordered = iter(sorted(self._listed.values(), key=key, reverse=descending))
            wanted = [j for j in self._listed.values() if j["workflow_id"] == workflow_id] if workflow_id else None
            matching = (j for j in ordered if j["status"] in statuses
                        and (workflow_id is None or j["workflow_id"] == workflow_id))
            page = list(itertools.islice(matching, offset, None if limit is None else offset + limit))
            total = (sum(self._counts[s] for s in statuses) if wanted is None
                     else sum(1 for j in wanted if j["status"] in statuses))
        return [(key(j), dict(j)) for j in page], total

    def finished_job(self, prompt_id: str) -> dict | None:
        """``GET /api/jobs/{id}`` for a finished job, or None."""
        with self._cond:
            entry, job = self._history.get(prompt_id), self._listed.get(prompt_id)
        if entry is None:
            return None
        return job_detail(dict(job), entry["prompt"][2], entry["prompt"][3], entry)

    # ---- history ----
    def get_history(self, max_items: int | None = None, offset: int = -1, prompt_id: str | None = None) -> dict:
        with self._cond:
            if prompt_id is not None:
                entry = self._history.get(prompt_id)
                return {prompt_id: entry} if entry is not None else {}
            items = list(self._history.items())
            if offset < 0 and max_items is not None:
                offset = max(len(items) - max_items, 0)
            offset = max(offset, 0)
            end = None if max_items is None else offset + max_items
            return dict(items[offset:end])

    def delete_history(self, prompt_ids) -> None:
        with self._cond:
            for prompt_id in prompt_ids:
                self._forget(prompt_id)

    def clear_history(self) -> None:
        with self._cond:
            self._history.clear()
            self._listed.clear()
            self._created.clear()
            self._counts.clear()

    def history_len(self) -> int:
        with self._cond:
            return len(self._history)

    def last_number(self) -> int:
        """The highest queue number ever handed out (a durable store remembers it)."""
        return 0

    def job_status(self, prompt_id: str) -> str | None:
        """pending, in_progress, completed, failed, cancelled, or None when unknown."""
        with self._cond:
            if prompt_id in self._running:
                return "in_progress"
            if any(i.prompt_id == prompt_id for i in self._heap):
                return "pending"
            entry = self._history.get(prompt_id)
        return None if entry is None else finished_status(entry)

    def record(self, prompt_id: str, entry: dict) -> None:
        """Put an entry into history without it having run (e.g. a cancelled pending job)."""
        with self._cond:
            self._add_history(prompt_id, entry)


def history_entry(item: QueueItem, *, status: str, outputs: dict, messages: list, meta: dict,
                  timings: dict | None = None, error: dict | None = None, extra: dict[str, Any] | None = None) -> dict:
    entry = {
        "prompt": item.as_list(),
        "outputs": outputs,
        "status": {"status_str": "success" if status == "success" else "error",
                   "completed": status == "success", "messages": messages},
        "meta": meta,
    }
    if timings:
        entry["timings"] = timings
    if extra:
        entry.update(extra)
    return entry
