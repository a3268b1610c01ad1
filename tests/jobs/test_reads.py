"""Read paths of the job stores: Jobs API pages (status filter, sort, limit/offset, counts,
workflow filter) computed by the database on SQLite and PostgreSQL give what the in-memory
store gives; merging queued jobs with a history page gives the page of the whole list."""
import random
import time

import pytest

from comfyui.engine.queue import PromptQueue, QueueItem, history_entry
from comfyui.jobs import DurableQueue
from comfyui.jobs.listing import merge_page, sort_key

FINISHED = {"completed", "failed", "cancelled"}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "memory":
        yield PromptQueue()
        return
    url = (f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = DurableQueue(url)
    yield store
    store.close()


# create times deliberately not in submission (or finishing) order
CREATED = [7, 3, 11, 1, 9, 5, 12, 2, 10, 4, 8, 6]
OUTCOME = ["success", "error", "interrupted"]


def fill(store) -> None:
    for n, created in enumerate(CREATED, start=1):
        extra = {"create_time": created * 1000}
        if n % 2 == 0:
            extra["extra_pnginfo"] = {"workflow": {"id": "wf-even"}}
        store.put(QueueItem(number=n, prompt_id=f"p{n}", prompt={"1": {"class_type": "X", "inputs": {}}},
                            extra_data=extra, outputs=["1"], created_at=time.time()))
    for n in range(1, len(CREATED) + 1):
        it = store.get(0)
        start = int(time.time() * 1000)
        time.sleep(0.03 * (n % 4))  # run times 0, 30, 60, 90 ms
        outcome = OUTCOME[n % 3]
        end = int(time.time() * 1000)
        last = {"success": "execution_success", "error": "execution_error", "interrupted": "execution_interrupted"}
        data = {"prompt_id": it.prompt_id, "timestamp": end}
        if outcome == "error":
            data.update(node_id="1", node_type="X", exception_message="boom", exception_type="RuntimeError",
                        traceback=["tb"])
        entry = history_entry(it, status="success" if outcome == "success" else "error",
                              outputs={"1": {"images": [{"filename": f"{n}.png", "subfolder": "", "type": "output"}]}},
                              messages=[["execution_start", {"prompt_id": it.prompt_id, "timestamp": start}],
                                        [last[outcome], data]], meta={})
        store.task_done(it, entry)


def ids(page) -> list[str]:
    return [job["id"] for _key, job in page[0]]


def newest_first() -> list[str]:
    return [f"p{n}" for n, _c in sorted(enumerate(CREATED, start=1), key=lambda t: -t[1])]


def test_pages_in_create_time_order_with_counts(store):
    fill(store)
    order = newest_first()
    assert ids(store.jobs_page(FINISHED, "created_at", True, 0, 5)) == order[:5]
    assert ids(store.jobs_page(FINISHED, "created_at", True, 5, 5)) == order[5:10]
    last = store.jobs_page(FINISHED, "created_at", True, 10, 5)
    assert ids(last) == order[10:] and last[1] == 12
    assert ids(store.jobs_page(FINISHED, "created_at", False, 0, None)) == order[::-1]
    assert store.jobs_page(FINISHED, "created_at", True, 20, 5) == ([], 12)
    job = store.jobs_page(FINISHED, "created_at", True, 0, 1)[0][0][1]
    assert job["create_time"] == 12000 and job["priority"] == 7 and job["outputs_count"] == 1
    assert job["preview_output"] == {"filename": "7.png", "subfolder": "", "type": "output", "nodeId": "1",
                                     "mediaType": "images"}


def test_status_and_workflow_filters(store):
    fill(store)
    expected = {s: [f"p{n}" for n in range(1, 13) if OUTCOME[n % 3] == o]
                for s, o in (("completed", "success"), ("failed", "error"), ("cancelled", "interrupted"))}
    for status, members in expected.items():
        page = store.jobs_page({status}, "created_at", True, 0, 2)
        assert page[1] == len(members) == 4
        assert set(ids(page)) <= set(members) and len(page[0]) == 2
        assert all(job["status"] == status for _k, job in page[0])
    failed = store.jobs_page({"failed"}, "created_at", True, 0, 1)[0][0][1]
    assert failed["execution_error"]["exception_message"] == "boom" and failed["execution_error"]["node_id"] == "1"
    even = store.jobs_page(FINISHED, "created_at", True, 0, None, "wf-even")
    assert even[1] == 6 and sorted(ids(even)) == sorted(f"p{n}" for n in range(2, 13, 2))
    both = store.jobs_page({"completed", "failed"}, "created_at", True, 0, None, "wf-even")
    assert both[1] == len(both[0]) == sum(1 for n in range(2, 13, 2) if OUTCOME[n % 3] != "interrupted")


def test_sorted_by_execution_duration(store):
    fill(store)
    longest = store.jobs_page(FINISHED, "execution_duration", True, 0, 3)
    assert sorted(ids(longest)) == ["p11", "p3", "p7"]  # n % 4 == 3: 90 ms
    shortest = store.jobs_page(FINISHED, "execution_duration", False, 0, 3)
    assert sorted(ids(shortest)) == ["p12", "p4", "p8"]  # 0 ms


def test_history_and_job_detail_reads(store):
    fill(store)
    assert list(store.get_history(max_items=2)) == ["p11", "p12"]  # the newest two, oldest first
    assert store.history_len() == 12
    detail = store.finished_job("p4")
    assert detail["workflow"]["extra_data"]["extra_pnginfo"]["workflow"]["id"] == "wf-even"
    assert detail["outputs"] == {"1": {"images": [{"filename": "4.png", "subfolder": "", "type": "output"}]}}
    assert detail["execution_status"]["status_str"] == "error" and detail["status"] == "failed"
    assert store.finished_job("nope") is None
    store.delete_history(["p7"])
    assert store.jobs_page(FINISHED, "created_at", True, 0, 1)[0][0][1]["id"] == "p3"  # 12 s gone: 11 s next
    assert store.jobs_page(FINISHED, "created_at", True, 0, 1)[1] == 11


@pytest.mark.parametrize("descending", [True, False])
def test_merging_queued_jobs_with_a_history_page_is_the_page_of_the_whole_list(descending):
    rng = random.Random(5)
    key = sort_key("created_at")
    for _trial in range(40):
        everything = [{"id": f"j{i}", "create_time": rng.randrange(50), "priority": i} for i in range(rng.randrange(30))]
        queued = [j for j in everything if rng.random() < 0.3]
        history = sorted((j for j in everything if j not in queued), key=key, reverse=descending)
        reads = []

        def history_page(offset, limit):
            reads.append(limit)
            rows = history[offset:None if limit is None else offset + limit]
            return [(key(j), j) for j in rows], len(history)

        whole = sorted(everything, key=key, reverse=descending)
        for offset in range(0, len(everything) + 3):
            for limit in (None, 1, 3, 7):
                page, total = merge_page([(key(j), j) for j in queued], history_page, descending, offset, limit)
                assert total == len(everything)
                assert [j["id"] for _k, j in page] == [
                    j["id"] for j in whole[offset:None if limit is None else offset + limit]]
                if limit is not None:
                    assert reads[-1] <= limit + len(queued)


def test_an_id_used_again_after_its_history_was_deleted_lists_its_new_run(store):
    def run(ok: bool) -> None:
        store.put(QueueItem(number=1, prompt_id="again", prompt={}, extra_data={"create_time": 5}, outputs=[]))
        it = store.get(0)
        store.task_done(it, history_entry(it, status="success" if ok else "error", outputs={}, messages=[], meta={}))

    run(ok=True)
    for _ in range(2):  # read while the finish may be uncommitted, and after
        assert [j["status"] for _k, j in store.jobs_page(FINISHED, "created_at", True, 0, 5)[0]] == ["completed"]
        time.sleep(0.1)
    store.delete_history(["again"])
    assert store.jobs_page(FINISHED, "created_at", True, 0, 5) == ([], 0)
    run(ok=False)
    for _ in range(2):
        assert [j["status"] for _k, j in store.jobs_page(FINISHED, "created_at", True, 0, 5)[0]] == ["failed"]
        time.sleep(0.1)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_history_lists_this_process_jobs_and_finds_older_ones_by_id(kind, tmp_path, request):
    """As ComfyUI's in-memory history: after a restart ``/history`` starts empty; a job of an
    earlier run is still found by its id and listed by the Jobs API."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    first = DurableQueue(url)
    fill(first)
    assert len(first.get_history()) == 12
    first.close()
    second = DurableQueue(url)
    try:
        assert second.get_history() == {} and second.get_history(max_items=5) == {}
        assert second.get_history(offset=100) == {}
        assert list(second.get_history(prompt_id="p1")) == ["p1"]
        assert second.jobs_page(FINISHED, "created_at", True, 0, 5)[1] == 12
        second.put(QueueItem(number=13, prompt_id="p13", prompt={"1": {"class_type": "X", "inputs": {}}},
                             extra_data={}, outputs=["1"], created_at=time.time()))
        item = second.get(0)
        second.task_done(item, history_entry(item, status="success", outputs={}, messages=[], meta={}))
        assert list(second.get_history()) == ["p13"] and list(second.get_history(max_items=1)) == ["p13"]
    finally:
        second.close()
