"""DurableQueue: PromptQueue whose every state change is written to a database first.

Pending items also live in the in-memory heap (the hot path reads memory only); every
acknowledged submit is committed before it is acknowledged (``put`` returns, or the future of
``put(wait=False)`` resolves). History reads go to the database.

Writes are grouped: whatever has queued up is committed in one transaction (group commit), by
a writer thread or, on SQLite, by a waiting caller itself (an event loop commits the submits of
one loop turn together, at most one commit per millisecond under load), so concurrent submits
and the worker's state changes share commits. A batch is one multi-row INSERT and one UPDATE.
SQLite's WAL checkpoints (the fsyncs) run on a thread of their own (WalCheckpointer).
``put``, deletes and history edits wait for their commit; the worker's
``in_progress``/finished updates do not (the worker never waits on the disk), and every read
first waits for the writes queued before it, so reads always see them. The price: a process
killed within 20 ms (one commit) of a job finishing may record that job as failed
(interrupted), and one killed just as a job starts may run that job again after the restart.
Job states: pending, in_progress, completed, failed, cancelled.
On start-up, pending jobs are queued again and a job that was in progress when the process
died is marked failed (or queued again with ``requeue_interrupted``).
Secrets were removed from extra_data by the engine before they reach this store.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import logging
import operator
import pathlib
import threading
import time
import weakref
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.pool import StaticPool

from ..engine.queue import MAX_HISTORY, PromptQueue, QueueItem
from ..jsonutil import dumps_strict, loads

log = logging.getLogger(__name__)

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prompt_id", sa.String(128), nullable=False, unique=True),
    sa.Column("number", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("client_id", sa.String(128)),
    sa.Column("prompt", sa.JSON, nullable=False),
    sa.Column("extra_data", sa.JSON, nullable=False),
    sa.Column("outputs_to_execute", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("history", sa.JSON),
    sa.Column("error", sa.JSON),
)

# Files a job produced (kind "output") or uploaded with it (kind "input"), by content hash:
# the index behind /api/v1/images/{digest} and per-job output deletion (comfyui.jobs.retention).
job_files = sa.Table(
    "job_files", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prompt_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("folder_type", sa.String(16), nullable=False),
    sa.Column("subfolder", sa.String(1024), nullable=False),
    sa.Column("filename", sa.String(1024), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "pending", "in_progress", "completed", "failed", "cancelled"
FINISHED = (COMPLETED, FAILED, CANCELLED)
# finished jobs, as SQL that names the predicate of the partial index over them (migration
# 0003: a job has an end time once it finished), since a query planner uses that index only
# for a condition it can see implies the predicate; literal, for the same reason
_FINISHED_SQL = "ended_at IS NOT NULL AND status IN (%s)" % ", ".join(f"'{s}'" for s in FINISHED)
_IS_FINISHED = sa.text(_FINISHED_SQL)
# history beyond its newest {keep} jobs, in history order, read from that index alone
_PRUNE_SQL = (f"DELETE FROM jobs WHERE {_FINISHED_SQL} AND (ended_at, seq) <= (SELECT ended_at, seq FROM jobs "
              f"WHERE {_FINISHED_SQL} ORDER BY ended_at DESC, seq DESC LIMIT 1 OFFSET {{keep}})")
INTERRUPTED_REASON = "The server stopped while this job was running (restart or crash)."


def _sqlite_in_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:")


_JSON_CODEC = dict(json_serializer=dumps_strict, json_deserializer=loads)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        memory = _sqlite_in_memory(url)
        if not memory:
            path = url.split("sqlite:///", 1)[-1]
            if path:
                pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False},
                                  poolclass=StaticPool if memory else None, **_JSON_CODEC)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL + NORMAL: a committed write survives a killed process; far faster than FULL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if not memory:  # checkpoints (and their fsyncs) run on WalCheckpointer's thread
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True, **_JSON_CODEC)


def migrate(engine: sa.Engine) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(pathlib.Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _status_of(entry: dict) -> str:
    if entry.get("cancelled"):
        return CANCELLED
    return COMPLETED if entry.get("status", {}).get("status_str") == "success" else FAILED


def _stored_entry(entry: dict) -> dict:
    """A history entry as stored: without its "prompt" item, which the job's own columns hold."""
    return {k: v for k, v in entry.items() if k != "prompt"}


def _history_entry(row) -> dict:
    """A history entry from its row: the "prompt" item ([number, prompt_id, prompt, extra_data,
    outputs]) rebuilt from the job's columns, first as in ComfyUI (rows written before the
    item was left out keep their own copy)."""
    number = int(row.number) if float(row.number).is_integer() else row.number
    item = [number, row.prompt_id, row.prompt, row.extra_data or {}, row.outputs_to_execute or []]
    return {"prompt": item, **row.history}


_INSERT_COLUMNS = ("prompt_id", "number", "status", "client_id", "prompt", "extra_data", "outputs_to_execute",
                   "created_at")
_UPDATE_COLUMNS = ("status", "started_at", "ended_at", "history", "error", "pid")
_JSON_COLUMNS = frozenset({"prompt", "extra_data", "outputs_to_execute", "history", "error"})
# a started job's row leaves the finish columns NULL, which keeps what the table has
_UPDATE_FROM_V = (") UPDATE jobs SET status = v.status, started_at = COALESCE(v.started_at, jobs.started_at), "
                  "ended_at = COALESCE(v.ended_at, jobs.ended_at), history = COALESCE(v.history, jobs.history), "
                  "error = COALESCE(v.error, jobs.error) FROM v WHERE jobs.prompt_id = v.pid")


class _BatchSQL:
    """Driver-level SQL for the hot statements, n rows at once: new jobs in one multi-row
    INSERT, the started and the finished ones in one UPDATE joined to a VALUES list (SQLite and
    PostgreSQL both take ``WITH v(...) AS (VALUES ...) UPDATE ... FROM v``), and the history
    prune. ``statements(inserts, updates, keep)`` takes rows as dicts of the columns above
    (JSON columns as Python values) and returns ``(sql, params)`` pairs. (On PostgreSQL a
    single JSON parameter read by json_to_recordset was measured too: the server parses the
    history twice then, and its CPU per finished job doubled.)"""

    def __init__(self, text: str, number: str, js: str):
        """Placeholders by column type; ``{}`` in them is filled with the parameter's number."""
        mark = {c: js if c in _JSON_COLUMNS else number if c.endswith(("_at", "number")) else text
                for c in _INSERT_COLUMNS + _UPDATE_COLUMNS}
        # per kind: its columns, a getter of a row's values, where its JSON values are, placeholders
        self._kinds = {kind: (columns, operator.itemgetter(*columns),
                              [i for i, c in enumerate(columns) if c in _JSON_COLUMNS], [mark[c] for c in columns])
                       for kind, columns in (("insert", _INSERT_COLUMNS), ("update", _UPDATE_COLUMNS))}
        self._prune = _PRUNE_SQL.format(keep=text.format(1))
        self._cache: dict[tuple[str, int], str] = {}

    @classmethod
    def for_dialect(cls, dialect) -> "_BatchSQL | None":
        if dialect.name == "sqlite":
            return cls("?", "?", "?")
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            # PostgreSQL's own numbered placeholders, for psycopg's RawCursor and libpq: a
            # long statement's %s placeholders were converted by a regular expression on every
            # execution (psycopg caches that only for short ones). Typed, or a NULL in a VALUES
            # list would be text.
            return cls("${}", "${}::float8", "${}::json")
        return None

    def statements(self, inserts: list[dict], updates: list[dict], keep: int | None) -> list[tuple[str, list]]:
        out = []
        for kind, rows in (("insert", inserts), ("update", updates)):
            if rows:
                _columns, row_values, json_at, _marks = self._kinds[kind]
                params = []
                for row in rows:
                    values = list(row_values(row))
                    for i in json_at:
                        if values[i] is not None:
                            values[i] = dumps_strict(values[i])
                    params += values
                out.append((self._sql(kind, len(rows)), params))
        if keep is not None:
            out.append((self._prune, [keep]))
        return out

    def _sql(self, kind: str, n: int) -> str:
        text = self._cache.get((kind, n))
        if text is None:
            if len(self._cache) > 256:
                self._cache.clear()
            columns, _values, _json_at, marks = self._kinds[kind]
            number = itertools.count(1)
            values = ", ".join("(" + ", ".join(m.format(next(number)) for m in marks) + ")" for _ in range(n))
            text = self._cache[(kind, n)] = (
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES {values}" if kind == "insert"
                else f"WITH v({', '.join(columns)}) AS (VALUES {values}{_UPDATE_FROM_V}")
        return text


class _Ack(concurrent.futures.Future):
    """The future of a submitted operation; ``item`` (if not None) goes to ``on_commit``."""

    def __init__(self, item: Any = None):
        super().__init__()
        self.item = item


class _LoopAck(asyncio.Future):
    """The same for a caller on an event loop: a future of that loop, resolved in place when
    the commit runs on the loop's own thread (on SQLite the loop commits its submits itself;
    on PostgreSQL its own connection does), else through ``call_soon_threadsafe``. A
    concurrent future awaited from the loop cost a submit a dozen lock round trips."""

    __slots__ = ("item", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop, item: Any):
        super().__init__(loop=loop)
        self.item, self.thread = item, threading.get_ident()


def _resolve(future: asyncio.Future, result: Any) -> None:
    if not future.done():  # its awaiting task may have been cancelled
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


class _LoopPostgres:
    """A PostgreSQL connection that one event loop drives at the libpq level (``psycopg.pq``),
    for the submits' INSERTs: a statement goes out without blocking and its result is read by
    a reader the loop keeps on the socket. (psycopg's asyncio cursor does the same with a
    few hundred microseconds of Python per statement -- a lock, a cursor, generators, a reader
    added and removed each time -- most of what a submit to PostgreSQL cost the interpreter
    lock.) Statements are prepared on the server once per batch size; autocommit, so each is
    its own transaction and takes one round trip."""

    MAX_PREPARED = 64  # distinct statements (one per batch size) prepared; later ones go unprepared

    def __init__(self, conn, loop: asyncio.AbstractEventLoop):
        from psycopg import pq

        self._pq = pq
        self.conn, self.loop = conn, loop  # conn: the psycopg.AsyncConnection that owns pgconn
        self.pgconn = conn.pgconn
        self.pgconn.nonblocking = 1
        self._fd = self.pgconn.socket
        self._waiter: asyncio.Future | None = None
        self._error: str | None = None
        self._prepared: set[bytes] = set()
        self._statements: dict[str, tuple[bytes, bytes]] = {}  # sql -> (its bytes, prepared name)
        loop.add_reader(self._fd, self._readable)

    @classmethod
    async def connect(cls, url: str, loop: asyncio.AbstractEventLoop) -> "_LoopPostgres":
        import psycopg

        return cls(await psycopg.AsyncConnection.connect(url, autocommit=True), loop)

    @property
    def usable(self) -> bool:
        return self.pgconn.status == self._pq.ConnStatus.OK and not self.loop.is_closed()

    async def execute(self, sql: str, params: list) -> None:
        """Run one statement (``$n`` placeholders; str, int, float or None values)."""
        known = self._statements.get(sql)
        if known is None:
            count = len(self._statements)
            known = (sql.encode(), b"comfyui_%d" % count if count < self.MAX_PREPARED else None)
            if count < self.MAX_PREPARED:
                self._statements[sql] = known
        text, name = known
        values = [None if v is None else (v if isinstance(v, str) else repr(v)).encode() for v in params]
        if name is not None and name not in self._prepared:
            await self._round_trip(lambda: self.pgconn.send_prepare(name, text))
            self._prepared.add(name)
        if name is not None:
            await self._round_trip(lambda: self.pgconn.send_query_prepared(name, values))
        else:
            await self._round_trip(lambda: self.pgconn.send_query_params(text, values))

    async def _round_trip(self, send) -> None:
        self._waiter, self._error = self.loop.create_future(), None
        send()
        if self.pgconn.flush():  # the rest goes out when the socket takes it
            self.loop.add_writer(self._fd, self._writable)
        await self._waiter

    def _writable(self) -> None:
        try:
            if self.pgconn.flush() == 0:
                self.loop.remove_writer(self._fd)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _readable(self) -> None:
        try:
            self.pgconn.consume_input()
            while not self.pgconn.is_busy():
                result = self.pgconn.get_result()
                if result is None:  # the statement is done
                    waiter, self._waiter = self._waiter, None
                    if waiter is not None and not waiter.done():
                        if self._error is None:
                            waiter.set_result(None)
                        else:
                            waiter.set_exception(RuntimeError(f"PostgreSQL: {self._error}"))
                    return
                if result.status not in (self._pq.ExecStatus.COMMAND_OK, self._pq.ExecStatus.TUPLES_OK):
                    self._error = result.error_message.decode(errors="replace").strip()
        except Exception as e:  # noqa: BLE001 - a lost connection
            self._fail(e)

    def _fail(self, error: Exception) -> None:
        self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        """Stop watching the socket and close it (from any thread)."""
        def close_here() -> None:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
            self.pgconn.finish()

        if self.loop.is_closed():
            self.pgconn.finish()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            close_here()
        else:
            try:
                self.loop.call_soon_threadsafe(close_here)
            except RuntimeError:  # the loop closed meanwhile
                self.pgconn.finish()


class _GroupWriter:
    """One thread that runs queued write operations, batching all that are waiting into one
    transaction on one long-lived connection.

    ``post(op)`` (nobody waits), ``submit(op)`` -> Future, ``run(op)`` (waits). An op is a
    callable ``fn(connection)`` or one of the batched kinds ``("insert", values)``,
    ``("start", values)``, ``("finish", values)``, ``("prune", keep)``: all inserts of a batch
    go in one multi-row INSERT, then the starts and the finishes in one UPDATE, then the
    prune, then the callables in order (a job's insert commits before it can start, and it
    starts before it finishes, so this order keeps every job's own order). A batch that fails
    is retried one operation per transaction, so only the failing operation's caller sees the
    error. ``flush()`` waits for every operation submitted so far."""

    def __init__(self, db: sa.Engine, lock: threading.Lock, max_batch: int = 1000):
        self.db, self.lock, self.max_batch = db, lock, max_batch
        self.on_commit: Any = None  # called with the items of each batch's committed submits
        lock = self._mutex = threading.Lock()  # taken directly where no wait/notify is needed
        self._cond = threading.Condition(lock)  # the writer thread waits here for operations
        self._flushed = threading.Condition(lock)  # flush() waits here for commits
        self._ops: list[tuple[Any, concurrent.futures.Future | None]] = []
        self._submitted = 0
        self._done = 0
        self._stopped = False
        self._conn: sa.Connection | None = None
        self._leader = threading.Lock()  # held by whoever is committing a batch
        self._urgent = False  # someone waits for the next commit
        self._idle = False  # the writer thread sleeps until an operation arrives
        self.commit_delay = 0.005
        self.commit_spacing = 0.001
        def keep(column):  # the new value, or the column's own where the new one is NULL
            kind = sa.JSON(none_as_null=True) if isinstance(column.type, sa.JSON) else column.type
            return sa.func.coalesce(sa.bindparam(column.name, type_=kind), column)

        self._update_stmt = jobs.update().where(jobs.c.prompt_id == sa.bindparam("pid")).values(
            status=sa.bindparam("status"), started_at=keep(jobs.c.started_at), ended_at=keep(jobs.c.ended_at),
            history=keep(jobs.c.history), error=keep(jobs.c.error))
        self._prune_stmt = sa.text(_PRUNE_SQL.format(keep=":keep"))
        self._raw = _BatchSQL.for_dialect(db.dialect)
        self.commit_inline = db.dialect.name == "sqlite"
        self.commit_pipelined = db.dialect.name == "postgresql" and db.dialect.driver == "psycopg"
        self.loop_inserts = self.commit_pipelined  # see submit()
        self._raw_cursor = None  # psycopg: a cursor that takes _BatchSQL's $n placeholders as they are
        if self.commit_pipelined:
            import psycopg

            self._raw_cursor = psycopg.RawCursor
        self._loop_ops: list = []
        self._loop_committing = False
        self._aconn: _LoopPostgres | None = None  # the submits' connection on their event loop
        self._lead_scheduled = False  # an event loop will commit the waiting batch next turn
        self._last_commit = 0.0  # time.monotonic() of the last commit
        self._oldest = 0.0  # when the oldest waiting operation was queued
        self._thread = threading.Thread(target=self._run, name="comfyui-jobs-writer", daemon=True)
        self._thread.start()

    def post(self, op) -> None:
        """Queue ``op`` for the next batch; nobody waits for it (the worker's state updates),
        so it is gathered with others for ``commit_delay``. A failure is logged. On SQLite
        the caller commits the batch itself once the last commit is ``commit_delay`` old:
        the writer thread, woken only when it sleeps, is left the stragglers (each of its
        commits waits for the interpreter lock at every driver call while other threads run)."""
        with self._mutex:
            self._append(op, None)
            due = self.commit_inline and time.monotonic() - self._last_commit >= self.commit_delay
            if self._idle and not due:
                self._cond.notify()
        if due:
            self._lead()

    def submit(self, op, item: Any = None) -> asyncio.Future | concurrent.futures.Future:
        """Queue ``op`` for a caller that waits for it (without blocking here); the future (one
        of the caller's event loop, if it runs on one: ``_LoopAck``) resolves once it is
        committed, which happens now rather than after ``commit_delay``.
        ``item``, if given, goes to ``on_commit`` with the others of its batch once committed.

        On SQLite (a commit is a local write of tens of microseconds) the caller's thread
        commits the waiting batch itself, unless another commit is in progress: handing it to
        the writer thread and back costs two thread switches, most of a request's time under
        load. Called from an event loop, that commit runs at the loop's next turn, so the
        submits of all requests handled in this turn share it; under load, no sooner than
        ``commit_spacing`` after the previous commit, so that more submits share each one.
        On PostgreSQL an event loop's submits are committed on a connection of that loop's own
        (``_LoopPostgres``): the loop never blocks on the network, and no thread needs
        the interpreter lock back after each round trip (``_loop_insert``); the rest goes
        through the writer thread."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        future = _Ack(item) if loop is None else _LoopAck(loop, item)
        if loop is not None and self.loop_inserts and isinstance(op, tuple) and op[0] == "insert":
            self._loop_insert(loop, op, future)
            return future
        with self._mutex:
            self._append(op, future)
            if self._idle:  # a backstop should the caller's loop stop before its next turn
                self._cond.notify()
        if not self.commit_inline:
            self._hurry()
            return future
        if loop is None:
            self._lead()
            self._hurry()
            return future
        if not self._lead_scheduled:
            self._lead_scheduled = True
            wait = self._last_commit + self.commit_spacing - time.monotonic()
            if wait > 0:
                loop.call_later(wait, self._scheduled_lead)
            else:
                loop.call_soon(self._scheduled_lead)
        return future

    def _loop_insert(self, loop: asyncio.AbstractEventLoop, op, future: concurrent.futures.Future) -> None:
        """Queue a new job's insert for the calling loop's own connection. Only inserts go this
        way: a job's later updates are posted once its insert is committed, and the writer
        thread keeps everything else in order."""
        self._loop_ops.append((op, future))
        if not self._loop_committing:
            self._loop_committing = True
            loop.create_task(self._commit_on_loop(loop))

    async def _commit_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._loop_ops:
                batch, self._loop_ops = self._loop_ops[:self.max_batch], self._loop_ops[self.max_batch:]
                try:
                    conn = await self._loop_connection(loop)
                    # only inserts come here: one statement, committed on its own (autocommit),
                    # in one round trip
                    (sql, params), = self._raw_statements(batch)
                    await conn.execute(sql, params)
                except Exception as e:  # noqa: BLE001 - the writer retries them one by one with SQLAlchemy
                    self._drop_loop_connection()
                    try:
                        with self._mutex:
                            for op, future in batch:
                                self._append(op, future)
                    except RuntimeError:  # the store is closing: the submits fail
                        self._settle(batch, [e] * len(batch))
                    else:
                        self._hurry()
                    continue
                self._settle(batch, [None] * len(batch))
        finally:
            self._loop_committing = False

    async def _loop_connection(self, loop: asyncio.AbstractEventLoop) -> _LoopPostgres:
        if self._aconn is not None and (self._aconn.loop is not loop or not self._aconn.usable):
            self._drop_loop_connection()
        if self._aconn is None:
            url = self.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._aconn = await _LoopPostgres.connect(url, loop)
        return self._aconn

    def _drop_loop_connection(self) -> None:
        conn, self._aconn = self._aconn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def run(self, op, item: Any = None) -> Any:
        """Submit ``op`` and wait for its commit (from a thread that may block): the caller
        commits the waiting batch itself when no other commit is in progress."""
        future = _Ack(item)
        with self._mutex:
            self._append(op, future)
        self._lead()
        self._hurry()
        return future.result()

    def _append(self, op, future: concurrent.futures.Future | None) -> None:
        """Add ``op`` to the waiting batch (the caller holds ``_mutex``)."""
        if self._stopped:
            raise RuntimeError("the job store is closed")
        if not self._ops:
            self._oldest = time.monotonic()
        self._ops.append((op, future))
        self._submitted += 1

    def _scheduled_lead(self) -> None:
        self._lead_scheduled = False
        self._lead()
        self._hurry()

    def _lead(self) -> None:
        """Commit the waiting batch here, unless another thread is committing one; then also
        what callers came to wait for meanwhile (their own attempt found this commit in
        progress, and the writer thread would only pick it up after a thread switch)."""
        while self._leader.acquire(blocking=False):
            try:
                self._commit_batch()
            finally:
                self._leader.release()
            with self._mutex:
                if not any(future is not None for _op, future in self._ops):
                    return

    def _hurry(self) -> None:
        """Have the writer commit now, without the gathering delay, if a caller waits for an
        operation that is still uncommitted."""
        with self._mutex:
            if any(future is not None for _op, future in self._ops):
                self._urgent = True
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            target = self._submitted
            if self._done < target:
                self._urgent = True
                self._cond.notify()
            while self._done < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._flushed.wait(remaining)
        return True

    def pending(self) -> bool:
        return self._done < self._submitted

    @property
    def committed(self) -> int:
        """How many operations have been committed so far."""
        return self._done

    def close(self) -> None:
        with self._mutex:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(30)
        self._drop_loop_connection()

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001
                    pass
            self._conn = self.db.connect()
        return self._conn

    @staticmethod
    def _plan(ops: list) -> tuple[list, list, int | None]:
        """The batched kinds of ``ops``: the new jobs' rows; the update rows, a started job's
        with its finish columns None (the table keeps what it has), a job that started and
        finished within the batch in one row; and the history size to prune to (or None)."""
        inserts, updates, keep = [], [], None
        started: dict[str, dict] = {}
        for op, _f in ops:
            if not isinstance(op, tuple):
                continue
            kind, values = op
            if kind == "insert":
                inserts.append(values)
            elif kind == "start":
                row = started[values["pid"]] = {**values, "ended_at": None, "history": None, "error": None}
                updates.append(row)
            elif kind == "finish":
                row = started.pop(values["pid"], None)
                if row is None:
                    row = {"started_at": None}
                    updates.append(row)
                row.update(values)
            elif kind == "prune":
                keep = values
        return inserts, updates, keep

    def _apply(self, conn: sa.Connection, ops: list) -> list:
        inserts, updates, keep = self._plan(ops)
        if inserts:
            conn.execute(jobs.insert(), inserts)
        if updates:
            conn.execute(self._update_stmt, updates)
        if keep is not None:
            conn.execute(self._prune_stmt, {"keep": keep})
        return [None if isinstance(op, tuple) else op(conn) for op, _f in ops]

    def _raw_statements(self, ops: list) -> list[tuple[str, list]]:
        """The batched kinds as driver-level statements, one INSERT and one UPDATE for the
        whole batch: SQLAlchemy's per-statement overhead is several times the cost of these
        statements on SQLite, and every statement the driver runs lets go of the interpreter
        lock, which the calling thread (the event loop's, on SQLite) may then wait to get back."""
        return self._raw.statements(*self._plan(ops))

    def _transaction(self, ops: list, fast: bool = True) -> list:
        """Run ``ops`` in one transaction. ``fast``: a batch of only the batched kinds goes
        straight to the driver; errors then come from the driver, so a failed batch is retried
        with ``fast=False`` (SQLAlchemy's exceptions for the caller)."""
        with self.lock:
            conn = self._connection()
            if fast and self._raw is not None and all(isinstance(op, tuple) for op, _f in ops):
                driver = conn.connection.driver_connection
                cursor = self._raw_cursor(driver) if self._raw_cursor is not None else driver.cursor()
                try:
                    # PostgreSQL: statements and COMMIT in one round trip (psycopg's pipeline)
                    with driver.pipeline() if self.commit_pipelined else contextlib.nullcontext():
                        for sql, params in self._raw_statements(ops):
                            cursor.execute(sql, params)
                        driver.commit()
                except BaseException:
                    driver.rollback()
                    raise
                finally:
                    cursor.close()
                return [None] * len(ops)
            try:
                with conn.begin():
                    return self._apply(conn, ops)
            except sa.exc.DBAPIError as e:
                if e.connection_invalidated:
                    self._conn = None
                raise

    def _run(self) -> None:
        # Nobody waits on the worker's own updates: they gather until the oldest is ``gather``
        # old, so one transaction carries many (an urgent submit or a reader's flush cuts it
        # short). On SQLite the posting threads commit them themselves; this is the backstop.
        # 20 ms: on PostgreSQL, where only this thread commits them, a shorter wait measured
        # ~10 % fewer submits/s under load (each commit costs the interpreter lock a few
        # hundred microseconds of driver work).
        gather = self.commit_delay * 4
        while True:
            with self._mutex:
                while True:
                    if not self._ops:
                        if self._stopped:
                            break
                        self._idle, self._urgent = True, False  # nothing waits, nothing to hurry
                        self._cond.wait()
                        continue
                    self._idle = False
                    remaining = self._oldest + gather - time.monotonic()
                    if self._urgent or self._stopped or remaining <= 0 or len(self._ops) >= self.max_batch:
                        break
                    self._cond.wait(remaining)
                self._urgent = False
                stop = not self._ops and self._stopped
            if stop:
                with self._leader:
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                return
            with self._leader:
                self._commit_batch()

    def _settle(self, batch: list, results: list) -> None:
        """Hand out a committed batch's results (an exception: that operation failed)."""
        # the committed items first, so a caller that gets its answer finds its item queued
        released = [future.item for (_op, future), result in zip(batch, results)
                    if future is not None and future.item is not None and not isinstance(result, Exception)]
        if released and self.on_commit is not None:
            self.on_commit(released)
        here = threading.get_ident()
        elsewhere: dict[asyncio.AbstractEventLoop, list] = {}  # loop -> [(future, result)]
        for (op, future), result in zip(batch, results):
            if future is None:
                if isinstance(result, Exception):
                    log.error("the job store could not record %s", op[0] if isinstance(op, tuple) else op,
                              exc_info=result)
            elif isinstance(future, _LoopAck):
                if future.thread == here:
                    _resolve(future, result)
                else:
                    elsewhere.setdefault(future.get_loop(), []).append((future, result))
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        for loop, pairs in elsewhere.items():  # one wake-up of each loop
            try:
                loop.call_soon_threadsafe(lambda pairs=pairs: [_resolve(f, r) for f, r in pairs])
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def _commit_batch(self) -> None:
        """Commit the operations waiting now (the caller holds ``_leader``)."""
        with self._mutex:
            batch, self._ops = self._ops[:self.max_batch], self._ops[self.max_batch:]
            self._oldest = time.monotonic()
        if batch:
            try:
                results = self._transaction(batch)
            except Exception:  # noqa: BLE001 - retry one by one so the failure reaches its caller
                results = []
                for op, future in batch:
                    try:
                        results.append(self._transaction([(op, future)], fast=False)[0])
                    except Exception as e:  # noqa: BLE001
                        results.append(e)
            self._settle(batch, results)
            with self._mutex:
                self._done += len(batch)
                self._last_commit = time.monotonic()
                self._flushed.notify_all()


class WalCheckpointer:
    """Copies an SQLite WAL back into the database file on its own thread, once a second
    while there are new commits. SQLite would otherwise checkpoint inside whichever commit
    crosses its threshold, an fsync-long stall for that commit's caller (the event loop,
    when a request commits its own submit). PASSIVE checkpoints never block writers."""

    def __init__(self, db: sa.Engine, writer: "_GroupWriter", interval: float = 1.0):
        self.db, self.writer, self.interval = db, writer, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="comfyui-jobs-checkpoint", daemon=True)
        self._thread.start()

    def _checkpoint(self, mode: str) -> None:
        with self.db.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")

    def _run(self) -> None:
        seen = self.writer.committed
        while not self._stop.wait(self.interval):
            if self.writer.committed != seen:
                seen = self.writer.committed
                try:
                    self._checkpoint("PASSIVE")
                except sa.exc.DBAPIError:  # busy or closing: the next round catches up
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        try:
            self._checkpoint("TRUNCATE")
        except sa.exc.DBAPIError:
            pass


def _flush_at_exit(ref: "weakref.ref[_GroupWriter]") -> None:
    writer = ref()
    if writer is not None and not writer._stopped:
        writer.flush(timeout=10)


class DurableQueue(PromptQueue):
    durable = True

    def __init__(self, url: str, *, requeue_interrupted: bool = False, max_history: int = MAX_HISTORY):
        super().__init__(max_history)
        self.url = url
        self.db = make_engine(url)
        migrate(self.db)
        self._write_lock = threading.Lock()  # SQLite allows one writer; keep writes ordered
        self.recovered = self._recover(requeue_interrupted)
        self._writer = _GroupWriter(self.db, self._write_lock)
        self._history_rows = self.history_len()  # an estimate from now on, to know when to prune
        self._writer.on_commit = self._push  # committed submits become runnable
        file_sqlite = self.db.dialect.name == "sqlite" and not _sqlite_in_memory(url)
        self._checkpointer = WalCheckpointer(self.db, self._writer) if file_sqlite else None
        # the worker's last updates must reach the disk on a normal exit too
        atexit.register(_flush_at_exit, weakref.ref(self._writer))

    # ---- start-up ----
    def _recover(self, requeue: bool) -> dict:
        now = time.time()
        with self.db.begin() as conn:
            interrupted = conn.execute(sa.select(jobs).where(jobs.c.status == IN_PROGRESS)).mappings().all()
            for row in interrupted:
                if requeue:
                    conn.execute(jobs.update().where(jobs.c.seq == row["seq"]).values(status=PENDING, started_at=None))
                else:
                    error = {"prompt_id": row["prompt_id"], "node_id": None, "node_type": None, "executed": [],
                             "exception_message": INTERRUPTED_REASON, "exception_type": "ServerRestart",
                             "traceback": [], "current_inputs": {}, "current_outputs": [],
                             "timestamp": int(now * 1000)}
                    entry = {"outputs": {}, "meta": {},
                             "status": {"status_str": "error", "completed": False,
                                        "messages": [["execution_error", error]]}}
                    conn.execute(jobs.update().where(jobs.c.seq == row["seq"]).values(
                        status=FAILED, ended_at=now, history=entry, error=error))
            pending = conn.execute(sa.select(jobs).where(jobs.c.status == PENDING)).mappings().all()
        for row in pending:
            PromptQueue.put(self, self._item(row))
        return {"requeued" if requeue else "failed": [r["prompt_id"] for r in interrupted],
                "pending": [r["prompt_id"] for r in pending]}

    @staticmethod
    def _item(row) -> QueueItem:
        return QueueItem(number=row["number"], prompt_id=row["prompt_id"], prompt=row["prompt"],
                         extra_data=row["extra_data"] or {}, outputs=row["outputs_to_execute"] or [],
                         client_id=row["client_id"], created_at=row["created_at"])

    def last_number(self) -> int:
        with self.db.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(sa.func.abs(jobs.c.number)))).scalar()
        return int(value or 0)

    # ---- queue (write-through) ----
    def put(self, item: QueueItem, wait: bool = True) -> asyncio.Future | concurrent.futures.Future | None:
        values = dict(prompt_id=item.prompt_id, number=item.number, status=PENDING, client_id=item.client_id,
                      prompt=item.prompt, extra_data=item.extra_data, outputs_to_execute=item.outputs,
                      created_at=item.created_at or time.time())
        # the item becomes runnable once committed (on_commit), then it is acknowledged
        if wait:
            self._writer.run(("insert", values), item)
            return None
        ack = self._writer.submit(("insert", values), item)
        if ack.done():  # committed right away, in this thread
            ack.result()
            return None
        return ack

    def get(self, timeout: float | None = None) -> QueueItem | None:
        item = super().get(timeout)
        if item is not None:
            self._writer.post(("start", {"pid": item.prompt_id, "status": IN_PROGRESS, "started_at": time.time()}))
        return item

    def task_done(self, item: QueueItem, history_entry: dict) -> None:
        status = _status_of(history_entry)
        error = next((m[1] for m in history_entry.get("status", {}).get("messages", [])
                      if m[0] == "execution_error"), None)
        self._writer.post(("finish", {"pid": item.prompt_id, "status": status, "ended_at": time.time(),
                                        "history": _stored_entry(history_entry), "error": error}))
        with self._cond:
            self._running.pop(item.prompt_id, None)
            self._cond.notify_all()
        self._maybe_prune()

    def delete(self, prompt_ids) -> list[QueueItem]:
        removed = super().delete(prompt_ids)
        self._delete_rows([i.prompt_id for i in removed])
        return removed

    def clear(self) -> list[QueueItem]:
        removed = super().clear()
        self._delete_rows([i.prompt_id for i in removed])
        return removed

    def _delete_rows(self, prompt_ids: list[str]) -> None:
        if prompt_ids:
            self._writer.run(lambda conn: conn.execute(jobs.delete().where(jobs.c.prompt_id.in_(prompt_ids))))

    def _read(self):
        """A connection for reading, after every write queued so far has been committed."""
        if self._writer.pending():
            self._writer.flush()
        return self.db.connect()

    def contains(self, prompt_id: str) -> bool:
        with self._read() as conn:
            return conn.execute(sa.select(jobs.c.seq).where(jobs.c.prompt_id == prompt_id)).first() is not None

    def record(self, prompt_id: str, entry: dict) -> None:
        item = entry["prompt"]
        values = dict(status=_status_of(entry), ended_at=time.time(), history=_stored_entry(entry))

        def write(conn) -> None:
            updated = conn.execute(jobs.update().where(jobs.c.prompt_id == prompt_id).values(**values)).rowcount
            if not updated:
                conn.execute(jobs.insert().values(
                    prompt_id=prompt_id, number=item[0], client_id=(item[3] or {}).get("client_id"),
                    prompt=item[2], extra_data=item[3], outputs_to_execute=item[4], created_at=time.time(), **values))

        self._writer.run(write)
        self._maybe_prune()

    # ---- history (from the database) ----
    def get_history(self, max_items: int | None = None, offset: int = -1, prompt_id: str | None = None) -> dict:
        c = jobs.c
        query = sa.select(c.prompt_id, c.number, c.prompt, c.extra_data, c.outputs_to_execute, c.history).where(
            _IS_FINISHED, c.history.is_not(None))
        with self._read() as conn:
            if prompt_id is not None:
                rows = conn.execute(query.where(c.prompt_id == prompt_id)).all()
            else:
                if offset < 0 and max_items is not None:
                    total = conn.execute(sa.select(sa.func.count()).select_from(jobs)
                                         .where(_IS_FINISHED)).scalar()
                    offset = max(total - max_items, 0)
                query = query.order_by(c.ended_at, c.seq).offset(max(offset, 0))
                if max_items is not None:
                    query = query.limit(max_items)
                rows = conn.execute(query).all()
        return {row.prompt_id: _history_entry(row) for row in rows}

    def delete_history(self, prompt_ids) -> None:
        ids = list(prompt_ids)
        if ids:
            deleted = self._writer.run(lambda conn: conn.execute(
                jobs.delete().where(jobs.c.prompt_id.in_(ids), _IS_FINISHED)).rowcount)
            self._history_rows = max(self._history_rows - deleted, 0)

    def clear_history(self) -> None:
        self._writer.run(lambda conn: conn.execute(jobs.delete().where(_IS_FINISHED)))
        self._history_rows = 0

    def history_len(self) -> int:
        with self._read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(jobs).where(_IS_FINISHED)).scalar()

    def job_status(self, prompt_id: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(jobs.c.status).where(jobs.c.prompt_id == prompt_id)).scalar()

    def _maybe_prune(self) -> None:
        """Keep history at ``max_history`` jobs: once the estimate is 10 % (at least 100) over,
        the oldest go. Only then: the prune skips the newest ``max_history`` entries of the
        history index (on PostgreSQL visiting their rows too, a churning table's pages are
        rarely all-visible), which every 100th job paid before."""
        self._history_rows += 1
        if self._history_rows < self._max_history + max(100, self._max_history // 10):
            return
        self._history_rows = self._max_history
        self._writer.post(("prune", self._max_history))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.db.dispose()
