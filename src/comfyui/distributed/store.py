"""The cluster's shared job store: the ``jobs`` table of :mod:`comfyui.jobs.schema` in one
database (PostgreSQL for a cluster) that every frontend and worker writes to directly.

A job's row is the truth about it; the broker only carries work:

* a frontend inserts the row ``pending`` before it publishes the prompt (so a worker always
  finds it), marks it ``published_at`` once the broker confirmed, and acknowledges the client
  only then; a pending row left unmarked (its frontend died in between) is published again
  by any frontend after a while (:meth:`ClusterStore.republish_unpublished`);
* a worker *claims* the row before running (``in_progress``); a row that is finished already
  (a redelivery of a job that was recorded, or a job cancelled while it waited) is not run
  again: the worker just acknowledges the message;
* a worker *finishes* the row (status, ``ended_at``, history entry) before it acknowledges the
  message; only the first finish of a job is kept (``ended_at IS NULL`` in the update), so a
  job run twice (its first worker lost its broker connection mid-job) has one history entry;
* cancelling a pending job finishes its row as cancelled: the message still in the queue is
  then skipped by whichever worker gets it.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import sqlalchemy as sa

from ..engine.queue import QueueItem
from ..jobs.listing import create_time_of, finished_status, workflow_id_of
from ..jobs.schema import CANCELLED, FINISHED_CLAUSE, IN_PROGRESS, PENDING, jobs, migrate
from ..jobs.store import _number, _stored, make_engine

_MIGRATION_LOCK = 0x636F6D6679  # pg_advisory lock id: one process migrates a fresh database at a time


def prepare(db: sa.Engine) -> None:
    """Bring the database to the newest schema; several processes starting at once on one
    PostgreSQL database take turns (an advisory lock), so only the first one migrates."""
    if db.dialect.name != "postgresql":
        migrate(db)
        return
    with db.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        try:
            migrate(db)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()


def job_row(item: QueueItem, status: str = PENDING) -> dict:
    created = item.created_at or time.time()
    return dict(prompt_id=item.prompt_id, number=item.number, status=status, client_id=item.client_id,
                prompt=item.prompt, extra_data=item.extra_data, outputs_to_execute=item.outputs,
                created_at=created, create_time=create_time_of(item.extra_data, created),
                workflow_id=workflow_id_of(item.extra_data))


def item_of(row: Any) -> QueueItem:
    return QueueItem(number=_number(row.number), prompt_id=row.prompt_id, prompt=row.prompt,
                     extra_data=row.extra_data or {}, outputs=row.outputs_to_execute or [],
                     client_id=row.client_id, created_at=row.created_at)


def cancelled_entry(item: QueueItem, now: float) -> dict:
    message = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
               "timestamp": int(now * 1000)}
    return {"outputs": {}, "meta": {}, "cancelled": True,
            "status": {"status_str": "error", "completed": False, "messages": [["execution_interrupted", message]]}}


def failed_entry(prompt_id: str, exception_type: str, message: str, now: float | None = None) -> dict:
    """The history entry of a job that failed outside a node (not runnable, dead-lettered)."""
    now = time.time() if now is None else now
    error = {"prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
             "exception_message": message, "exception_type": exception_type, "traceback": [],
             "current_inputs": {}, "current_outputs": [], "timestamp": int(now * 1000)}
    return {"outputs": {}, "meta": {},
            "status": {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}}


class ClusterStore:
    """The writes and queue reads of the shared store (blocking; call from a thread)."""

    def __init__(self, url: str):
        self.db = make_engine(url)
        prepare(self.db)
        self.dialect = self.db.dialect.name

    def _insert(self) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(jobs)

    def _insert_new(self, conn: sa.Connection, row: dict) -> bool:
        """Insert ``row`` unless its prompt id exists; True when inserted."""
        statement = (self._insert().values(**row).on_conflict_do_nothing(index_elements=["prompt_id"])
                     .returning(jobs.c.prompt_id))
        return conn.execute(statement).first() is not None

    def _not_flushed(self, conn: sa.Connection) -> None:
        """PostgreSQL: this transaction's commit does not wait for the disk. For the writes whose
        loss in a database crash costs nothing: the pending row (the broker's durable queue holds
        the submission; a worker inserts a missing row) and the start mark (the message stays
        unacked until the finish, which is always flushed)."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))

    def insert_pending(self, item: QueueItem) -> bool:
        """Insert the job ``pending``; False when a job with its id exists already."""
        with self.db.begin() as conn:
            self._not_flushed(conn)
            return self._insert_new(conn, job_row(item))

    def mark_published(self, prompt_id: str) -> None:
        """The broker confirmed the job's prompt message: no frontend publishes it again."""
        with self.db.begin() as conn:
            self._not_flushed(conn)  # lost in a database crash: the prompt is published twice (harmless)
            conn.execute(jobs.update().where(jobs.c.prompt_id == prompt_id).values(published_at=time.time()))

    def republish_unpublished(self, older_than: float, publish: Callable[[QueueItem], None],
                              limit: int = 100) -> list[str]:
        """Publish again the pending jobs created before ``older_than`` whose publication was
        never confirmed (their frontend died between storing and publishing); -> their ids.
        ``publish`` blocks until the broker confirms. On PostgreSQL the rows stay locked
        (``SKIP LOCKED``) meanwhile, so two frontends never republish the same job; a frontend
        that dies here leaves them unmarked for the next one."""
        c = jobs.c
        done: list[str] = []
        with self.db.begin() as conn:
            rows = conn.execute(sa.select(jobs).where(c.status == PENDING, c.published_at.is_(None),
                                                      c.created_at < older_than)
                                .order_by(c.number, c.seq).limit(limit).with_for_update(skip_locked=True)).all()
            for row in rows:
                try:
                    publish(item_of(row))
                except Exception:  # noqa: BLE001 - the rest wait for the next round
                    break
                done.append(row.prompt_id)
            if done:
                conn.execute(jobs.update().where(c.prompt_id.in_(done)).values(published_at=time.time()))
        return done

    def forget_pending(self, prompt_id: str) -> None:
        """Remove a job whose submission failed (its prompt never reached the broker)."""
        with self.db.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.prompt_id == prompt_id, jobs.c.status == PENDING))

    def claim(self, item: QueueItem) -> bool:
        """Mark the job running; False when it is finished already (do not run it again). A
        job nobody inserted (published straight to the broker) is inserted here."""
        now = time.time()
        c = jobs.c
        with self.db.begin() as conn:
            self._not_flushed(conn)
            updated = conn.execute(jobs.update().where(c.prompt_id == item.prompt_id, c.ended_at.is_(None))
                                   .values(status=IN_PROGRESS, started_at=now)).rowcount
            if updated:
                return True
            return self._insert_new(conn, dict(job_row(item, IN_PROGRESS), started_at=now))

    def finish(self, item: QueueItem, entry: dict) -> bool:
        """Record the job's end; False when it had been recorded already (the first stays).
        ``entry`` is ComfyUI's history entry (its "prompt" item is rebuilt from the row)."""
        stored = _stored(entry)
        error = next((m[1] for m in stored.get("status", {}).get("messages", []) if m[0] == "execution_error"), None)
        values = dict(status=finished_status(entry), ended_at=time.time(), history=stored, error=error)
        c = jobs.c
        with self.db.begin() as conn:
            if conn.execute(jobs.update().where(c.prompt_id == item.prompt_id, c.ended_at.is_(None))
                            .values(**values)).rowcount:
                return True
            # a job nobody inserted and that never started (dead-lettered before any claim)
            return self._insert_new(conn, dict(job_row(item), **values))

    def cancel_pending(self, prompt_ids: list[str]) -> list[QueueItem]:
        """Finish these jobs as cancelled where they are still pending; -> those items."""
        now = time.time()
        c = jobs.c
        items = []
        with self.db.begin() as conn:
            for prompt_id in prompt_ids:
                row = conn.execute(jobs.update().where(c.prompt_id == prompt_id, c.status == PENDING)
                                   .values(status=CANCELLED, ended_at=now).returning(jobs)).first()
                if row is not None:
                    item = item_of(row)
                    conn.execute(jobs.update().where(c.prompt_id == prompt_id)
                                 .values(history=cancelled_entry(item, now)))
                    items.append(item)
        return items

    def queued(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """(running, pending) jobs of the whole cluster, pending ones in queue order."""
        c = jobs.c
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(jobs).where(c.ended_at.is_(None)).order_by(c.number, c.seq)).all()
        running = [item_of(r) for r in rows if r.status == IN_PROGRESS]
        pending = [item_of(r) for r in rows if r.status == PENDING]
        return running, pending

    def find(self, prompt_id: str) -> tuple[QueueItem, str] | None:
        """A queued job and its status (pending / in_progress), or None."""
        c = jobs.c
        with self.db.connect() as conn:
            row = conn.execute(sa.select(jobs).where(c.prompt_id == prompt_id, c.ended_at.is_(None))).first()
        return None if row is None else (item_of(row), row.status)

    def remaining(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)
                                    .where(jobs.c.ended_at.is_(None))).scalar() or 0)

    def status_of(self, prompt_id: str) -> str | None:
        with self.db.connect() as conn:
            return conn.execute(sa.select(jobs.c.status).where(jobs.c.prompt_id == prompt_id)).scalar()

    def history_entry(self, prompt_id: str) -> dict | None:
        from ..jobs.store import _history_entry

        c = jobs.c
        with self.db.connect() as conn:
            row = conn.execute(sa.select(c.prompt_id, c.number, c.prompt, c.extra_data, c.outputs_to_execute,
                                         c.history).where(c.prompt_id == prompt_id, FINISHED_CLAUSE,
                                                          c.history.is_not(None))).first()
        return None if row is None else _history_entry(row)

    def close(self) -> None:
        self.db.dispose()
