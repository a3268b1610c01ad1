"""kill -9 of a real server in the middle of a queue of 50 jobs, then a restart: every
acknowledged job ends completed, or failed with a clear reason for the one that was running;
none is missing and the history written before the crash is intact. SQLite and PostgreSQL."""
from __future__ import annotations

import uuid

import pytest

from _proc import ServerProcess, sleep_prompt, wait_until

JOBS = 50
CRASH_AT = 10


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'user' / 'jobs.db'}"
    return request.getfixturevalue("postgres_url")


def _statuses(client, ids):
    jobs = client.get("/api/jobs?limit=100000").json()["jobs"]
    by_id = {j["id"]: j for j in jobs}
    return {pid: by_id[pid]["status"] for pid in ids if pid in by_id}, by_id


def test_kill_9_mid_queue_then_restart(tmp_path, database_url):
    base = str(tmp_path)
    server = ServerProcess(base, database_url).start()
    tag = uuid.uuid4().hex[:8]
    acknowledged: list[str] = []
    client = server.client()
    try:
        for n in range(JOBS):
            # half with client-chosen ids, half with server-made ones
            extra = {"prompt_id": f"{tag}-{n}"} if n % 2 else {}
            # job 10 runs long, so the crash is sure to hit it while it runs
            seconds = 60 if n == CRASH_AT else 0.1
            acknowledged.append(client.submit(sleep_prompt(f"{tag}-{n}", seconds), **extra))
        wait_until(lambda: [i[1] for i in client.get("/api/queue").json()["queue_running"]] == [acknowledged[CRASH_AT]],
                   timeout=30, what=f"job {CRASH_AT} to run")
        # a read waits for the store's queued writes, so the job's start is on disk now
        assert client.get(f"/api/v1/prompts/{acknowledged[CRASH_AT]}").status == 204
        before, _ = _statuses(client, acknowledged)
        done_before = [pid for pid, s in before.items() if s == "completed"]
        history_before = {pid: client.get(f"/api/history/{pid}").json()[pid] for pid in done_before}
        server.kill()  # kill -9 in the middle of the queue
    finally:
        client.close()
        server.kill()
    assert done_before == acknowledged[:CRASH_AT]

    restarted = ServerProcess(base, database_url, port=server.port).start()
    client = restarted.client()
    try:
        def all_finished():
            statuses, _ = _statuses(client, acknowledged)
            return statuses if all(s in ("completed", "failed") for s in statuses.values()) \
                and len(statuses) == JOBS else None

        statuses = wait_until(all_finished, timeout=60, interval=0.2, what="the recovered queue to drain")
        # none missing, none duplicated
        jobs = client.get("/api/jobs?limit=100000").json()["jobs"]
        ids = [j["id"] for j in jobs]
        assert len(ids) == len(set(ids)) == JOBS
        assert set(ids) == set(acknowledged)
        failed = [pid for pid, s in statuses.items() if s == "failed"]
        assert failed == [acknowledged[CRASH_AT]]  # only the job that was running when the process died
        for pid in failed:
            assert pid not in done_before
            entry = client.get(f"/api/history/{pid}").json()[pid]
            error = entry["status"]["messages"][-1][1]
            assert entry["status"]["status_str"] == "error"
            assert "server stopped" in error["exception_message"] and error["exception_type"] == "ServerRestart"
            job = client.get(f"/api/jobs/{pid}").json()
            assert job["status"] == "failed" and "server stopped" in job["execution_error"]["exception_message"]
        for n, pid in enumerate(acknowledged):
            if pid in failed:
                continue
            entry = client.get(f"/api/history/{pid}").json()[pid]
            assert entry["status"]["status_str"] == "success"
            assert entry["outputs"]["2"]["text"] == [f"{tag}-{n}"]
        # history written before the crash is intact
        for pid, entry in history_before.items():
            assert client.get(f"/api/history/{pid}").json()[pid] == entry
        # the v1 view agrees, and ids submitted again are still idempotent after the restart
        assert client.get(f"/api/v1/prompts/{acknowledged[1]}").status in (200, 500)
        r = client.post("/api/prompt", {"prompt": sleep_prompt("again", 0.1), "prompt_id": acknowledged[1]})
        assert r.status == 200 and r.json()["prompt_id"] == acknowledged[1]
        assert len(client.get("/api/jobs?limit=100000").json()["jobs"]) == JOBS
        assert client.get("/api/queue").json() == {"queue_running": [], "queue_pending": []}
        # new work after the restart gets fresh, increasing queue numbers
        new_id = client.submit(sleep_prompt(f"{tag}-new", 0.0))
        wait_until(lambda: client.get(f"/api/v1/prompts/{new_id}").status == 200, what="a new job")
    finally:
        client.close()
        restarted.stop()


def test_graceful_stop_keeps_the_last_results(tmp_path):
    """SIGTERM right after jobs finish: their results (written asynchronously by the store's
    group-commit writer) are flushed before the process exits."""
    base = str(tmp_path)
    url = f"sqlite:///{tmp_path / 'user' / 'jobs.db'}"
    server = ServerProcess(base, url).start()
    client = server.client()
    try:
        ids = [client.submit(sleep_prompt(f"last-{n}-{uuid.uuid4()}", 0.0)) for n in range(20)]
        r = client.post("/api/v1/prompts", sleep_prompt(f"sync-{uuid.uuid4()}", 0.0))
        assert r.status == 204  # ran and finished (text output only)
        ids.append(r.headers["location"].rsplit("/", 1)[1])
    finally:
        client.close()
        server.stop()  # SIGTERM at once, no read in between
    restarted = ServerProcess(base, url, port=server.port).start()
    client = restarted.client()
    try:
        assert [client.get(f"/api/v1/prompts/{pid}").status for pid in ids] == [200] * len(ids)
    finally:
        client.close()
        restarted.stop()
