"""The job database's connection: opening it, keeping an SQLite file healthy, and what an
error of the database means for the store.

* PostgreSQL (psycopg): a dropped connection fails the one statement that meets it and
  empties the pool; the writer retries on a fresh connection, a read runs once more.
* SQLite: WAL with ``synchronous=NORMAL`` (a commit survives kill -9; readers never block
  the writer). :func:`checkpoint` truncates the log, which never shrinks otherwise.
  SQLite maps its ``-shm`` file: once another process truncates it, the next access kills
  this process with SIGBUS. Every checkout first checks the file's size and, when it is
  cut short, logs why and exits with status 70 (committed jobs are safe; a restart
  rebuilds the file). :func:`check_writable` makes a read-only database fail at start-up.
* :func:`unavailable_error` tells faults of the database (lost connection, disk full,
  read-only: ``StoreUnavailable``, 503) from an operation's own error (a constraint it
  breaks); after :func:`connection_lost` faults a COMMIT may or may not have committed.
"""
from __future__ import annotations

import logging
import os
import pathlib
import sqlite3

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ..engine.queue import StoreUnavailable
from ..jsonutil import dumps_strict, loads
from ..redact import redact_text

log = logging.getLogger(__name__)

SHM_MIN_SIZE = 32768  # the -shm file's first region, which every SQLite connection maps


def make_engine(url: str) -> sa.Engine:
    codec = dict(json_serializer=dumps_strict, json_deserializer=loads)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith("sqlite"):
        return sa.create_engine(url, **codec)
    path = url.split("sqlite:///", 1)[-1] if url not in ("sqlite://", "sqlite:///:memory:") else ""
    if path:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False},
                              poolclass=None if path else StaticPool, **codec)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    if path:
        sa.event.listen(engine, "checkout", lambda *_args: _check_shm(path + "-shm"))
    return engine


def _check_shm(shm: str) -> None:
    try:
        size = os.stat(shm).st_size
    except FileNotFoundError:  # unlinked: our mapping is still whole
        return
    if size < SHM_MIN_SIZE:
        log.critical("the job database's shared-memory file %s was truncated by another process "
                     "(%d bytes); using it would crash this process (SIGBUS), so the server stops now. "
                     "Committed jobs are safe; restart the server.", shm, size)
        logging.shutdown()
        os._exit(70)


def check_writable(db: sa.Engine) -> None:
    """SQLite: write the header's user_version (unchanged), so that a read-only file, folder
    or file system fails now rather than at the first prompt."""
    if db.dialect.name == "sqlite":
        with db.begin() as conn:
            version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
            conn.exec_driver_sql(f"PRAGMA user_version = {version}")


def checkpoint(db: sa.Engine) -> bool:
    """SQLite: copy the write-ahead log into the database and truncate it; False when a
    reader held it (to be tried again)."""
    if db.dialect.name != "sqlite":
        return True
    with db.connect() as conn:
        busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
    return not busy or not busy[0]


def connection_lost(e: BaseException) -> bool:
    """A dropped or refused connection: a COMMIT that met it may have committed."""
    return isinstance(e, sa.exc.DBAPIError) and (e.connection_invalidated or (
        isinstance(e, sa.exc.OperationalError) and not isinstance(e.orig, sqlite3.Error)))


def describe(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip()
    return redact_text(text.splitlines()[0]) if text else type(orig).__name__


def unavailable_error(e: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable a fault of the database means, or None for an operation's own error."""
    if not (connection_lost(e) or isinstance(e, sa.exc.OperationalError)):
        return None
    error = StoreUnavailable(f"the job database is unavailable: {describe(e)}")
    error.__cause__ = e
    return error
