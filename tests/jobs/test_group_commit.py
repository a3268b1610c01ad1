"""How the durable store commits: an acknowledged submit is on disk, submits made together share
a commit, and SQLite's WAL is checkpointed off the hot path."""
import asyncio
import os
import sqlite3
import time

import pytest

from comfyui.jobs import DurableQueue
from comfyui.jobs import store as store_module

from test_store import done, item


def rows(path: str) -> set[str]:
    """What another process reading the database file would see."""
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT prompt_id FROM jobs")}


@pytest.fixture
def count_transactions(monkeypatch):
    counts = {"transactions": 0}
    original = store_module._GroupWriter._transaction

    def counted(self, ops, fast=True):
        counts["transactions"] += 1
        return original(self, ops, fast)

    monkeypatch.setattr(store_module._GroupWriter, "_transaction", counted)
    return counts


def test_submits_from_one_loop_turn_share_a_commit_and_are_on_disk_when_acknowledged(tmp_path, count_transactions):
    path = str(tmp_path / "jobs.db")
    store = DurableQueue(f"sqlite:///{path}")
    try:
        async def submit_many():
            acks = [store.put(item(n), wait=False) for n in range(1, 51)]
            assert not any(a.done() for a in acks)  # committed at the loop's next turn, not before
            before = count_transactions["transactions"]
            await asyncio.gather(*(asyncio.wrap_future(a) for a in acks))
            return count_transactions["transactions"] - before

        commits = asyncio.run(submit_many())
        assert commits == 1
        assert rows(path) == {f"p{n}" for n in range(1, 51)}
        # acknowledged items are runnable, in order
        assert [store.get(0).prompt_id for _ in range(3)] == ["p1", "p2", "p3"]
    finally:
        store.close()


def test_a_submit_outside_an_event_loop_commits_before_put_returns(tmp_path):
    path = str(tmp_path / "jobs.db")
    store = DurableQueue(f"sqlite:///{path}")
    try:
        assert store.put(item(1), wait=False) is None  # committed in the caller's thread
        assert rows(path) == {"p1"}
        store.put(item(2))
        assert rows(path) == {"p1", "p2"}
    finally:
        store.close()


def test_a_failed_commit_reaches_the_submitter_and_queues_nothing(db_url):
    store = DurableQueue(db_url)
    try:
        store.put(item(1, pid="same"))
        store.get(0)

        async def duplicate():
            await asyncio.wrap_future(store.put(item(2, pid="same"), wait=False))

        with pytest.raises(Exception, match="(?i)unique"):
            asyncio.run(duplicate())
        assert store.get(0) is None  # the refused item never became runnable
    finally:
        store.close()


def test_worker_updates_are_gathered_and_visible_to_readers(tmp_path, count_transactions):
    store = DurableQueue(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        for n in range(1, 21):
            store.put(item(n))
        before = count_transactions["transactions"]
        for _ in range(20):
            done(store, store.get(0))
        # every read first waits for the updates queued before it
        assert all(store.job_status(f"p{n}") == "completed" for n in range(1, 21))
        assert count_transactions["transactions"] - before < 20
    finally:
        store.close()


def test_wal_is_checkpointed_in_the_background_and_emptied_on_close(tmp_path):
    path = str(tmp_path / "jobs.db")
    store = DurableQueue(f"sqlite:///{path}")
    store._checkpointer.interval = 0.05
    size_before = os.path.getsize(path)
    for n in range(1, 201):
        store.put(item(n, pid=f"p{n}-" + "x" * 100))
    # no commit checkpoints (they would stall it); the checkpointer copies the WAL into the file
    deadline = time.monotonic() + 10
    while os.path.getsize(path) <= size_before:
        assert time.monotonic() < deadline, "the WAL was never checkpointed"
        time.sleep(0.02)
    store.close()
    wal = path + "-wal"
    assert not os.path.exists(wal) or os.path.getsize(wal) == 0
    assert len(rows(path)) == 200


def test_postgres_submits_from_a_loop_commit_on_its_own_connection(postgres_url):
    import sqlalchemy as sa

    store = DurableQueue(postgres_url)
    try:
        async def submit_many():
            acks = [store.put(item(n), wait=False) for n in range(1, 31)]
            await asyncio.gather(*(asyncio.wrap_future(a) for a in acks))
            return store._writer._aconn  # the loop's own (asyncio) connection did it

        assert asyncio.run(submit_many()) is not None
        reader = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with reader.connect() as conn:  # acknowledged = committed, seen from anywhere
            assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar() == 30
        reader.dispose()
        assert [store.get(0).prompt_id for _ in range(3)] == ["p1", "p2", "p3"]
        # a second event loop gets a connection of its own
        async def one_more():
            await asyncio.wrap_future(store.put(item(31), wait=False))
        asyncio.run(one_more())
        assert store.job_status("p31") == "pending"
    finally:
        store.close()


def test_postgres_submits_survive_the_loop_connection_being_killed(postgres_url):
    """The server ends the loop's connection (a restart, an admin): the submits caught in it
    are committed by the writer instead, acknowledged once; later ones reconnect."""
    import sqlalchemy as sa

    store = DurableQueue(postgres_url)
    admin = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    try:
        async def scenario():
            await asyncio.gather(*(asyncio.wrap_future(store.put(item(n), wait=False)) for n in range(1, 6)))
            first = store._writer._aconn
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first.pgconn.backend_pid})
            await asyncio.gather(*(asyncio.wrap_future(store.put(item(n), wait=False)) for n in range(6, 11)))
            await asyncio.gather(*(asyncio.wrap_future(store.put(item(n), wait=False)) for n in range(11, 16)))
            return first, store._writer._aconn

        first, last = asyncio.run(scenario())
        assert last is not None and last is not first  # a new connection took over
        with admin.connect() as conn:
            ids = conn.execute(sa.text("SELECT prompt_id FROM jobs ORDER BY number")).scalars().all()
        assert ids == [f"p{n}" for n in range(1, 16)]
        assert [store.get(0).prompt_id for _ in range(15)] == [f"p{n}" for n in range(1, 16)]
    finally:
        store.close()
        admin.dispose()


def test_postgres_loop_batches_beyond_the_prepared_statements_still_commit(postgres_url, monkeypatch):
    """Each batch size is a statement of its own; past MAX_PREPARED they go unprepared."""
    from comfyui.jobs.store import _LoopPostgres

    monkeypatch.setattr(_LoopPostgres, "MAX_PREPARED", 2)
    store = DurableQueue(postgres_url)
    try:
        async def batches():
            n = 0
            for size in (1, 2, 3, 4, 5, 3, 1):
                acks = [store.put(item(n + k), wait=False) for k in range(1, size + 1)]
                n += size
                await asyncio.gather(*(asyncio.wrap_future(a) for a in acks))
            return n, store._writer._aconn

        total, conn = asyncio.run(batches())
        assert len(conn._statements) == 2 and len(conn._prepared) == 2
        assert [store.get(0).prompt_id for _ in range(total)] == [f"p{n}" for n in range(1, total + 1)]
    finally:
        store.close()
