"""jobs.published_at: when the broker confirmed a cluster job's prompt message

Revision ID: 0005

A frontend of a cluster inserts a job ``pending``, publishes its prompt, and marks the row
published once the broker confirms. A pending row left unmarked for long (its frontend died
in between) is published again by any frontend. Existing rows count as published.
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("published_at", sa.Float))
    jobs = sa.table("jobs", sa.column("created_at", sa.Float), sa.column("published_at", sa.Float))
    op.get_bind().execute(jobs.update().values(published_at=jobs.c.created_at))


def downgrade() -> None:
    op.drop_column("jobs", "published_at")
