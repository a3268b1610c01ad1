"""Alembic environment: always run programmatically with a live connection
(``config.attributes["connection"]``), from ``comfyui.jobs.schema.migrate``."""
from alembic import context

from comfyui.jobs.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
