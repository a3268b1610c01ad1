import shutil
import subprocess
import uuid

import pytest


def _postgres_up() -> bool:
    try:
        return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True,
                              timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL when it is down (the test needs the real server)."""
    if _postgres_up():
        return
    if shutil.which("pg_ctlcluster"):
        versions = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True).stdout.split()
        for version in versions:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           capture_output=True, timeout=60)
    if not _postgres_up():
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is not running and could not be started")


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database; dropped afterwards."""
    ensure_postgres()
    import sqlalchemy as sa

    name = f"comfyui_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("postgres_url")
