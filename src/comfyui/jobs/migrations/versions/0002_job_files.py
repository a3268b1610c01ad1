"""job_files table (content-addressed outputs and per-job inputs)

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_files",
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
    op.create_index("ix_job_files_sha256", "job_files", ["sha256"])
    op.create_index("ix_job_files_prompt_id", "job_files", ["prompt_id"])
    op.create_index("ix_job_files_filename", "job_files", ["filename"])


def downgrade() -> None:
    op.drop_table("job_files")
