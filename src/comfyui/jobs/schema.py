"""The job database's schema, in one place: tables, indexes and the job states.

Alembic migrations (``migrations/versions``) take an existing database to this schema
(:func:`migrate`); a test checks that a database migrated to the head revision has exactly
these tables, columns and indexes.

A job's row is inserted ``pending``, updated when it starts (``in_progress``) and once more
when it finishes (``completed``, ``failed`` or ``cancelled``, with ``ended_at`` and its
history entry). A job is *finished* exactly when ``ended_at`` is set; both indexes over jobs
are partial indexes over finished jobs, so a job's index entries are written once, when it
finishes:

* ``ix_jobs_history`` (``ended_at``, ``seq``): history in the order jobs finished
  (``/history``, the prune of the oldest entries);
* ``ix_jobs_created`` (``create_time``, ``number``): the Jobs API's default order.

Both carry ``status``, so history counts by status are read from an index alone.
"""
from __future__ import annotations

import pathlib

import sqlalchemy as sa

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "pending", "in_progress", "completed", "failed", "cancelled"
QUEUED = (PENDING, IN_PROGRESS)
FINISHED = (COMPLETED, FAILED, CANCELLED)
STATUSES = QUEUED + FINISHED

# A planner uses a partial index only for a condition it can see implies the index's
# predicate, so queries over finished jobs name it literally (FINISHED_CLAUSE, at the end).
FINISHED_PREDICATE = "ended_at IS NOT NULL"

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prompt_id", sa.String(128), nullable=False, unique=True),
    sa.Column("number", sa.Float, nullable=False),  # queue order (negative: submitted to the front)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("client_id", sa.String(128)),
    sa.Column("prompt", sa.JSON, nullable=False),
    sa.Column("extra_data", sa.JSON, nullable=False),  # secrets never reach it
    sa.Column("outputs_to_execute", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # seconds (time.time())
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),  # set exactly when the job finished
    # None is SQL NULL in these two (not a JSON null)
    sa.Column("history", sa.JSON(none_as_null=True)),  # ComfyUI's history entry without its "prompt" item
    sa.Column("error", sa.JSON(none_as_null=True)),  # the execution_error message's data, when it failed
    sa.Column("create_time", sa.Float),  # milliseconds: the Jobs API's create_time (revision 0004)
    sa.Column("workflow_id", sa.String),  # extra_data.extra_pnginfo.workflow.id (revision 0004)
    # a cluster's job: when the broker confirmed its prompt message (revision 0005)
    sa.Column("published_at", sa.Float),
)
sa.Index("ix_jobs_history", jobs.c.ended_at, jobs.c.seq, jobs.c.status,
         sqlite_where=sa.text(FINISHED_PREDICATE), postgresql_where=sa.text(FINISHED_PREDICATE))
sa.Index("ix_jobs_created", jobs.c.create_time, jobs.c.number, jobs.c.status,
         sqlite_where=sa.text(FINISHED_PREDICATE), postgresql_where=sa.text(FINISHED_PREDICATE))

# Files a job produced (kind "output") or uploaded with it (kind "input"), by content hash:
# the index behind /api/v1/images/{digest} and per-job output deletion (comfyui.jobs.retention).
job_files = sa.Table(
    "job_files", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prompt_id", sa.String(128), nullable=False, index=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("folder_type", sa.String(16), nullable=False),
    sa.Column("subfolder", sa.String(1024), nullable=False),
    sa.Column("filename", sa.String(1024), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

FINISHED_CLAUSE = sa.text(FINISHED_PREDICATE)


def migrate(engine: sa.Engine) -> None:
    """Bring the database to the newest schema revision (Alembic, ``migrations/``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(pathlib.Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
