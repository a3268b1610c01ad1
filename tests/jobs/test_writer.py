"""The durable store's one commit path: an acknowledged submit is on disk, submits made together
share a commit, a failure reaches only its submitter, and reads see every earlier change."""
import asyncio
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from comfyui.jobs import DurableQueue
from comfyui.jobs.schema import jobs

from test_store import done, item


def rows(path: str) -> set[str]:
    """What another process reading the database file would see."""
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT prompt_id FROM jobs")}


def count_commits(store: DurableQueue) -> dict:
    counts = {"commits": 0}
    sa.event.listen(store.db, "commit", lambda _conn: counts.__setitem__("commits", counts["commits"] + 1))
    return counts


def test_submits_made_together_share_commits_and_are_on_disk_when_acknowledged(tmp_path):
    path = str(tmp_path / "jobs.db")
    store = DurableQueue(f"sqlite:///{path}")
    counts = count_commits(store)
    try:
        async def submit_many():
            acks = [store.put(item(n), wait=False) for n in range(1, 201)]
            await asyncio.gather(*(asyncio.wrap_future(a) for a in acks))

        asyncio.run(submit_many())
        assert counts["commits"] < 100  # grouped: far fewer commits than submits
        assert rows(path) == {f"p{n}" for n in range(1, 201)}
        # acknowledged items are runnable, in order
        assert [store.get(0).prompt_id for _ in range(3)] == ["p1", "p2", "p3"]
    finally:
        store.close()


def test_a_blocking_submit_is_on_disk_when_put_returns(tmp_path):
    path = str(tmp_path / "jobs.db")
    store = DurableQueue(f"sqlite:///{path}")
    try:
        store.put(item(1))
        assert rows(path) == {"p1"}
    finally:
        store.close()


def test_a_failed_commit_reaches_only_its_submitter_and_queues_nothing(db_url):
    store = DurableQueue(db_url)
    try:
        store.put(item(1, pid="same"))
        store.get(0)

        async def together():
            return await asyncio.gather(*(asyncio.wrap_future(store.put(it, wait=False))
                                          for it in (item(2), item(3, pid="same"), item(4))), return_exceptions=True)

        results = asyncio.run(together())
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], sa.exc.IntegrityError)
        assert [store.get(0).prompt_id for _ in range(2)] == ["p2", "p4"]
        assert store.get(0) is None  # the refused item never became runnable
    finally:
        store.close()


def test_worker_updates_are_visible_to_the_next_read_committed_or_not(db_url):
    store = DurableQueue(db_url)
    try:
        for n in range(1, 21):
            store.put(item(n))
        for _ in range(20):
            done(store, store.get(0), ok=True)
        # posted without waiting, yet every read sees them (from memory until committed)
        assert all(store.job_status(f"p{n}") == "completed" for n in range(1, 21))
        assert store.jobs_page({"completed"}, "created_at", True, 0, None)[1] == 20
        assert store.get_history(prompt_id="p20")["p20"]["status"]["status_str"] == "success"
        assert store.history_len() == 20
    finally:
        store.close()


def test_one_batch_keeps_each_jobs_order_and_a_started_job_keeps_null_results(db_url):
    """A job inserted, started and finished in one batch, next to an edit of another job, and a
    job only started: each reads back in its final state (SQL NULLs, not JSON nulls)."""
    store = DurableQueue(db_url)
    writer = store._writer
    def row(pid):
        return dict(prompt_id=pid, number=int(pid[1:]), status="pending", client_id=None, prompt={}, extra_data={},
                    outputs_to_execute=[], created_at=time.time(), create_time=1.0, workflow_id=None)

    try:
        writer.run("insert", row("p1"))
        gate, release = threading.Event(), threading.Event()
        # hold the writer inside a transaction so that the next operations form one batch
        writer.submit("call", lambda conn: (gate.set(), release.wait(5)), wait=False)
        assert gate.wait(5)
        writer.submit("insert", row("p2"), wait=False)
        writer.submit("start", {"pid": "p2", "status": "in_progress", "started_at": 5.0}, wait=False)
        writer.submit("call", lambda conn: conn.execute(jobs.update().where(jobs.c.prompt_id == "p1")
                                                         .values(started_at=1.0)), wait=False)
        writer.submit("finish", {"pid": "p2", "status": "completed", "ended_at": 9.0,
                                 "history": {"outputs": {}, "meta": {}}, "error": None}, wait=False)
        writer.submit("start", {"pid": "p1", "status": "in_progress", "started_at": 2.0}, wait=False)
        release.set()
        assert writer.flush(5)
        assert store.job_status("p2") == "completed" and store.job_status("p1") == "in_progress"
        with store.db.connect() as conn:
            got = {r.prompt_id: r for r in conn.execute(sa.select(jobs))}
            null_history = set(conn.execute(sa.select(jobs.c.prompt_id).where(jobs.c.history.is_(None))).scalars())
            null_error = set(conn.execute(sa.select(jobs.c.prompt_id).where(jobs.c.error.is_(None))).scalars())
        assert (got["p2"].started_at, got["p2"].ended_at) == (5.0, 9.0)
        assert got["p1"].started_at == 2.0 and got["p1"].ended_at is None
        assert null_history == {"p1"} and null_error == {"p1", "p2"}
    finally:
        store.close()


def test_a_closed_store_refuses_writes(tmp_path):
    store = DurableQueue(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.put(item(1))


def test_reads_do_not_wait_for_a_commit_and_still_see_the_finished_job(db_url):
    """While the writer is stuck in a transaction, a job that has just finished is already
    listed finished (from memory), and the reads answer at once."""
    store = DurableQueue(db_url)
    try:
        for n in (1, 2):
            store.put(item(n))
        done(store, store.get(0))
        store._writer.flush()
        gate, release = threading.Event(), threading.Event()
        store._writer.submit("call", lambda conn: (gate.set(), release.wait(10)), wait=False)
        assert gate.wait(5)
        second = store.get(0)
        done(store, second, ok=False)
        t = time.monotonic()
        assert store.job_status("p2") == "failed"
        page, total = store.jobs_page({"completed", "failed", "cancelled"}, "created_at", True, 0, 10)
        assert [j["id"] for _k, j in page] == ["p2", "p1"] and total == 2
        assert store.finished_job("p2")["status"] == "failed"
        assert store.get_history(prompt_id="p2")["p2"]["status"]["status_str"] == "error"
        assert time.monotonic() - t < 5  # none of them waited for the stuck writer
        release.set()
        store._writer.flush()
        page, total = store.jobs_page({"completed", "failed", "cancelled"}, "created_at", True, 0, 10)
        assert [j["id"] for _k, j in page] == ["p2", "p1"] and total == 2  # now from the database
    finally:
        release.set()
        store.close()
