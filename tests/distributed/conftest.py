import importlib.util
import pathlib
import socket

import pytest

# the durable-jobs tests' fresh-PostgreSQL-database fixture
_spec = importlib.util.spec_from_file_location("jobs_conftest", pathlib.Path(__file__).parent.parent / "jobs" / "conftest.py")
_jobs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_jobs)
postgres_url = _jobs.postgres_url


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def cluster(tmp_path, postgres_url):
    """``make(**options) -> Cluster`` on a fresh database and its own broker names; every
    process is killed and the broker's queues are dropped afterwards."""
    if not _rabbitmq_up():
        pytest.fail("RabbitMQ on 127.0.0.1:5672 is not running (see docs/distributed.md)")
    from _cluster import Cluster

    made = []

    def make(**options) -> Cluster:
        made.append(Cluster(str(tmp_path / f"cluster{len(made)}"), postgres_url, **options))
        return made[-1]

    yield make
    for c in made:
        c.stop()
        c.delete_broker_objects()
