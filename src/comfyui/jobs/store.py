"""DurableQueue: the prompt queue and its history in a database (SQLite or PostgreSQL).

Invariants:

* **Acknowledged means committed.** ``put`` returns (or the future of ``put(wait=False)``
  resolves) only once the job's row has committed; only then may the worker take the job.
  A crash (kill -9) never loses an acknowledged job.
* **One commit path.** One writer thread (:class:`_Writer`) makes every write, in submission
  order; whatever waits when a transaction starts goes into it (group commit). A failed batch
  is retried one operation per transaction: only the failing operation's caller sees it.
* **Reads see every earlier change and never wait for the disk.** A job whose insert or finish
  is not committed yet is in memory (queued, running, or finishing with its history entry)
  and looked up there first. (Only the whole ``/history`` and its length wait for the writes
  submitted before them.)
* **Reads are off the event loop and paginated in the database.** :meth:`call` runs a read (or
  an edit that waits for its commit) on the store's reader threads; pages come from the
  partial indexes of :mod:`comfyui.jobs.schema`: a page costs the page. Equal reads waiting
  for a thread share one run, never one that started before they were asked for.
* **Counts of committed finished jobs by status are in memory** (``_counts``), changed when a
  change commits (a finish: +1; ``record``, deletions, prune: what their statement replaced or
  removed); with the finishing jobs they are the Jobs API's totals (no COUNT query, except
  filtered by workflow).
* **Faults of the database answer, never corrupt.** A write that cannot be stored now (lost
  connection, disk full, read-only) fails for its submitter with ``StoreUnavailable`` (503) and
  leaves nothing stored; a job's start and finish are retried until they commit (see
  :class:`_Writer`); a database that cannot be written at start-up refuses to start.
* The SQLite write-ahead log is checkpointed and truncated when the writer is idle and at close.
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
import os
import pathlib
import sqlite3
import threading
import time
import weakref
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ..engine.queue import MAX_HISTORY, PromptQueue, QueueItem, StoreUnavailable
from ..jsonutil import dumps_strict, loads
from ..redact import redact_text, redact_url
from .listing import create_time_of, finished_job, finished_status, job_detail, merge_page, workflow_id_of
from .readers import Readers
from .schema import FAILED, FINISHED, FINISHED_CLAUSE, IN_PROGRESS, PENDING, jobs, migrate

log = logging.getLogger(__name__)

INTERRUPTED_REASON = "The server stopped while this job was running (restart or crash)."


def make_engine(url: str) -> sa.Engine:
    codec = dict(json_serializer=dumps_strict, json_deserializer=loads)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith("sqlite"):
        # no pre-ping (a round trip per checkout): a dropped connection fails the one statement
        # that meets it and invalidates the pool; the writer retries that batch op by op on a
        # fresh connection (nothing is acknowledged before its commit), later reads reconnect
        return sa.create_engine(url, **codec)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    path = url.split("sqlite:///", 1)[-1]
    if not memory and path:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False},
                              poolclass=StaticPool if memory else None, **codec)
    if not memory and path:
        _guard_shm(engine, path + "-shm")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        # WAL + NORMAL: a committed write survives a killed process; readers never block the writer
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return engine


def _guard_shm(engine: sa.Engine, shm: str) -> None:
    """SQLite maps its ``-shm`` file into memory: once another process truncates it, the next
    access of the mapping kills this process with SIGBUS, silently. Every checkout of a
    connection first checks that the file still has its first 32 KiB region; if not, the
    server logs why and exits (status 70) before touching it. Committed jobs are safe in the
    database file and its log; a restart rebuilds the file."""

    @sa.event.listens_for(engine, "checkout")
    def _check(_dbapi_connection, _record, _proxy):
        try:
            size = os.stat(shm).st_size
        except FileNotFoundError:  # (unlinked: our mapping is still whole)
            return
        if size < 32768:
            log.critical("the job database's shared-memory file %s was truncated by another process "
                         "(%d bytes); using it would crash this process (SIGBUS), so the server stops now. "
                         "Committed jobs are safe; restart the server.", shm, size)
            logging.shutdown()
            os._exit(70)


# Job writes, batched per kind: rows of the same kind in a batch are one executemany.
_JOB_WRITES = {
    "insert": jobs.insert(),
    "start": jobs.update().where(jobs.c.prompt_id == sa.bindparam("pid")),  # status, started_at
    "finish": jobs.update().where(jobs.c.prompt_id == sa.bindparam("pid")),  # status, ended_at, history, error
}


_Op = collections.namedtuple("_Op", "kind value item future deadline")
_EDIT, _PRUNE = object(), object()  # items of history writes: their result is the change of the counts
_RETRY = object()  # the result of an operation that goes back to the writer's queue
RETRY_S = 5.0  # how long a write someone waits for retries a lost database connection


def _connection_lost(e: BaseException) -> bool:
    """A dropped or refused database connection (a COMMIT that met it may have committed)."""
    return isinstance(e, sa.exc.DBAPIError) and (e.connection_invalidated or (
        isinstance(e, sa.exc.OperationalError) and not isinstance(e.orig, sqlite3.Error)))


def _unavailable(e: BaseException) -> bool:
    """The database cannot take writes now (lost connection, disk full, read-only, I/O error),
    as opposed to an operation's own fault (a constraint it breaks)."""
    return _connection_lost(e) or isinstance(e, sa.exc.OperationalError)


def reason_of(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"the job database is unavailable: {redact_text(text)}"


def unavailable(e: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(reason_of(e))
    error.__cause__ = e
    return error


class _Writer:
    """The one thread that writes. An operation is a job write (``insert``, ``start``,
    ``finish`` with a row dict) or ``call`` with a function of the connection. A batch is
    applied in order, except that a run of job writes with no ``call`` between them is
    applied as one INSERT, then one UPDATE of the starts, then one of the finishes: a job's
    insert comes before its start and its start before its finish, so each job's own order
    holds. The ``item`` of each operation that has one goes to ``on_commit`` with its result
    (an exception if it did not commit), before the operation's submitter hears of it.

    Faults of the database (see :func:`_unavailable`): an operation nobody waits for (a
    job's start or finish, a prune) goes back to the front of the queue and is retried, with
    a growing pause, until it commits. One somebody waits for fails with
    :class:`StoreUnavailable` at once (disk full, read-only), or after ``RETRY_S`` of retries
    on fresh connections when the connection was lost. A lost connection leaves the batch's
    fate unknown (the COMMIT may have committed): the next transaction first deletes the
    still-pending rows of inserts that failed (``doubtful``: their submitters got the
    error), skips the inserts it retries whose rows are there (committed), and reads the
    counts by status again (``on_commit``'s ``counts``), since retried edits may have run
    twice."""

    IDLE_S = 1.0  # after this long with nothing to write, ``idle`` runs (once per busy spell)

    def __init__(self, db: sa.Engine, lock: threading.Lock, on_commit: Callable[..., None],
                 idle: Callable[[], bool] | None = None):
        self.db, self.lock, self.on_commit, self.idle = db, lock, on_commit, idle
        self._dirty = False  # written since ``idle`` last ran
        mutex = threading.Lock()
        self._work = threading.Condition(mutex)  # the thread waits here for operations
        self._done = threading.Condition(mutex)  # flush() waits here for commits
        self._ops: list[_Op] = []
        self._submitted = self._committed = 0
        self._closed = False
        self._pause_until = 0.0  # after a fault: no attempt before this (time.monotonic())
        self._pause = 0.0
        self._uncertain = False  # a connection was lost: what committed is to be found out
        self.doubtful: set[str] = set()  # ids of failed inserts that may have committed
        self.fault: str | None = None  # the last fault's reason while it lasts
        self._thread = threading.Thread(target=self._run, name="comfyui-jobs-writer", daemon=True)
        self._thread.start()

    def submit(self, kind: str, value: Any, item: Any = None, wait: bool = True) -> concurrent.futures.Future | None:
        """Queue an operation; with ``wait`` a future of its result (after the commit)."""
        future = concurrent.futures.Future() if wait else None
        with self._work:
            if self._closed:
                raise RuntimeError("the job store is closed")
            self._ops.append(_Op(kind, value, item, future, time.monotonic() + RETRY_S))
            self._submitted += 1
            self._work.notify()
        return future

    def run(self, kind: str, value: Any, item: Any = None) -> Any:
        return self.submit(kind, value, item).result()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every operation submitted so far has committed; False on timeout."""
        with self._done:
            target = self._submitted
            return self._done.wait_for(lambda: self._committed >= target, timeout)

    def close(self) -> None:
        with self._work:
            self._closed = True
            self._pause_until = 0.0
            self._work.notify()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            idle = False
            with self._work:
                while True:
                    now = time.monotonic()
                    if self._ops and (now >= self._pause_until or self._closed):
                        break
                    if not self._ops and self._closed:
                        return
                    if not self._ops and self._dirty and self.idle is not None:
                        if not self._work.wait(self.IDLE_S) and not self._ops and not self._closed:
                            idle = True
                            break
                        continue
                    self._work.wait(None if not self._ops else self._pause_until - now)
                batch, self._ops = ([], self._ops) if idle else (self._ops, [])
                closing = self._closed
            if idle:
                try:
                    with self.lock:
                        self._dirty = not self.idle()
                except Exception as e:  # noqa: BLE001 - tried again after the next write
                    self._dirty = False
                    log.warning("idle maintenance of the job store failed: %s", e)
                continue
            results, counts = self._commit(batch)
            if closing:  # one last try: what still fails is logged, not kept
                results = [unavailable(RuntimeError(self.fault or "closed")) if r is _RETRY else r for r in results]
            redo = [op for op, r in zip(batch, results) if r is _RETRY]
            final = [(op, r) for op, r in zip(batch, results) if r is not _RETRY]
            done = [(op.item, r) for op, r in final if op.item is not None]
            if done or counts is not None:
                self.on_commit(done, counts)
            for op, result in final:
                if op.future is not None:
                    if isinstance(result, Exception):
                        op.future.set_exception(result)
                    else:
                        op.future.set_result(result)
                elif isinstance(result, Exception):
                    log.error("the job store could not record a %s", op.kind, exc_info=result)
            with self._work:
                if self.doubtful and not redo and not closing:
                    # a write of its own, so that the doubtful rows go once the database is back
                    redo.append(_Op("call", lambda conn: None, None, None, 0.0))
                    self._submitted += 1
                if redo:
                    self._ops[:0] = redo
                    self._pause = min(max(self._pause * 2, 0.05), 1.0)
                    self._pause_until = time.monotonic() + self._pause
                else:
                    self._pause = 0.0
                self._committed += len(final)
                self._done.notify_all()

    def _commit(self, batch: list[_Op]) -> tuple[list, collections.Counter | None]:
        """Apply ``batch`` in one transaction: its results (a value, an exception, or
        ``_RETRY``), and the counts by status read again after a lost connection (else None)."""
        uncertain = self._uncertain
        todo = batch
        try:
            with self.lock, self.db.begin() as conn:
                skipped: set[int] = set()
                if uncertain:
                    if self.doubtful:
                        conn.execute(jobs.delete().where(jobs.c.prompt_id.in_(sorted(self.doubtful)),
                                                         jobs.c.status == PENDING))
                    inserts = {op.value["prompt_id"]: i for i, op in enumerate(batch) if op.kind == "insert"}
                    if inserts:
                        for pid, created in conn.execute(sa.select(jobs.c.prompt_id, jobs.c.created_at).where(
                                jobs.c.prompt_id.in_(list(inserts)))):
                            if created == batch[inserts[pid]].value["created_at"]:
                                skipped.add(inserts[pid])  # committed by the COMMIT whose answer was lost
                todo = [op for i, op in enumerate(batch) if i not in skipped]
                applied = iter(self._apply(conn, todo))
                results = [None if i in skipped else next(applied) for i in range(len(batch))]
                counts = _count_finished(conn) if uncertain else None
        except Exception as e:  # noqa: BLE001 - retried alone, or handed to its submitter
            if not _unavailable(e):
                if len(batch) == 1:
                    return [e], None
                results, counts = [], None
                for op in batch:
                    (result,), recount = self._commit([op])
                    results.append(result)
                    counts = recount if recount is not None else counts
                return results, counts
            lost = _connection_lost(e)
            self._uncertain = self._uncertain or lost
            self.fault = reason_of(e)
            if not self.fault_logged:
                log.error("%s; writes are retried until it is back", self.fault)
                self.fault_logged = True
            now, results = time.monotonic(), []
            for op in batch:
                if op.future is None or (lost and now < op.deadline):
                    results.append(_RETRY)
                else:
                    if op.kind == "insert" and self._uncertain:
                        self.doubtful.add(op.value["prompt_id"])
                    results.append(unavailable(e))
            return results, None
        self._dirty = True
        if self.fault is not None:
            log.warning("the job database is back (%s before)", self.fault)
        self.fault, self.fault_logged = None, False
        if uncertain:
            self._uncertain = False
            self.doubtful.clear()
        return results, counts

    fault_logged = False

    @staticmethod
    def _apply(conn: sa.Connection, batch: list[_Op]) -> list:
        results: list = []
        run: list[_Op] = []

        def write_run() -> None:
            for kind, statement in _JOB_WRITES.items():
                rows = [op.value for op in run if op.kind == kind]
                if rows:
                    conn.execute(statement, rows)
            run.clear()

        for op in batch:
            if op.kind == "call":
                write_run()
                results.append(op.value(conn))
            else:
                run.append(op)
                results.append(None)
        write_run()
        return results


def _count_finished(conn: sa.Connection) -> collections.Counter:
    return collections.Counter(dict(conn.execute(
        sa.select(jobs.c.status, sa.func.count()).where(FINISHED_CLAUSE).group_by(jobs.c.status)).all()))


def _check_writable(db: sa.Engine) -> None:
    """Write to the database once (its header's user_version, set to what it is), so that a
    read-only file, folder or file system fails here, at start-up, not at the first prompt."""
    if db.dialect.name != "sqlite":
        return
    with db.begin() as conn:
        version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        conn.exec_driver_sql(f"PRAGMA user_version = {version}")


def _read(fn: Callable) -> Callable:
    """A read of the database: run again once on a fresh connection when the pooled one was
    dropped (the pool is refilled after a lost connection); a database that cannot be read
    raises :class:`StoreUnavailable`."""
    @functools.wraps(fn)
    def read(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(2):
            try:
                return fn(*args, **kwargs)
            except sa.exc.DBAPIError as e:
                if attempt == 0 and e.connection_invalidated:
                    continue
                if _unavailable(e):
                    raise unavailable(e) from e
                raise
        raise AssertionError("unreachable")

    return read


def _flush_at_exit(ref: "weakref.ref[_Writer]") -> None:
    writer = ref()
    if writer is not None:
        writer.flush(timeout=10)


def _history_entry(row) -> dict:
    """A history entry from its row, its "prompt" item ([number, prompt_id, prompt, extra_data,
    outputs]) rebuilt from the job's columns and first, as in ComfyUI (old rows keep their copy)."""
    item = [_number(row.number), row.prompt_id, row.prompt, row.extra_data or {}, row.outputs_to_execute or []]
    return {"prompt": item, **row.history}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


class DurableQueue(PromptQueue):
    durable = True
    LISTED = 4096  # finished jobs whose Jobs API items are kept

    def __init__(self, url: str, *, requeue_interrupted: bool = False, max_history: int = MAX_HISTORY):
        super().__init__(max_history)
        self.db = make_engine(url)
        try:
            migrate(self.db)
            _check_writable(self.db)
        except sa.exc.DBAPIError as e:  # before serving: a store that cannot write refuses to start
            self.db.dispose()
            raise StoreUnavailable(f"the job database {redact_url(url)} cannot be written: "
                                   f"{reason_of(e).split(': ', 1)[-1]}") from e
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
        with self.db.connect() as conn:  # committed finished jobs by status (see the invariants)
            self._counts = collections.Counter(dict(conn.execute(
                sa.select(jobs.c.status, sa.func.count()).where(FINISHED_CLAUSE).group_by(jobs.c.status)).all()))
        self._pruning = False  # a prune is submitted and not committed yet
        self._writer = _Writer(self.db, self.write_lock, self._committed,
                               idle=self.checkpoint if self.db.dialect.name == "sqlite" else None)
        self._readers = Readers()
        atexit.register(_flush_at_exit, weakref.ref(self._writer))  # the last updates reach the disk

    # ---- start-up ----
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
        """The writer's report, with each result (an exception: not committed): a new job's
        insert (its QueueItem), a job's finish (its id), or an edit of history (``_EDIT``,
        ``_PRUNE``: the result is the change of the counts). ``counts``: the counts by status
        read again in the transaction (after a lost connection), which replace the changes."""
        runnable = []
        with self._cond:
            if counts is not None:
                done = [(item, None if item is _EDIT or item is _PRUNE else result) for item, result in done]
            for item, result in done:
                ok = not isinstance(result, Exception)
                if isinstance(item, QueueItem):
                    self._inserting.discard(item.prompt_id)
                    if ok:
                        runnable.append(item)
                elif item is _EDIT or item is _PRUNE:
                    if ok:
                        self._counts.update(result)
                    if item is _PRUNE:
                        self._pruning = False
                else:  # the history row is written (or, failing, logged): reads find it there
                    finished = self._finishing.pop(item, None)
                    if ok and finished is not None:
                        if counts is None:
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

    def record(self, prompt_id: str, entry: dict) -> None:
        number, _pid, prompt, extra, outputs = entry["prompt"][:5]
        now = time.time()
        values = dict(status=finished_status(entry), ended_at=now, history=_stored(entry))

        def write(conn: sa.Connection) -> collections.Counter:
            c = jobs.c
            replaced = conn.execute(sa.select(c.status).where(c.prompt_id == prompt_id, FINISHED_CLAUSE)).scalar()
            if not conn.execute(jobs.update().where(c.prompt_id == prompt_id).values(**values)).rowcount:
                conn.execute(jobs.insert().values(
                    prompt_id=prompt_id, number=number, client_id=(extra or {}).get("client_id"), prompt=prompt,
                    extra_data=extra or {}, outputs_to_execute=outputs or [], created_at=now,
                    create_time=create_time_of(extra, now), workflow_id=workflow_id_of(extra), **values))
            change = collections.Counter({values["status"]: 1})
            if replaced is not None:
                change[replaced] -= 1
            return change

        self._writer.run("call", write, _EDIT)
        with self._cond:
            self._listed.pop(prompt_id, None)
        self._prune_if_over()

    def _prune_if_over(self) -> None:
        """Prune history once it is 10 % (at least 100) over ``max_history``: the prune reads
        past the newest ``max_history`` index entries."""
        with self._cond:
            size = sum(self._counts.values()) + len(self._finishing)
            if self._pruning or size < self._max_history + max(100, self._max_history // 10):
                return
            self._pruning = True
        self._writer.submit("call", functools.partial(_prune, keep=self._max_history), _PRUNE, wait=False)

    # ---- reads (memory first: the jobs whose writes are not committed yet are there) ----
    async def call(self, fn: Callable, *args: Any, key: Any = None) -> Any:
        """Run ``fn(*args)`` (a read, or an edit that waits for its commit) on the store's
        reader threads, never on the calling event loop; equal reads (``key``) waiting for
        a thread share one run (:mod:`comfyui.jobs.readers`)."""
        return await self._readers.call(fn, *args, key=key)

    def _connection(self, flush: bool = False) -> sa.Connection:
        """A connection to read with (``flush``: once every write submitted so far committed).
        On PostgreSQL it reads outside a transaction: a query is one round trip, with no
        BEGIN before it and no ROLLBACK when the connection goes back to the pool."""
        if flush:
            self._flush()
        if self.db.dialect.name == "postgresql":
            return self.db.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.db.connect()

    def _flush(self) -> None:
        """Wait for the writes submitted so far (StoreUnavailable while the database is down)."""
        if not self._writer.flush(timeout=RETRY_S):
            raise StoreUnavailable(self._writer.fault or "the job database does not answer")

    @_read
    def last_number(self) -> int:
        with self._connection(flush=True) as conn:
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
        elif offset < 0 and max_items is not None:  # the newest max_items, oldest first
            query = query.where(c.ended_at >= self.session_start)
            newest = (query.add_columns(c.ended_at, c.seq).order_by(c.ended_at.desc(), c.seq.desc())
                      .limit(max_items).subquery())
            query = sa.select(newest).order_by(newest.c.ended_at, newest.c.seq)
        else:
            query = (query.where(c.ended_at >= self.session_start).order_by(c.ended_at, c.seq)
                     .offset(max(offset, 0)).limit(max_items))
        with self._connection(flush=prompt_id is None) as conn:
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
        order = [k.desc() for k in key] if descending else key
        page = sa.select(c.prompt_id, *key).where(*where).order_by(*order)

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
        """The list items of these finished jobs: a finished row does not change, so each is
        made from its history once and kept (the newest ``LISTED`` of them)."""
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
            row = conn.execute(sa.select(c.prompt_id, c.number, c.prompt, c.extra_data, c.outputs_to_execute,
                                         c.history, c.create_time, c.workflow_id)
                               .where(c.prompt_id == prompt_id, FINISHED_CLAUSE, c.history.is_not(None))).first()
        if row is None:
            return None
        job = finished_job(prompt_id, _number(row.number), _number(row.create_time), row.workflow_id, row.history)
        return job_detail(job, row.prompt, row.extra_data, row.history)

    # ---- history edits ----
    def delete_history(self, prompt_ids) -> None:
        ids = list(prompt_ids)
        if ids:
            self._writer.run("call", lambda conn: _delete_finished(conn, jobs.c.prompt_id.in_(ids)), _EDIT)

    def clear_history(self) -> None:
        self._writer.run("call", _delete_finished, _EDIT)

    def checkpoint(self) -> bool:
        """SQLite: copy the write-ahead log into the database and truncate it to nothing (it
        never shrinks otherwise: it stays as large as the largest burst). Run by the writer
        when idle and at close; True when done (False: a reader held it, tried again later)."""
        if self.db.dialect.name != "sqlite":
            return True
        with self.db.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
        return not busy or not busy[0]

    def close(self) -> None:
        if not self._writer.flush(timeout=2 * RETRY_S):
            log.error("the job store closes with writes not committed (%s)", self._writer.fault)
        self._writer.close()
        self._readers.shutdown()
        try:
            with self.write_lock:
                self.checkpoint()
        except sa.exc.DBAPIError as e:
            log.warning("the job store's last checkpoint failed: %s", e)
        self.db.dispose()


def _stored(entry: dict) -> dict:
    """A history entry as stored: without its "prompt" item, which the job's columns hold."""
    return {k: v for k, v in entry.items() if k != "prompt"}


def _delete_finished(conn: sa.Connection, *where: Any) -> collections.Counter:
    """Delete the finished jobs matching ``where``; -> the change of the counts by status."""
    change: collections.Counter = collections.Counter()
    for (status,) in conn.execute(jobs.delete().where(*where, FINISHED_CLAUSE).returning(jobs.c.status)):
        change[status] -= 1
    return change


def _prune(conn: sa.Connection, keep: int) -> collections.Counter:
    """Delete finished jobs beyond the newest ``keep``, oldest (by end time) first."""
    c = jobs.c
    boundary = conn.execute(sa.select(c.ended_at, c.seq).where(FINISHED_CLAUSE)
                            .order_by(c.ended_at.desc(), c.seq.desc()).offset(keep).limit(1)).first()
    if boundary is None:
        return collections.Counter()
    ended, seq = boundary
    return _delete_finished(conn, (c.ended_at < ended) | ((c.ended_at == ended) & (c.seq <= seq)))
