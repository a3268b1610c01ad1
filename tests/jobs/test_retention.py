"""Output retention: the content-hash index, per-job deletion, the age/size policy (also run
periodically by a real server), 429 over --max-queue-size, and the job_files migration."""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
import types

import pytest
import sqlalchemy as sa

from comfyui.jobs import DurableQueue
from comfyui.jobs.retention import (FileIndex, RetentionPolicy, apply_policy, delete_job_files,
                                    iter_file_refs)

DAY = 86400


def _write(path, data: bytes, age_days: float = 0.0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))
    return path


def test_age_policy_deletes_old_files_and_empty_folders(workspace):
    out = workspace / "output"
    old = _write(str(out / "a" / "old.png"), b"o" * 10, age_days=10)
    old2 = _write(str(out / "old2.png"), b"o" * 10, age_days=3)
    new = _write(str(out / "b" / "new.png"), b"n" * 10, age_days=0.1)
    report = apply_policy(RetentionPolicy(max_age_days=2), str(out))
    assert sorted(report.deleted) == ["a/old.png", "old2.png"]
    assert not os.path.exists(old) and not os.path.exists(old2) and os.path.exists(new)
    assert not (out / "a").exists() and (out / "b").exists() and out.exists()
    assert report.freed_bytes == 20 and report.remaining_bytes == 10
    assert apply_policy(RetentionPolicy(), str(out)).deleted == []  # disabled policy: nothing


def test_size_policy_deletes_oldest_first(workspace):
    out = workspace / "output"
    files = [_write(str(out / f"f{i}.bin"), b"x" * 1000, age_days=5 - i) for i in range(5)]
    outside = _write(str(workspace / "input" / "keep.bin"), b"k" * 5000, age_days=30)
    report = apply_policy(RetentionPolicy(max_size_bytes=2500), str(out))
    assert report.deleted == ["f0.bin", "f1.bin", "f2.bin"]
    assert [os.path.exists(f) for f in files] == [False, False, False, True, True]
    assert report.remaining_bytes == 2000 and os.path.exists(outside)
    both = RetentionPolicy.from_config({"output_retention_days": "1", "output_max_size_gb": 0.5})
    assert both.max_age_days == 1 and both.max_size_bytes == 512 * 1024 ** 2 and both.enabled
    assert RetentionPolicy.from_config({"output_retention_days": "junk"}).enabled is False


def test_index_lookup_follows_file_changes(workspace):
    index = FileIndex()
    path = _write(str(workspace / "output" / "s" / "img.png"), b"png-bytes")
    digest = hashlib.sha256(b"png-bytes").hexdigest()
    refs = [{"type": "output", "subfolder": "s", "filename": "img.png"},
            {"type": "output", "subfolder": "", "filename": "../../escape.png"},
            {"type": "output", "subfolder": "", "filename": "missing.png"}]
    assert index.add("p1", refs) == {("output", "s", "img.png"): digest}
    found = index.lookup(digest.upper())
    assert found is not None and found[0] == str(path) and found[1]["prompt_id"] == "p1"
    _write(path, b"other bytes")  # overwritten: the old digest no longer resolves
    assert index.lookup(digest) is None
    assert index.rows_for("p1") == []
    index.close()


def test_delete_job_files_keeps_shared_and_never_escapes(workspace):
    index = FileIndex()
    out = workspace / "output"
    mine = _write(str(out / "mine.png"), b"1")
    shared = _write(str(out / "shared.png"), b"2")
    upload = _write(str(workspace / "input" / "up.png"), b"3")
    victim = _write(str(workspace / "victim.txt"), b"do not delete")
    entry = {"outputs": {"9": {"images": [{"filename": "mine.png", "subfolder": "", "type": "output"},
                                          {"filename": "shared.png", "subfolder": "", "type": "output"},
                                          {"filename": "../victim.txt", "subfolder": "", "type": "output"},
                                          {"filename": "gone.png", "subfolder": "", "type": "temp"}],
                               "text": ["not a file"]}}}
    assert [r["filename"] for r in iter_file_refs(entry["outputs"])] == [
        "mine.png", "shared.png", "../victim.txt", "gone.png"]
    index.add("job", list(iter_file_refs(entry["outputs"])))
    index.add("job", [{"type": "input", "subfolder": "", "filename": "up.png"}], kind="input")
    index.add("other", [{"type": "output", "subfolder": "", "filename": "shared.png"}])
    report = delete_job_files(index, "job", entry)
    assert sorted(d["filename"] for d in report.deleted) == ["mine.png", "up.png"]
    assert [k["filename"] for k in report.kept] == ["shared.png"] and report.kept[0]["used_by"] == ["other"]
    assert sorted(m["filename"] for m in report.missing) == ["../victim.txt", "gone.png"]
    assert not os.path.exists(mine) and not os.path.exists(upload)
    assert os.path.exists(shared) and open(victim, "rb").read() == b"do not delete"
    assert index.rows_for("job") == [] and index.rows_for("other")
    index.close()


def test_index_lives_in_the_job_database(workspace, db_url):
    store = DurableQueue(db_url)
    engine = types.SimpleNamespace(queue=store)
    index = FileIndex.for_engine(engine)
    assert index.db is store.db
    _write(str(workspace / "output" / "x.png"), b"xyz")
    digest = index.add("p", [{"type": "output", "subfolder": "", "filename": "x.png"}])[("output", "", "x.png")]
    store.close()
    reopened = DurableQueue(db_url)
    assert FileIndex.for_engine(types.SimpleNamespace(queue=reopened)).lookup(digest)[1]["filename"] == "x.png"
    reopened.close()


def test_job_files_migration_upgrades_an_existing_database(tmp_path):
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from comfyui.jobs.store import make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = make_engine(url)
    cfg = AlembicConfig()
    from comfyui.jobs import store as store_module

    cfg.set_main_option("script_location", os.path.join(os.path.dirname(store_module.__file__), "migrations"))
    with db.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert "job_files" not in sa.inspect(db).get_table_names()
    db.dispose()
    store = DurableQueue(url)
    assert "job_files" in sa.inspect(store.db).get_table_names()
    store.close()


# ---------------------------------------------------------------- the server's side (in process)

def _sleep_registry():
    from _proc import NODE_PACK

    from comfyui.nodes.registry import NodeRegistry

    module = types.ModuleType("durable_sleep_pack")
    exec(NODE_PACK, module.__dict__)
    registry = NodeRegistry.with_builtins()
    registry.register_mappings(module.NODE_CLASS_MAPPINGS, python_module="custom_nodes.durable_sleep_pack")
    return registry


@pytest.fixture
async def app_server(workspace, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from comfyui.config import Config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import create_app

    made = []

    async def make(**overrides):
        overrides.setdefault("base_directory", str(workspace))
        overrides.setdefault("database_url", f"sqlite:///{tmp_path / 'jobs.db'}")
        config = Config(**overrides)
        engine = Engine.from_config(config, registry=_sleep_registry())
        engine.start()
        client = TestClient(TestServer(create_app(engine, config)))
        await client.start_server()
        made.append((client, engine))
        return client, engine

    yield make
    for client, engine in made:
        await client.close()
        engine.stop(timeout=5)
        engine.queue.close()


async def test_server_applies_the_policy_periodically(app_server, workspace):
    out = workspace / "output"
    old = _write(str(out / "old.png"), b"old", age_days=40)
    client, _engine = await app_server(output_retention_days=30, output_retention_interval=0.2)
    for _ in range(100):
        if not os.path.exists(old):
            break
        await asyncio.sleep(0.05)
    assert not os.path.exists(old)
    late = _write(str(out / "late.png"), b"late", age_days=31)  # found by a later pass
    for _ in range(100):
        if not os.path.exists(late):
            break
        await asyncio.sleep(0.05)
    assert not os.path.exists(late)
    doc = await (await client.get("/openapi.json")).json()
    assert {"post", "get"} <= set(doc["paths"]["/api/v1/prompts"])
    assert "delete" in doc["paths"]["/api/v1/prompts/{prompt_id}/outputs"]


async def test_queue_full_is_429(app_server):
    from _proc import sleep_prompt

    client, engine = await app_server(max_queue_size=2)
    for n in range(2):
        r = await client.post("/api/v1/prompts", json=sleep_prompt(f"full-{n}", 30),
                              headers={"Prefer": "respond-async"})
        assert r.status == 202
    r = await client.post("/api/v1/prompts", json=sleep_prompt("one too many", 30))
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    body = await r.json()
    assert body["error"]["type"] == "queue_full" and body["node_errors"] == {}
    r = await client.post("/api/v1/prompts", json=sleep_prompt("too many async", 30),
                          headers={"Prefer": "respond-async"})
    assert r.status == 429
    engine.clear_pending()
    engine.interrupt()
