"""one partial index over finished jobs instead of status and ended_at indexes

Revision ID: 0003

A job's row is inserted pending and updated twice; the two full indexes took an entry change
on every one of these writes (on PostgreSQL every update of an indexed column is a new entry in
every index). Only history queries need an index: a partial one over finished jobs (those with
an end time), in history order, takes an entry once per job, when it finishes. Its predicate is
on ended_at, not status: SQLite's UPDATE costs more when it changes a column that a partial
index's predicate reads, and every update changes status. Start-up's scan for pending and
running jobs reads the table once.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ENDED = "ended_at IS NOT NULL"  # finished jobs have an end time


def upgrade() -> None:
    op.drop_index("ix_jobs_status_number", "jobs")
    op.drop_index("ix_jobs_ended_at", "jobs")
    # status too, so that counting history reads only the index (SQLite)
    op.create_index("ix_jobs_history", "jobs", ["ended_at", "seq", "status"],
                    sqlite_where=sa.text(ENDED), postgresql_where=sa.text(ENDED))


def downgrade() -> None:
    op.drop_index("ix_jobs_history", "jobs")
    op.create_index("ix_jobs_status_number", "jobs", ["status", "number"])
    op.create_index("ix_jobs_ended_at", "jobs", ["ended_at"])
