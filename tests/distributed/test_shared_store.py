"""The shared store's republishing of jobs whose publication was never confirmed, on the
test PostgreSQL database (the cluster tests run it through real processes)."""
from __future__ import annotations

import concurrent.futures
import threading
import time

from comfyui.distributed.store import ClusterStore
from comfyui.engine.queue import QueueItem

PROMPT = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}


def item(prompt_id: str, age: float, number: float = 1) -> QueueItem:
    return QueueItem(number=number, prompt_id=prompt_id, prompt=PROMPT, created_at=time.time() - age)


def test_only_old_unconfirmed_pending_jobs_are_republished_in_queue_order(postgres_url):
    store = ClusterStore(postgres_url)
    try:
        for job in (item("old", 60, number=2), item("old-front", 60, number=-1), item("young", 1),
                    item("confirmed", 60), item("cancelled", 60)):
            assert store.insert_pending(job)
        store.mark_published("confirmed")
        store.cancel_pending(["cancelled"])
        published = []
        assert store.republish_unpublished(time.time() - 30, lambda i: published.append(i.prompt_id)) \
            == ["old-front", "old"]
        assert published == ["old-front", "old"]
        assert store.republish_unpublished(time.time() - 30, published.append) == []  # marked now

        assert store.insert_pending(item("refused", 60))

        def broker_down(_item: QueueItem) -> None:
            raise ConnectionError("no broker")

        assert store.republish_unpublished(time.time() - 30, broker_down) == []
        assert store.republish_unpublished(time.time() - 30, lambda i: None) == ["refused"]  # left for later
    finally:
        store.close()


def test_two_frontends_never_republish_the_same_job(postgres_url):
    """While one frontend republishes a job (its row locked), another skips it."""
    first, second = ClusterStore(postgres_url), ClusterStore(postgres_url)
    try:
        assert first.insert_pending(item("orphan", 60))
        publishing, release = threading.Event(), threading.Event()

        def slow_publish(_item: QueueItem) -> None:
            publishing.set()
            release.wait(10)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(first.republish_unpublished, time.time() - 30, slow_publish)
            assert publishing.wait(10)
            assert second.republish_unpublished(time.time() - 30, lambda i: None) == []
            release.set()
            assert running.result(10) == ["orphan"]
        assert second.republish_unpublished(time.time() - 30, lambda i: None) == []
    finally:
        first.close()
        second.close()
