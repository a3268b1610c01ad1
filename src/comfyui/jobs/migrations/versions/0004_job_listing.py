"""the Jobs API's order and filter as columns: create_time, workflow_id, ix_jobs_created

Revision ID: 0004

``GET /api/jobs`` lists finished jobs newest first by ``create_time`` (a value inside
``extra_data``) and filters by workflow id (deep inside ``extra_data``). As columns, with a
partial index over finished jobs in that order, a page is read from the index instead of
every row's JSON. Existing rows get both values from their ``extra_data``.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ENDED = "ended_at IS NOT NULL"  # finished jobs have an end time


def upgrade() -> None:
    op.add_column("jobs", sa.Column("create_time", sa.Float))
    op.add_column("jobs", sa.Column("workflow_id", sa.String))
    from comfyui.jobs.listing import create_time_of, workflow_id_of

    jobs = sa.table("jobs", sa.column("seq", sa.Integer), sa.column("extra_data", sa.JSON),
                    sa.column("created_at", sa.Float), sa.column("create_time", sa.Float),
                    sa.column("workflow_id", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(jobs.c.seq, jobs.c.extra_data, jobs.c.created_at)).all()
    if rows:
        conn.execute(jobs.update().where(jobs.c.seq == sa.bindparam("key")).values(
            create_time=sa.bindparam("ct"), workflow_id=sa.bindparam("wid")),
            [{"key": r.seq, "ct": create_time_of(r.extra_data, r.created_at), "wid": workflow_id_of(r.extra_data)}
             for r in rows])
    op.create_index("ix_jobs_created", "jobs", ["create_time", "number", "status"],
                    sqlite_where=sa.text(ENDED), postgresql_where=sa.text(ENDED))


def downgrade() -> None:
    op.drop_index("ix_jobs_created", "jobs")
    op.drop_column("jobs", "workflow_id")
    op.drop_column("jobs", "create_time")
