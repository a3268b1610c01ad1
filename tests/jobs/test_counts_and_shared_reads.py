"""The durable store's in-memory counts of finished jobs stay equal to the database's across
finishes, cancels, deletions, clears, prunes and restarts; equal reads waiting for a reader
thread share one run, and a run that started before a call is never shared with it."""
import asyncio
import threading
import time

import sqlalchemy as sa

from comfyui.engine.queue import QueueItem, history_entry
from comfyui.jobs import DurableQueue
from comfyui.jobs.schema import FINISHED, FINISHED_CLAUSE, jobs


def item(n: int) -> QueueItem:
    return QueueItem(number=n, prompt_id=f"p{n}", prompt={"1": {"class_type": "X", "inputs": {}}},
                     extra_data={"create_time": n}, outputs=["1"], created_at=time.time())


def finish(store: DurableQueue, n: int, status: str) -> None:
    store.put(item(n))
    it = store.get(0)
    store.task_done(it, history_entry(it, status=status, outputs={}, messages=[], meta={}))


def cancel_pending(store: DurableQueue, n: int) -> None:
    """What Engine.cancel does to a pending job: off the queue, into history as cancelled."""
    store.put(item(n))
    (removed,) = store.delete([f"p{n}"])
    store.record(removed.prompt_id, history_entry(removed, status="error", outputs={}, meta={},
                                                  messages=[["execution_interrupted", {}]]))


def database_counts(store: DurableQueue) -> dict:
    store._writer.flush()
    with store.db.connect() as conn:
        return dict(conn.execute(sa.select(jobs.c.status, sa.func.count()).where(FINISHED_CLAUSE)
                                 .group_by(jobs.c.status)).all())


def assert_counts_match(store: DurableQueue) -> dict:
    """Every total the Jobs API shows equals a COUNT in the database."""
    counts = database_counts(store)
    for status in FINISHED:
        assert store.jobs_page({status}, "created_at", True, 0, 1)[1] == counts.get(status, 0), status
    assert store.jobs_page(set(FINISHED), "created_at", True, 0, 1)[1] == sum(counts.values())
    assert store.history_len() == sum(counts.values())
    return counts


def test_counts_follow_finishes_cancels_deletions_clears_and_restarts(db_url):
    store = DurableQueue(db_url)
    try:
        for n in range(1, 9):
            finish(store, n, "success" if n % 3 else "error")
        # read while finishes may be uncommitted: the finishing jobs count from memory
        assert store.jobs_page(set(FINISHED), "created_at", True, 0, 1)[1] == 8
        assert assert_counts_match(store) == {"completed": 6, "failed": 2}
        cancel_pending(store, 9)
        cancel_pending(store, 10)
        assert assert_counts_match(store) == {"completed": 6, "failed": 2, "cancelled": 2}
        # recorded again over a finished job: replaced, not counted twice
        store.record("p1", history_entry(item(1), status="error", outputs={}, messages=[], meta={}))
        assert assert_counts_match(store) == {"completed": 5, "failed": 3, "cancelled": 2}
        store.delete_history(["p2", "p3", "p9", "nope"])
        assert assert_counts_match(store) == {"completed": 4, "failed": 2, "cancelled": 1}
        store.put(item(11))  # a pending job is neither counted nor deleted by a clear
        store.clear_history()
        assert assert_counts_match(store) == {}
        assert store.job_status("p11") == "pending"
        store.get(0)  # in progress when the store closes: failed (interrupted) on restart
        finish(store, 12, "success")
    finally:
        store.close()
    reopened = DurableQueue(db_url)
    try:
        assert assert_counts_match(reopened) == {"completed": 1, "failed": 1}
    finally:
        reopened.close()


def test_counts_follow_the_prune(db_url):
    store = DurableQueue(db_url, max_history=5)
    try:
        for n in range(1, 112):  # a prune is due at 105 finished jobs
            finish(store, n, ("success", "error")[n % 2])
        counts = assert_counts_match(store)
        assert sum(counts.values()) <= 11
        assert store.jobs_page(set(FINISHED), "created_at", True, 0, 1)[0][0][1]["id"] == "p111"
    finally:
        store.close()


def test_equal_waiting_reads_share_one_run_and_started_runs_are_never_joined(tmp_path):
    store = DurableQueue(f"sqlite:///{tmp_path / 'jobs.db'}")
    runs: list[str] = []

    def read(name: str) -> list:
        runs.append(name)
        return [name, len(runs)]

    async def scenario() -> None:
        gate = threading.Event()
        blockers = [asyncio.ensure_future(store.call(gate.wait)) for _ in range(2)]  # both reader threads busy
        await asyncio.sleep(0.1)
        same = [asyncio.ensure_future(store.call(read, "a", key="a")) for _ in range(6)]
        other = asyncio.ensure_future(store.call(read, "b", key="b"))
        unkeyed = [asyncio.ensure_future(store.call(read, "c")) for _ in range(2)]
        same[0].cancel()  # a caller that goes away does not take the others' answer with it
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.gather(*blockers)
        answers = await asyncio.gather(*same[1:])
        assert all(answer == answers[0] for answer in answers) and answers[0][0] == "a"
        assert (await other)[0] == "b" and [a[0] for a in await asyncio.gather(*unkeyed)] == ["c", "c"]
        assert sorted(runs) == ["a", "b", "c", "c"]

        # a run that has started may miss a change made after it began: a later call runs again
        started, release = threading.Event(), threading.Event()

        def slow(name: str) -> int:
            runs.append(name)
            number = len(runs)
            started.set()
            release.wait()
            return number

        first = asyncio.ensure_future(store.call(slow, "s", key="s"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait)
        second = asyncio.ensure_future(store.call(slow, "s", key="s"))
        await asyncio.sleep(0.1)
        release.set()
        assert sorted([await first, await second]) == [5, 6]

    try:
        asyncio.run(scenario())
    finally:
        store.close()
