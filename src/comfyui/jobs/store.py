"""DurableQueue: the prompt queue and its history in a database (SQLite or PostgreSQL).

Invariants:

* **Acknowledged means committed.** ``put`` returns (or the future of ``put(wait=False)``
  resolves) only once the job's row has committed; only then may the worker take the job.
  A crash (kill -9) never loses an acknowledged job.
* **One commit path.** Every write goes through the store's :class:`~comfyui.jobs.writer.Writer`,
  in submission order.
* **Reads see every earlier change and never wait for the disk.** A job whose insert or finish
  is not committed yet is in memory (queued, running, or finishing with its history entry)
  and looked up there first. (Only the whole ``/history``, its length and ``last_number``
  wait for the writes submitted before them.)
* **Reads are off the event loop and paginated in the database.** :meth:`call` runs a read (or
  an edit that waits for its commit) on the store's reader threads (:mod:`comfyui.jobs.readers`);
  pages come from the partial indexes of :mod:`comfyui.jobs.schema`: a page costs the page.
* **Counts of committed finished jobs by status are in memory** (``_counts``): +1 when a
  finish commits, and read again from the index in the transaction of every other change of
  history (``record``, deletions, prune) and after a lost connection. With the finishing jobs
  they are the Jobs API's totals.
* **Faults of the database answer, never corrupt** (see the writer): a write that cannot be
  stored now fails for its submitter with ``StoreUnavailable`` (503) and leaves nothing
  stored; a job's start and finish are retried until they commit; a database that cannot be
  written at start-up refuses to start. SQLite's log is truncated when the writer is idle
  and at close (:mod:`comfyui.jobs.database`).
* History keeps at most ``max_history`` jobs: once 10 % (at least 100) over, the oldest go.
* On start-up pending jobs are queued again; one that was in progress is marked failed
  (interrupted), or queued again with ``requeue_interrupted``. A job that finished just
  before a crash, its update not yet committed, counts as in progress then.
* Secrets were removed from extra_data by the engine before they reach this store.
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import functools
import logging
import threading
import time
import weakref
from typing import Any, Callable

import sqlalchemy as sa

from ..engine.queue import MAX_HISTORY, PromptQueue, QueueItem, StoreUnavailable
from ..redact import redact_url
from .database import check_writable, checkpoint, describe, make_engine, unavailable_error
from .listing import create_time_of, finished_job, finished_status, job_detail, merge_page, workflow_id_of
from .readers import Readers
from .schema import FAILED, FINISHED, FINISHED_CLAUSE, IN_PROGRESS, PENDING, jobs, migrate
from .writer import RETRY_S, Writer, count_finished

log = logging.getLogger(__name__)

INTERRUPTED_REASON = "The server stopped while this job was running (restart or crash)."
_EDIT, _PRUNE = object(), object()  # items of history edits: their result is the counts after them

__all__ = ["DurableQueue", "make_engine"]


def _read(fn: Callable) -> Callable:
    """A read of the database: run again once when its pooled connection turned out dropped;
    a database that cannot be read raises :class:`StoreUnavailable`."""
    @functools.wraps(fn)
    def read(*args: Any, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            try:
                return fn(*args, **kwargs)
            except sa.exc.DBAPIError as e:
                if attempt == 1 and e.connection_invalidated:
                    continue
                error = unavailable_error(e)
                if error is None:
                    raise
                raise error from e

    return read


class DurableQueue(PromptQueue):
    durable = True
    LISTED = 4096  # finished jobs whose Jobs API items are kept (a finished row does not change)

    def __init__(self, url: str, *, requeue_interrupted: bool = False, max_history: int = MAX_HISTORY):
        super().__init__(max_history)
        self.db = make_engine(url)
        try:
            migrate(self.db)
            check_writable(self.db)
        except sa.exc.DBAPIError as e:  # before serving: a store that cannot write refuses to start
            self.db.dispose()
            raise StoreUnavailable(f"the job database {redact_url(url)} cannot be written: {describe(e)}") from e
        self.write_lock = threading.Lock()  # held while a transaction writes (job_files writers share it)
        self.recovered = self._recover(requeue_interrupted)
        # /history lists what this process finished, as ComfyUI's in-memory history does; older
        # jobs stay readable by id (/history/{id}) and through the Jobs API.
        self.session_start = time.time()
        self._inserting: set[str] = set()  # ids of submitted jobs whose insert has not committed yet
        self._started: dict[str, float] = {}  # running job -> when it started
        # finished jobs whose finish has not committed yet: id -> (sort key, list item, entry)
        self._finishing: dict[str, tuple[tuple, dict, dict]] = {}
        self._listed: dict[str, dict] = {}  # committed finished jobs' list items, oldest first
        with self.db.connect() as conn:
            self._counts = count_finished(conn)
        self._pruning = False  # a prune is submitted and not committed yet
        self._writer = Writer(self.db, self.write_lock, self._committed,
                              idle=functools.partial(checkpoint, self.db) if self.db.dialect.name == "sqlite" else None)
        self._readers = Readers()
        atexit.register(_flush_at_exit, weakref.ref(self._writer))  # the last updates reach the disk

    def _recover(self, requeue: bool) -> dict:
        now = time.time()
        with self.db.begin() as conn:
            rows = conn.execute(sa.select(jobs).where(jobs.c.status.in_((PENDING, IN_PROGRESS)))
                                .order_by(jobs.c.seq)).mappings().all()
            interrupted = [r for r in rows if r["status"] == IN_PROGRESS]
            for row in interrupted:
                if requeue:
                    values: dict = dict(status=PENDING, started_at=None)
                else:
                    error = {"prompt_id": row["prompt_id"], "node_id": None, "node_type": None, "executed": [],
                             "exception_message": INTERRUPTED_REASON, "exception_type": "ServerRestart",
                             "traceback": [], "current_inputs": {}, "current_outputs": [], "timestamp": int(now * 1000)}
                    history = {"outputs": {}, "meta": {}, "status": {
                        "status_str": "error", "completed": False, "messages": [["execution_error", error]]}}
                    values = dict(status=FAILED, ended_at=now, history=history, error=error)
                conn.execute(jobs.update().where(jobs.c.seq == row["seq"]).values(**values))
        pending = [r for r in rows if r["status"] == PENDING or requeue]
        for row in pending:
            PromptQueue.put(self, QueueItem(
                number=row["number"], prompt_id=row["prompt_id"], prompt=row["prompt"],
                extra_data=row["extra_data"] or {}, outputs=row["outputs_to_execute"] or [],
                client_id=row["client_id"], created_at=row["created_at"]))
        return {"requeued" if requeue else "failed": [r["prompt_id"] for r in interrupted],
                "pending": [r["prompt_id"] for r in sorted(pending, key=lambda r: r["number"])]}

    # ---- queue (write-through) ----
    def put(self, item: QueueItem, wait: bool = True) -> concurrent.futures.Future | None:
        created = item.created_at or time.time()
        row = dict(prompt_id=item.prompt_id, number=item.number, status=PENDING, client_id=item.client_id,
                   prompt=item.prompt, extra_data=item.extra_data, outputs_to_execute=item.outputs,
                   created_at=created, create_time=create_time_of(item.extra_data, created),
                   workflow_id=workflow_id_of(item.extra_data))
        with self._cond:
            self._inserting.add(item.prompt_id)
        future = self._writer.submit("insert", row, item)  # runnable once committed (_committed)
        if wait:
            future.result()
            return None
        return future

    def get(self, timeout: float | None = None) -> QueueItem | None:
        item = super().get(timeout)
        if item is not None:
            started = self._started[item.prompt_id] = time.time()
            self._writer.submit("start", {"pid": item.prompt_id, "status": IN_PROGRESS, "started_at": started},
                                wait=False)
        return item

    def task_done(self, item: QueueItem, history_entry: dict) -> None:
        error = next((m[1] for m in history_entry.get("status", {}).get("messages", [])
                      if m[0] == "execution_error"), None)
        status, ended = finished_status(history_entry), time.time()
        job = finished_job(item.prompt_id, _number(item.number), item.list_key[0], workflow_id_of(item.extra_data),
                           history_entry)
        with self._cond:
            started = self._started.pop(item.prompt_id, None)
            duration = ended - started if started is not None else -1
            self._finishing[item.prompt_id] = ((duration, *item.list_key), job, history_entry)
            self._running.pop(item.prompt_id, None)
            self._cond.notify_all()
        self._writer.submit("finish", {"pid": item.prompt_id, "status": status, "ended_at": ended,
                                       "history": _stored(history_entry), "error": error},
                            item=item.prompt_id, wait=False)
        self._prune_if_over()

    def _committed(self, done: list[tuple[Any, Any]], counts: collections.Counter | None = None) -> None:
        """The writer's report, each item with its result (an exception: not committed): a
        new job's insert (its QueueItem), a job's finish (its id), or an edit of history
        (``_EDIT``, ``_PRUNE``: the counts after it). ``counts``: read again at the end of
        the transaction (after a lost connection)."""
        runnable = []
        with self._cond:
            for item, result in done:
                ok = not isinstance(result, Exception)
                if isinstance(item, QueueItem):
                    self._inserting.discard(item.prompt_id)
                    if ok:
                        runnable.append(item)
                elif item is _EDIT or item is _PRUNE:
                    if item is _PRUNE:
                        self._pruning = False
                    if ok:
                        self._counts = result
                else:  # a finish: the history row is written (or, failing, logged): reads find it there
                    finished = self._finishing.pop(item, None)
                    if ok and finished is not None:
                        self._counts[finished[1]["status"]] += 1
                        self._keep_listed(item, finished[1])
            if counts is not None:
                self._counts = counts
        if runnable:
            self._push(runnable)

    def delete(self, prompt_ids) -> list[QueueItem]:
        return self._delete_rows(super().delete(prompt_ids))

    def clear(self) -> list[QueueItem]:
        return self._delete_rows(super().clear())

    def _delete_rows(self, removed: list[QueueItem]) -> list[QueueItem]:
        ids = [i.prompt_id for i in removed]
        if ids:
            self._writer.run("call", lambda conn: conn.execute(jobs.delete().where(jobs.c.prompt_id.in_(ids))))
        return removed

    # ---- history edits (each waits for its commit) ----
    def _edit(self, write: Callable[[sa.Connection], Any], item: Any = _EDIT, wait: bool = True) -> None:
        def edit(conn: sa.Connection):
            write(conn)
            return count_finished(conn)

        if wait:
            self._writer.run("call", edit, item)
        else:
            self._writer.submit("call", edit, item, wait=False)

    def record(self, prompt_id: str, entry: dict) -> None:
        number, _pid, prompt, extra, outputs = entry["prompt"][:5]
        now = time.time()
        values = dict(status=finished_status(entry), ended_at=now, history=_stored(entry))

        def write(conn: sa.Connection) -> None:
            if not conn.execute(jobs.update().where(jobs.c.prompt_id == prompt_id).values(**values)).rowcount:
                conn.execute(jobs.insert().values(
                    prompt_id=prompt_id, number=number, client_id=(extra or {}).get("client_id"), prompt=prompt,
                    extra_data=extra or {}, outputs_to_execute=outputs or [], created_at=now,
                    create_time=create_time_of(extra, now), workflow_id=workflow_id_of(extra), **values))

        self._edit(write)
        with self._cond:
            self._listed.pop(prompt_id, None)
        self._prune_if_over()

    def delete_history(self, prompt_ids) -> None:
        ids = list(prompt_ids)
        if ids:
            self._edit(lambda conn: conn.execute(jobs.delete().where(jobs.c.prompt_id.in_(ids), FINISHED_CLAUSE)))

    def clear_history(self) -> None:
        self._edit(lambda conn: conn.execute(jobs.delete().where(FINISHED_CLAUSE)))

    def _prune_if_over(self) -> None:
        """Delete the finished jobs beyond the newest ``max_history`` (by end time), once
        history is 10 % (at least 100) over it."""
        keep = self._max_history
        with self._cond:
            size = sum(self._counts.values()) + len(self._finishing)
            if self._pruning or size < keep + max(100, keep // 10):
                return
            self._pruning = True

        def prune(conn: sa.Connection) -> None:
            c = jobs.c
            boundary = conn.execute(sa.select(c.ended_at, c.seq).where(FINISHED_CLAUSE)
                                    .order_by(c.ended_at.desc(), c.seq.desc()).offset(keep).limit(1)).first()
            if boundary is not None:
                ended, seq = boundary
                conn.execute(jobs.delete().where(FINISHED_CLAUSE, (c.ended_at < ended)
                                                 | ((c.ended_at == ended) & (c.seq <= seq))))

        self._edit(prune, _PRUNE, wait=False)

    # ---- reads (memory first: the jobs whose writes are not committed yet are there) ----
    async def call(self, fn: Callable, *args: Any, key: Any = None) -> Any:
        """Run ``fn(*args)`` (a read, or an edit that waits for its commit) on the store's
        reader threads, never on the calling event loop; equal reads (``key``) waiting for
        a thread share one run."""
        return await self._readers.call(fn, *args, key=key)

    def _connection(self) -> sa.Connection:
        """A connection to read with; on PostgreSQL outside a transaction (a read is one round trip)."""
        conn = self.db.connect()
        return conn.execution_options(isolation_level="AUTOCOMMIT") if self.db.dialect.name == "postgresql" else conn

    def _flush(self) -> None:
        """Wait for the writes submitted so far (StoreUnavailable while the database is down)."""
        if not self._writer.flush(timeout=RETRY_S):
            raise StoreUnavailable(self._writer.fault or "the job database does not answer")

    @_read
    def last_number(self) -> int:
        self._flush()
        with self._connection() as conn:
            return int(conn.execute(sa.select(sa.func.max(sa.func.abs(jobs.c.number)))).scalar() or 0)

    def contains(self, prompt_id: str) -> bool:
        return self.job_status(prompt_id) is not None

    @_read
    def job_status(self, prompt_id: str) -> str | None:
        if prompt_id in self._writer.doubtful:  # its submitter got a 503: not a job
            return None
        with self._cond:
            if prompt_id in self._finishing:
                return self._finishing[prompt_id][1]["status"]
            if prompt_id in self._running:
                return IN_PROGRESS
            if prompt_id in self._inserting or any(i.prompt_id == prompt_id for i in self._heap):
                return PENDING
        with self._connection() as conn:
            return conn.execute(sa.select(jobs.c.status).where(jobs.c.prompt_id == prompt_id)).scalar()

    def history_len(self) -> int:
        self._flush()  # (a prune submitted before included)
        with self._cond:
            return sum(self._counts.values()) + len(self._finishing)

    @_read
    def get_history(self, max_items: int | None = None, offset: int = -1, prompt_id: str | None = None) -> dict:
        c = jobs.c
        query = sa.select(c.prompt_id, c.number, c.prompt, c.extra_data, c.outputs_to_execute, c.history).where(
            FINISHED_CLAUSE, c.history.is_not(None))
        if prompt_id is not None:
            finishing = self._finishing.get(prompt_id)
            if finishing is not None:
                return {prompt_id: finishing[2]}
            query = query.where(c.prompt_id == prompt_id)
        else:
            self._flush()
            query = query.where(c.ended_at >= self.session_start)
            if offset < 0 and max_items is not None:  # the newest max_items, oldest first
                newest = (query.add_columns(c.ended_at, c.seq).order_by(c.ended_at.desc(), c.seq.desc())
                          .limit(max_items).subquery())
                query = sa.select(newest).order_by(newest.c.ended_at, newest.c.seq)
            else:
                query = query.order_by(c.ended_at, c.seq).offset(max(offset, 0)).limit(max_items)
        with self._connection() as conn:
            rows = conn.execute(query).all()
        return {row.prompt_id: _history_entry(row) for row in rows}

    @_read
    def jobs_page(self, statuses, sort_by: str, descending: bool, offset: int, limit: int | None,
                  workflow_id: str | None = None) -> tuple[list[tuple[tuple, dict]], int]:
        """One page of finished jobs with ``statuses`` as Jobs API items, each with its sort
        key (see :mod:`comfyui.jobs.listing`), and how many there are: those whose finish is
        still being written from memory, the others a page at a time from the database."""
        with self._cond:  # before the database is read: a job committed meanwhile is left out there
            finishing = list(self._finishing.values())
            counted = sum(self._counts[s] for s in statuses)  # the committed ones
        wanted = [((key if sort_by == "execution_duration" else key[1:]), job) for key, job, _e in finishing
                  if job["status"] in statuses and (workflow_id is None or job["workflow_id"] == workflow_id)]
        c = jobs.c
        where = [FINISHED_CLAUSE]
        if not set(FINISHED) <= set(statuses):  # (all of them: the planner then always takes ix_jobs_created)
            where.append(c.status.in_(sorted(statuses)))
        if workflow_id is not None:
            where.append(c.workflow_id == workflow_id)
        if finishing:
            where.append(c.prompt_id.not_in([job["id"] for _k, job, _e in finishing]))
        key = [c.create_time, c.number]
        if sort_by == "execution_duration":
            key.insert(0, sa.func.coalesce(c.ended_at - c.started_at, -1))
        page = sa.select(c.prompt_id, *key).where(*where).order_by(*(k.desc() if descending else k for k in key))

        def written(offset: int, limit: int | None) -> tuple[list, int]:
            with self._connection() as conn:
                rows = conn.execute(page.offset(offset).limit(limit)).all()
                total = counted if workflow_id is None else conn.execute(
                    sa.select(sa.func.count()).select_from(jobs).where(*where)).scalar()
                listed = self._listed_jobs(conn, [row.prompt_id for row in rows])
            # (a job deleted between the two queries is left out)
            return [(tuple(row[1:]), listed[row.prompt_id]) for row in rows if row.prompt_id in listed], total

        return merge_page(wanted, written, descending, offset, limit)

    def _listed_jobs(self, conn: sa.Connection, ids: list[str]) -> dict[str, dict]:
        """The list items of these finished jobs, each made from its history once and kept."""
        with self._cond:
            found = {pid: dict(self._listed[pid]) for pid in ids if pid in self._listed}
        missing = [pid for pid in ids if pid not in found]
        if missing:
            c = jobs.c
            for row in conn.execute(sa.select(c.prompt_id, c.number, c.create_time, c.workflow_id, c.history)
                                    .where(c.prompt_id.in_(missing))):
                found[row.prompt_id] = finished_job(row.prompt_id, _number(row.number), _number(row.create_time),
                                                    row.workflow_id, row.history or {})
                self._keep_listed(row.prompt_id, found[row.prompt_id])
        return found

    def _keep_listed(self, prompt_id: str, job: dict) -> None:
        with self._cond:
            self._listed[prompt_id] = job
            while len(self._listed) > self.LISTED:
                self._listed.pop(next(iter(self._listed)))

    @_read
    def finished_job(self, prompt_id: str) -> dict | None:
        """``GET /api/jobs/{id}`` for a finished job, or None."""
        finishing = self._finishing.get(prompt_id)
        if finishing is not None:
            _key, job, entry = finishing
            return job_detail(dict(job), entry["prompt"][2], entry["prompt"][3], entry)
        c = jobs.c
        with self._connection() as conn:
            row = conn.execute(sa.select(c.number, c.prompt, c.extra_data, c.history, c.create_time, c.workflow_id)
                               .where(c.prompt_id == prompt_id, FINISHED_CLAUSE, c.history.is_not(None))).first()
        if row is None:
            return None
        job = finished_job(prompt_id, _number(row.number), _number(row.create_time), row.workflow_id, row.history)
        return job_detail(job, row.prompt, row.extra_data, row.history)

    def close(self) -> None:
        if not self._writer.flush(timeout=2 * RETRY_S):
            log.error("the job store closes with writes not committed (%s)", self._writer.fault)
        self._writer.close()
        self._readers.shutdown()
        try:
            with self.write_lock:
                checkpoint(self.db)
        except sa.exc.DBAPIError as e:
            log.warning("the job store's last checkpoint failed: %s", e)
        self.db.dispose()


def _stored(entry: dict) -> dict:
    """A history entry as stored: without its "prompt" item, which the job's columns hold."""
    return {k: v for k, v in entry.items() if k != "prompt"}


def _history_entry(row) -> dict:
    """A history entry from its row, its "prompt" item ([number, prompt_id, prompt, extra_data,
    outputs]) rebuilt from the job's columns and first, as in ComfyUI (old rows keep their copy)."""
    item = [_number(row.number), row.prompt_id, row.prompt, row.extra_data or {}, row.outputs_to_execute or []]
    return {"prompt": item, **row.history}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _flush_at_exit(ref: "weakref.ref[Writer]") -> None:
    writer = ref()
    if writer is not None:
        writer.flush(timeout=10)
