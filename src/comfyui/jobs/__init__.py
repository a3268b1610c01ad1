"""Durable jobs: the prompt queue and history in a database (SQLite by default, PostgreSQL
with ``--database-url``), so a restart or crash loses no acknowledged job."""
from .store import DurableQueue

__all__ = ["DurableQueue"]
