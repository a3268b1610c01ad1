"""Database faults met by a real server: a PostgreSQL whose connections are terminated during
submits (each submit is acknowledged, stored and run, or refused with 503 and not stored; the
store reconnects by itself), and SQLite files that cannot be written."""
import errno
import os
import subprocess
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from _proc import ServerProcess, trivial_prompt, wait_until


def _terminator(url: str, stop: threading.Event, every: float) -> threading.Thread:
    """Terminate every backend of the test's own database, ``every`` seconds, until ``stop``."""
    database = url.rsplit("/", 1)[1]
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    killed = []

    def run() -> None:
        with admin.connect() as conn:
            while not stop.is_set():
                killed.extend(conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database}).scalars())
                stop.wait(every)
        admin.dispose()

    thread = threading.Thread(target=run, daemon=True)
    thread.killed = killed
    thread.start()
    return thread


def _rows(url: str) -> dict[str, str]:
    db = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with db.connect() as conn:
            return dict(conn.execute(sa.text("SELECT prompt_id, status FROM jobs")).all())
    finally:
        db.dispose()


def test_postgres_connections_terminated_during_submits(tmp_path, postgres_url):
    server = ServerProcess(str(tmp_path), postgres_url).start()
    stop = threading.Event()
    answers: dict[str, int] = {}
    errors: list = []
    try:
        terminator = _terminator(postgres_url, stop, every=0.15)

        def submit(k: int) -> None:
            client = server.client()
            for i in range(40):
                pid = f"t{k}-{i}-{uuid.uuid4().hex[:6]}"
                r = client.post("/api/prompt", {"prompt": trivial_prompt(pid), "prompt_id": pid})
                answers[pid] = r.status
                if r.status == 503:
                    error = r.json()["error"]
                    assert error["type"] == "store_unavailable" and "database" in error["details"], r
                elif r.status != 200:
                    errors.append(r)

        threads = [threading.Thread(target=submit, args=(k,)) for k in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        stop.set()
        terminator.join()
        assert not errors, errors[:3]  # no 500 (today: IntegrityError / OperationalError)
        assert len(terminator.killed) > 5  # connections really were cut while submits ran
        acked = {p for p, s in answers.items() if s == 200}
        refused = {p for p, s in answers.items() if s == 503}
        assert acked

        client = server.client()
        # the store reconnects without a restart: new submits are acknowledged and run
        after = [client.submit(trivial_prompt(f"after-{n}")) for n in range(5)]

        def all_done():
            r = client.get("/api/history")
            return r.status == 200 and (acked | set(after)) <= set(r.json())

        wait_until(all_done, timeout=60, what="every acknowledged prompt to run")
        rows = _rows(postgres_url)
        assert acked <= set(rows) and all(rows[p] == "completed" for p in acked)
        assert not refused & set(rows), "a refused prompt was stored"
        for pid in list(refused)[:5]:  # refused ids are unknown, so a retry queues them
            assert client.get(f"/api/jobs/{pid}").status == 404
            assert client.post("/api/prompt", {"prompt": trivial_prompt(pid), "prompt_id": pid}).status == 200
    finally:
        stop.set()
        server.stop()


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs (mounting needs root; skipped, saying so, without it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a 2 MB tmpfs (needs root): {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_read_only_sqlite_database_refuses_to_start(tmp_path, small_fs):
    db = small_fs / "jobs.db"
    first = ServerProcess(str(tmp_path / "a"), f"sqlite:///{db}").start()
    first.client().submit(trivial_prompt("x"))
    first.stop()
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)]).returncode == 0
    server = ServerProcess(str(tmp_path / "b"), f"sqlite:///{db}")
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start(timeout=60)
    assert "cannot be written" in server.log_tail() and str(db) in server.log_tail()


def test_sqlite_disk_full_answers_503_then_recovers_without_losing_a_job(tmp_path, small_fs):
    url = f"sqlite:///{small_fs / 'jobs.db'}"
    server = ServerProcess(str(tmp_path / "base"), url).start()
    try:
        client = server.client()
        acked = [client.submit(trivial_prompt(f"before-{n}")) for n in range(5)]
        filler = small_fs / "filler"
        _fill(filler)
        statuses, big = [], "x" * 40_000
        for n in range(60):  # until the WAL has to grow into the full disk
            r = client.post("/api/prompt", {"prompt": trivial_prompt(f"full-{n}-{big}")})
            statuses.append(r.status)
            if r.status == 200:
                acked.append(r.json()["prompt_id"])
            else:
                assert r.status == 503, r
                error = r.json()["error"]
                assert error["type"] == "store_unavailable" and "full" in error["details"], r
                if statuses.count(503) >= 3:
                    break
        assert 503 in statuses, statuses
        assert client.get("/api/jobs?limit=5").status in (200, 503)  # reads answer, no 500
        filler.unlink()  # space returns: the same server takes prompts again
        acked += [client.submit(trivial_prompt(f"after-{n}")) for n in range(5)]
        wait_until(lambda: set(acked) <= set(client.get("/api/history").json()), timeout=60,
                   what="every acknowledged prompt to run")
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log_tail()
    again = ServerProcess(str(tmp_path / "base"), url).start()
    try:  # every acknowledged job is stored as finished
        client = again.client()
        for pid in acked:
            assert client.get(f"/api/jobs/{pid}").json()["status"] == "completed"
    finally:
        again.stop()


def test_sqlite_wal_is_truncated_after_a_burst_when_idle_and_at_shutdown(tmp_path):
    db = tmp_path / "jobs.db"
    wal = tmp_path / "jobs.db-wal"
    server = ServerProcess(str(tmp_path / "base"), f"sqlite:///{db}").start()
    try:
        client = server.client()
        big = "y" * 30_000
        ids = [client.submit(trivial_prompt(f"{n}-{big}")) for n in range(150)]
        wait_until(lambda: set(ids) <= set(client.get("/api/history").json()), timeout=120, what="the burst")
        wait_until(lambda: wal.stat().st_size > 1_000_000 or wal.stat().st_size < 64_000, timeout=5)
        peak = wal.stat().st_size
        # idle: the log is checkpointed and truncated (it would stay at its peak, several MB)
        wait_until(lambda: not wal.exists() or wal.stat().st_size < 64_000, timeout=15, interval=0.2,
                   what=f"the -wal file ({wal.stat().st_size} bytes, peak {peak}) to shrink")
        client.submit(trivial_prompt("one more"))
    finally:
        server.stop()
    assert not wal.exists() or wal.stat().st_size == 0


def test_truncated_shm_file_stops_the_server_with_a_reason_not_sigbus(tmp_path):
    db = tmp_path / "jobs.db"
    server = ServerProcess(str(tmp_path / "base"), f"sqlite:///{db}").start()
    try:
        client = server.client()
        pid = client.submit(trivial_prompt("before"))
        wait_until(lambda: pid in client.get("/api/history").json(), what="the prompt to run")
        time.sleep(2)  # the writer is idle (its checkpoint done): no transaction is using the mapping
        os.truncate(f"{db}-shm", 0)  # another process breaks the shared-memory file
        try:
            client.post("/api/prompt", {"prompt": trivial_prompt("after")})
        except OSError:
            pass
        server.proc.wait(30)
        assert server.proc.returncode == 70, (server.proc.returncode, server.log_tail())  # not -SIGBUS
        assert "shared-memory file" in server.log_tail() and "truncated" in server.log_tail()
    finally:
        server.kill()
    again = ServerProcess(str(tmp_path / "base"), f"sqlite:///{db}").start()
    try:  # the committed job is still there after a restart
        assert again.client().get(f"/api/jobs/{pid}").json()["status"] == "completed"
    finally:
        again.stop()
