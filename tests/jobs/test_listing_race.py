"""``GET /api/jobs`` polled while many jobs move from the queue to history: no id listed twice,
a job listed as finished once its finished row is in the answer, and the total counts what a
whole listing lists (a real server; the race is between the queue and the history reads)."""
import collections
import threading

import pytest

from _proc import ServerProcess, trivial_prompt


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_jobs_listing_never_shows_a_job_twice_while_jobs_finish(tmp_path, store):
    server = ServerProcess(str(tmp_path), None, in_memory=store == "memory").start()
    done = threading.Event()
    bad: list = []
    polls = collections.Counter()
    try:
        def feed() -> None:
            client = server.client()
            try:
                for n in range(400):
                    client.submit(trivial_prompt(f"v{n}"))
            finally:
                done.set()

        def poll(query: str) -> None:
            client = server.client()
            while not done.is_set():
                body = client.get(query).json()
                polls[query] += 1
                ids = [j["id"] for j in body["jobs"]]
                if len(ids) != len(set(ids)):
                    bad.append(("duplicate", query, [i for i, k in collections.Counter(ids).items() if k > 1]))
                if "limit" not in query and body["pagination"]["total"] != len(ids):
                    bad.append(("total", query, body["pagination"], len(ids)))

        queries = ["/api/jobs", "/api/jobs?limit=10", "/api/jobs?sort_order=asc",
                   "/api/jobs?status=in_progress,completed&limit=5"]
        threads = [threading.Thread(target=feed)] + [threading.Thread(target=poll, args=(q,)) for q in queries]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sum(polls.values()) > 200
        assert not bad, bad[:5]
    finally:
        server.stop()
