"""The durable job store: write-through queue, recovery after a crash, history from the DB."""
import time

from comfyui.engine.engine import Engine
from comfyui.engine.queue import QueueItem, history_entry
from comfyui.jobs import DurableQueue
from comfyui.nodes.registry import NodeRegistry


def item(n, pid=None):
    return QueueItem(number=n, prompt_id=pid or f"p{n}", prompt={"1": {"class_type": "X", "inputs": {}}},
                     extra_data={"client_id": "c"}, outputs=["1"], client_id="c", created_at=time.time())


def done(store, it, ok=True):
    entry = history_entry(it, status="success" if ok else "error", outputs={"1": {"text": [it.prompt_id]}},
                          messages=[], meta={})
    store.task_done(it, entry)


def test_queue_and_history_survive_reopen(db_url):
    store = DurableQueue(db_url)
    for n in (1, 2, 3, 4):
        store.put(item(n))
    first = store.get(0)
    done(store, first)
    second = store.get(0)  # in progress when the process "dies"
    assert store.job_status(second.prompt_id) == "in_progress"
    store.close()

    reopened = DurableQueue(db_url)
    assert reopened.recovered == {"failed": ["p2"], "pending": ["p3", "p4"]}
    assert reopened.job_status("p1") == "completed"
    assert reopened.job_status("p2") == "failed"
    failed = reopened.get_history(prompt_id="p2")["p2"]
    assert failed["status"]["status_str"] == "error"
    assert "server stopped" in failed["status"]["messages"][0][1]["exception_message"]
    running, pending = reopened.get_current_queue()
    assert running == [] and [p[1] for p in pending] == ["p3", "p4"]
    assert list(reopened.get_history(prompt_id="p1")) == ["p1"]
    assert reopened.get_history() == {}  # the history list is this process's, as ComfyUI's
    assert reopened.last_number() == 4
    reopened.close()


def test_requeue_interrupted(db_url):
    store = DurableQueue(db_url)
    store.put(item(1))
    store.get(0)
    store.close()
    reopened = DurableQueue(db_url, requeue_interrupted=True)
    assert reopened.recovered == {"requeued": ["p1"], "pending": ["p1"]}
    assert reopened.get(0).prompt_id == "p1"
    reopened.close()


def test_history_pagination_delete_and_clear(db_url):
    store = DurableQueue(db_url)
    for n in range(1, 6):
        store.put(item(n))
        done(store, store.get(0), ok=n != 3)
    assert list(store.get_history(max_items=2)) == ["p4", "p5"]
    assert list(store.get_history(max_items=2, offset=1)) == ["p2", "p3"]
    assert store.job_status("p3") == "failed"
    store.delete_history(["p1"])
    assert "p1" not in store.get_history() and not store.contains("p1")
    store.clear_history()
    assert store.get_history() == {} and store.history_len() == 0
    store.close()


def test_deleting_pending_removes_rows(db_url):
    store = DurableQueue(db_url)
    store.put(item(1))
    store.put(item(2))
    store.delete(["p1"])
    store.close()
    reopened = DurableQueue(db_url)
    assert [p[1] for p in reopened.get_current_queue()[1]] == ["p2"]
    reopened.close()


class Echo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING",)}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    calls = 0

    def run(self, text):
        Echo.calls += 1
        return {"ui": {"text": [text]}}


def test_engine_on_durable_store_is_idempotent_and_cancels(db_url):
    registry = NodeRegistry()
    registry.register_classic("Echo", Echo)
    engine = Engine(registry, queue=DurableQueue(db_url))
    Echo.calls = 0
    prompt = {"1": {"class_type": "Echo", "inputs": {"text": "hi"}}}
    engine.submit(prompt, prompt_id="same")
    engine.submit(prompt, prompt_id="same")  # duplicate before it ran
    engine.submit(prompt, prompt_id="cancel-me")
    assert engine.cancel("cancel-me") == "pending"
    engine.start()
    entry = engine.wait("same").result(10)
    assert entry["outputs"]["1"] == {"text": ["hi"]}
    again = engine.submit(prompt, prompt_id="same")  # duplicate after it ran
    assert again.duplicate
    time.sleep(0.2)
    engine.stop()
    assert Echo.calls == 1
    assert engine.queue.job_status("cancel-me") == "cancelled"
    # the number sequence continues after a restart
    restarted = Engine(registry, queue=DurableQueue(db_url))
    assert restarted.submit(prompt).number > 2


def test_history_entry_reads_back_as_written_without_a_stored_prompt_copy(db_url):
    import sqlalchemy as sa
    from comfyui.jobs.schema import jobs

    store = DurableQueue(db_url)
    try:
        store.put(item(7))
        it = store.get(0)
        entry = history_entry(it, status="success", outputs={"1": {"text": ["ünïcode", 2 ** 70]}},
                              messages=[["execution_start", {"prompt_id": "p7", "timestamp": 1}]], meta={})
        store.task_done(it, entry)
        assert store.get_history(prompt_id="p7")["p7"] == entry  # from memory or the database
        store._writer.flush()
        read = store.get_history(prompt_id="p7")["p7"]  # from the database
        assert read == entry and list(read) == list(entry)  # same content, "prompt" first
        assert read["prompt"][0] == 7 and isinstance(read["prompt"][0], int)
        with store.db.connect() as conn:
            stored = conn.execute(sa.select(jobs.c.history).where(jobs.c.prompt_id == "p7")).scalar()
        assert "prompt" not in stored  # the job's own columns hold it
        # rows written while the copy was still stored read back the same
        with store.db.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.prompt_id == "p7").values(history={**stored, "prompt": entry["prompt"]}))
        assert store.get_history()["p7"] == entry
    finally:
        store.close()


def test_history_is_pruned_to_its_size_keeping_the_newest(db_url):
    store = DurableQueue(db_url, max_history=5)
    try:
        for n in range(1, 106):  # a prune is due once history is 100 (10 %, at least 100) over its size
            store.put(item(n))
            done(store, store.get(0))
        store.put(item(106))  # pending jobs are never pruned
        assert store.history_len() <= 10
        history = store.get_history()
        assert list(history)[-5:] == [f"p{n}" for n in range(101, 106)]
        assert "p1" not in history and "p95" not in history
        assert store.job_status("p106") == "pending"
    finally:
        store.close()


def test_after_a_restart_history_over_its_size_is_pruned_by_the_next_job(db_url):
    store = DurableQueue(db_url, max_history=1000)
    for n in range(1, 121):
        store.put(item(n))
        done(store, store.get(0))
    store.close()
    smaller = DurableQueue(db_url, max_history=5)  # 120 finished rows: over 5 + 100
    try:
        smaller.put(item(121))
        done(smaller, smaller.get(0))
        assert smaller.history_len() == 5
        assert smaller.get_history(prompt_id="p116") == {} and list(smaller.get_history(prompt_id="p117")) == ["p117"]
    finally:
        smaller.close()


def _database_at(db_url: str, revision: str):
    import pathlib

    from alembic import command
    from alembic.config import Config

    from comfyui.jobs import store as store_module

    db = store_module.make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(pathlib.Path(store_module.__file__).parent / "migrations"))
    with db.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    return db


def test_a_database_of_the_previous_revision_is_upgraded_with_its_jobs(db_url):
    """Revision 0004 adds create_time and workflow_id (from extra_data) and the Jobs API's
    index: a database made before it keeps its queue and history, listed in Jobs API order."""
    import sqlalchemy as sa

    db = _database_at(db_url, "0003")
    common = dict(prompt={"1": {"class_type": "X", "inputs": {}}}, outputs_to_execute=["1"], created_at=1.0)
    workflow = {"extra_pnginfo": {"workflow": {"id": "wf-old"}}}
    old = sa.table("jobs", *[sa.column(c) for c in ("prompt_id", "number", "status", "ended_at", "created_at")],
                   *[sa.column(c, sa.JSON) for c in ("history", "prompt", "extra_data", "outputs_to_execute")])
    with db.begin() as conn:
        conn.execute(old.insert(), [
            dict(prompt_id="old-late", number=1, status="completed", ended_at=30.0,
                 history={"outputs": {}, "meta": {}, "status": {"status_str": "success"}},
                 extra_data={"create_time": 5000, **workflow}, **common),
            dict(prompt_id="old-early", number=2, status="failed", ended_at=20.0,
                 history={"outputs": {}, "meta": {}, "status": {"status_str": "error"}}, extra_data={}, **common),
            dict(prompt_id="waiting", number=3, status="pending", ended_at=None, history=None, extra_data={},
                 **common),
        ])
    db.dispose()

    store = DurableQueue(db_url)
    try:
        assert all(list(store.get_history(prompt_id=p)) == [p] for p in ("old-early", "old-late"))
        assert store.history_len() == 2
        assert store.get(0).prompt_id == "waiting"
        page, total = store.jobs_page({"completed", "failed"}, "created_at", True, 0, 10)
        assert total == 2 and [j["id"] for _k, j in page] == ["old-late", "old-early"]  # 5000 ms, then 1 s
        assert page[0][1]["workflow_id"] == "wf-old" and page[1][1]["create_time"] == 1000
        assert {ix["name"] for ix in sa.inspect(store.db).get_indexes("jobs")} >= {"ix_jobs_history", "ix_jobs_created"}
    finally:
        store.close()


def test_the_migrations_build_exactly_the_schema(db_url):
    """jobs/schema.py is the schema: a database migrated to the head revision has its tables,
    columns and indexes, no more and no fewer."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from comfyui.jobs.schema import metadata

    db = _database_at(db_url, "head")
    try:
        with db.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table"
                                        and d[1].name == "alembic_version")] == []
    finally:
        db.dispose()
