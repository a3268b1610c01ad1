"""Jobs: the durable queue and history (``DurableQueue``: SQLite by default, PostgreSQL with
``--database-url``, so a restart or crash loses no acknowledged job), the Jobs API's view of
jobs (``listing``), prompt submission (``submission``) and output retention (``retention``).
``DurableQueue`` is imported on first use (it brings SQLAlchemy and Alembic)."""


def __getattr__(name: str):
    if name == "DurableQueue":
        from .store import DurableQueue

        return DurableQueue
    raise AttributeError(name)


__all__ = ["DurableQueue"]
