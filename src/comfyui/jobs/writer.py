"""The job store's one commit path: the thread that makes every write to the job database.

An operation is a job write (``insert``, ``start``, ``finish`` with a row dict) or a
``call`` of a function of the connection. Invariants:

* Operations apply in submission order, except that a run of job writes with no ``call``
  between them is one statement per kind: inserts, then starts, then finishes (a job's
  insert precedes its start, its start its finish, so each job's own order holds). Whatever
  waits when a transaction starts goes into it (group commit).
* An operation's result (its value, or the exception that kept it from committing) goes to
  ``on_commit`` with its ``item`` first, then to its submitter: nobody hears of a write that
  did not commit.
* A batch that fails with an operation's own error (a constraint it breaks) is applied again
  one operation per transaction: only that operation's submitter sees the error.
* On a fault of the database (:func:`~comfyui.jobs.database.unavailable_error`) an operation
  nobody waits for (a job's start or finish, a prune) is retried, pausing up to 1 s, until it
  commits; one somebody waits for fails with ``StoreUnavailable`` at once, or after
  ``RETRY_S`` of retries when the connection was lost.
* After a lost connection (the COMMIT may have committed) the next transaction deletes the
  pending rows of inserts whose submitters were refused (``doubtful``), skips retried inserts
  whose rows are there, and reads the counts by status again (``on_commit``'s ``counts``).
* ``IDLE_S`` after the last write, ``idle`` runs (SQLite's checkpoint) with the write lock
  held; again later while it returns False.
"""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa

from ..engine.queue import StoreUnavailable
from .database import connection_lost, unavailable_error
from .schema import FINISHED_CLAUSE, PENDING, jobs

log = logging.getLogger(__name__)

RETRY_S = 5.0  # how long a write someone waits for is retried after a lost connection
IDLE_S = 1.0

_UPDATE = jobs.update().where(jobs.c.prompt_id == sa.bindparam("pid"))
JOB_WRITES = {"insert": jobs.insert(), "start": _UPDATE, "finish": _UPDATE}  # kinds differ in their columns

Op = collections.namedtuple("Op", "kind value item future deadline")
_RETRY = object()  # the result of an operation that goes back to the queue


def count_finished(conn: sa.Connection) -> collections.Counter:
    """Finished jobs by status (from the partial indexes alone)."""
    return collections.Counter(dict(conn.execute(
        sa.select(jobs.c.status, sa.func.count()).where(FINISHED_CLAUSE).group_by(jobs.c.status)).all()))


class Writer:
    def __init__(self, db: sa.Engine, lock: threading.Lock, on_commit: Callable[..., None],
                 idle: Callable[[], bool] | None = None):
        self.db, self.lock, self.on_commit, self.idle = db, lock, on_commit, idle
        self._cond = threading.Condition()  # guards the fields below; submits and commits notify it
        self._ops: list[Op] = []
        self._submitted = self._committed = 0
        self._closed = False
        self._dirty = False  # written since ``idle`` last ran
        self._pause, self._retry_at = 0.0, 0.0  # after a fault: no attempt before _retry_at
        self._lost = False  # a connection was lost: what committed is to be found out
        self.doubtful: set[str] = set()  # ids of refused inserts that may have committed
        self.fault: str | None = None  # the reason of the fault while it lasts
        self._thread = threading.Thread(target=self._run, name="comfyui-jobs-writer", daemon=True)
        self._thread.start()

    def submit(self, kind: str, value: Any, item: Any = None, wait: bool = True) -> concurrent.futures.Future | None:
        """Queue an operation; with ``wait`` a future of its result (after the commit)."""
        future = concurrent.futures.Future() if wait else None
        with self._cond:
            if self._closed:
                raise RuntimeError("the job store is closed")
            self._ops.append(Op(kind, value, item, future, time.monotonic() + RETRY_S))
            self._submitted += 1
            self._cond.notify_all()
        return future

    def run(self, kind: str, value: Any, item: Any = None) -> Any:
        return self.submit(kind, value, item).result()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every operation submitted so far is done; False on timeout."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._committed >= target, timeout)

    def close(self) -> None:
        """Stop after one last try of what is queued (what still fails is logged, not kept)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(30)

    def _next(self) -> tuple[list[Op] | None, bool]:
        """The next batch and whether the writer is closing; None: time for ``idle``."""
        with self._cond:
            idle_at = time.monotonic() + IDLE_S if self._dirty else None
            while True:
                now = time.monotonic()
                if self._ops and (now >= self._retry_at or self._closed):
                    batch, self._ops = self._ops, []
                    return batch, self._closed
                if self._closed:
                    return [], True
                if not self._ops and idle_at is not None and now >= idle_at:
                    return None, False
                wake = self._retry_at if self._ops else idle_at
                self._cond.wait(None if wake is None else wake - now)

    def _run(self) -> None:
        while True:
            batch, closing = self._next()
            if batch is None:
                try:
                    with self.lock:
                        self._dirty = not self.idle()
                except Exception as e:  # noqa: BLE001 - tried again after the next write
                    self._dirty = False
                    log.warning("idle maintenance of the job store failed: %s", e)
                continue
            if not batch:
                return
            results, counts = self._commit(batch)
            if closing:
                results = [StoreUnavailable(self.fault or "the job store closed") if r is _RETRY else r
                           for r in results]
            redo = [op for op, r in zip(batch, results) if r is _RETRY]
            final = [(op, r) for op, r in zip(batch, results) if r is not _RETRY]
            done = [(op.item, r) for op, r in final if op.item is not None]
            if done or counts is not None:
                self.on_commit(done, counts)
            for op, result in final:
                if op.future is None:
                    if isinstance(result, Exception):
                        log.error("the job store could not record a %s", op.kind, exc_info=result)
                elif isinstance(result, Exception):
                    op.future.set_exception(result)
                else:
                    op.future.set_result(result)
            with self._cond:
                if self.doubtful and not redo and not closing:  # a transaction to delete them in
                    redo.append(Op("call", lambda conn: None, None, None, 0.0))
                    self._submitted += 1
                self._ops[:0] = redo
                self._pause = min(max(self._pause * 2, 0.05), 1.0) if redo else 0.0
                self._retry_at = time.monotonic() + self._pause
                self._committed += len(final)
                self._cond.notify_all()

    def _commit(self, batch: list[Op]) -> tuple[list, collections.Counter | None]:
        """Apply ``batch`` in one transaction: the results (a value, an exception or
        ``_RETRY``), and the counts by status when they were read again (else None)."""
        lost = self._lost
        try:
            with self.lock, self.db.begin() as conn:
                skipped = self._reconcile(conn, batch) if lost else set()
                applied = iter(self._apply(conn, [op for i, op in enumerate(batch) if i not in skipped]))
                results = [None if i in skipped else next(applied) for i in range(len(batch))]
                counts = count_finished(conn) if lost else None
        except Exception as e:  # noqa: BLE001 - retried, or handed to its submitter
            return self._failed(batch, e)
        self._dirty = self.idle is not None
        if self.fault is not None:
            log.warning("the job database is back (%s before)", self.fault)
            self.fault = None
        if lost:
            self._lost = False
            self.doubtful.clear()
        return results, counts

    def _failed(self, batch: list[Op], e: Exception) -> tuple[list, collections.Counter | None]:
        if unavailable_error(e) is None:  # an operation's own error: one per transaction finds whose
            if len(batch) == 1:
                return [e], None
            results, counts = [], None
            for op in batch:
                (result,), recount = self._commit([op])
                results.append(result)
                counts = recount if recount is not None else counts
            return results, counts
        lost = connection_lost(e)
        self._lost = self._lost or lost
        if self.fault is None:
            log.error("%s; writes are retried until it is back", unavailable_error(e))
        self.fault = str(unavailable_error(e))
        results, now = [], time.monotonic()
        for op in batch:
            retry = op.future is None or (lost and now < op.deadline)
            if not retry and op.kind == "insert" and self._lost:
                self.doubtful.add(op.value["prompt_id"])
            results.append(_RETRY if retry else unavailable_error(e))
        return results, None

    def _reconcile(self, conn: sa.Connection, batch: list[Op]) -> set[int]:
        """After a lost connection: delete the pending rows of refused inserts; -> the
        positions of the inserts in ``batch`` whose rows committed already."""
        c = jobs.c
        if self.doubtful:
            conn.execute(jobs.delete().where(c.prompt_id.in_(sorted(self.doubtful)), c.status == PENDING))
        inserts = {op.value["prompt_id"]: i for i, op in enumerate(batch) if op.kind == "insert"}
        if not inserts:
            return set()
        rows = conn.execute(sa.select(c.prompt_id, c.created_at).where(c.prompt_id.in_(list(inserts))))
        return {inserts[pid] for pid, created in rows if created == batch[inserts[pid]].value["created_at"]}

    @staticmethod
    def _apply(conn: sa.Connection, ops: list[Op]) -> list:
        results: list = []
        for is_call, group in itertools.groupby(ops, key=lambda op: op.kind == "call"):
            group = list(group)
            if is_call:
                results += [op.value(conn) for op in group]
                continue
            for kind, statement in JOB_WRITES.items():  # inserts, then starts, then finishes
                rows = [op.value for op in group if op.kind == kind]
                if rows:
                    conn.execute(statement, rows)
            results += [None] * len(group)
        return results
