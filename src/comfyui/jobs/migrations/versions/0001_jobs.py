"""jobs table

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
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
    op.create_index("ix_jobs_status_number", "jobs", ["status", "number"])
    op.create_index("ix_jobs_ended_at", "jobs", ["ended_at"])


def downgrade() -> None:
    op.drop_table("jobs")
