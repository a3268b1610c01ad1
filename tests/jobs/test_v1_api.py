"""The LTS API (/api/v1/prompts, /api/v1/images), job cancel and 20 concurrent clients, against
a real server process (``python -m comfyui`` with a slow custom node pack), once with the
SQLite job store and once with PostgreSQL."""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid

import pytest
from PIL import Image

from _proc import ServerProcess, image_prompt, quote, sleep_prompt, trivial_prompt, wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("v1"))
    if request.param == "sqlite":
        server = ServerProcess(base, f"sqlite:///{base}/user/jobs.db").start()
        yield server
        server.stop()
        return
    import importlib.util

    import sqlalchemy as sa

    spec = importlib.util.spec_from_file_location("jobs_conftest", os.path.join(os.path.dirname(__file__),
                                                                                "conftest.py"))
    jobs_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(jobs_conftest)
    jobs_conftest.ensure_postgres()
    name = f"comfyui_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    server = ServerProcess(base, f"postgresql://postgres@127.0.0.1:5432/{name}").start()
    try:
        yield server
    finally:
        server.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def client(srv):
    c = srv.client()
    yield c
    c.close()


def _png(color=(200, 10, 10), size=(6, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def multipart(parts: list[tuple[str, str | None, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, filename, ctype, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disp}\r\nContent-Type: {ctype}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _output_file(srv, ref) -> str:
    return os.path.join(srv.base, ref["type"], ref["subfolder"], ref["filename"])


def test_sync_json_headers_and_content_addressed_image(srv, client):
    prompt = image_prompt(color=17, prefix="sync/json")
    r = client.post("/api/v1/prompts", prompt)
    assert r.status == 200, r
    body = r.json()
    pid = body["prompt_id"]
    assert r.headers["location"] == f"/api/v1/prompts/{pid}"
    expected = hashlib.sha256(json.dumps(prompt, separators=(",", ":")).encode()).hexdigest()
    assert r.headers["digest"] == f"SHA-256={expected}"
    assert r.headers["content-disposition"] == 'filename="json_00001_.png"'
    [ref] = body["outputs"]["2"]["images"]
    assert ref == {"filename": "json_00001_.png", "subfolder": "sync", "type": "output"}
    data = open(_output_file(srv, ref), "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    assert body["files"] == [{"node_id": "2", "filename": "json_00001_.png", "subfolder": "sync",
                              "type": "output", "digest": digest}]
    assert any(u.endswith("/view?filename=json_00001_.png&type=output&subfolder=sync") for u in body["urls"])
    assert any(u.endswith(f"/api/v1/images/{digest}") for u in body["urls"])
    assert all("abs_path" not in str(u) and srv.base not in u for u in body["urls"])
    img = client.get(f"/api/v1/images/{digest}")
    assert img.status == 200 and img.body == data and img.headers["content-type"] == "image/png"
    assert img.headers["digest"] == f"SHA-256={digest}"
    assert client.get(f"/api/v1/images/{digest.upper()}").body == data
    # GET by id: 200 with the outputs
    r = client.get(f"/api/v1/prompts/{pid}")
    assert r.status == 200 and r.json() == body["outputs"]


def test_accept_image_png_returns_last_saved_image(srv, client):
    prompt = image_prompt(color=90, prefix="accept")
    prompt["3"] = {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 5}}
    prompt["4"] = {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "accept_last"}}
    prompt["5"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    r = client.post("/api/v1/prompts", prompt, headers={"Accept": "image/png"})
    assert r.status == 200, r
    assert r.headers["content-type"] == "image/png" and r.body.startswith(b"\x89PNG")
    outputs = client.get(r.headers["location"]).json()
    saved = [ref for node in outputs.values() for ref in node.get("images", []) if ref["type"] == "output"]
    last = [ref for ref in saved if open(_output_file(srv, ref), "rb").read() == r.body]
    assert len(saved) == 2 and last == [saved[-1]]
    assert r.headers["content-disposition"] == f'filename="{saved[-1]["filename"]}"'
    # no files at all -> 204 (LTS)
    r = client.post("/api/v1/prompts", trivial_prompt("no files"), headers={"Accept": "image/png"})
    assert r.status == 204
    r = client.post("/api/v1/prompts", trivial_prompt("no files json"))
    assert r.status == 204 and r.headers["location"].startswith("/api/v1/prompts/")


def test_async_mode_poll_and_last_prompt(client):
    prompt = sleep_prompt(f"async-{uuid.uuid4()}", 0.6)
    r = client.post("/api/v1/prompts", prompt, headers={"Prefer": "respond-async"})
    assert r.status == 202, r
    pid = r.json()["prompt_id"]
    assert r.headers["location"] == f"/api/v1/prompts/{pid}" and int(r.headers["retry-after"]) >= 1
    assert client.get(r.headers["location"]).status == 204
    done = wait_until(lambda: (lambda x: x if x.status == 200 else None)(client.get(f"/api/v1/prompts/{pid}")),
                      timeout=20, what="the async job")
    assert done.json() == {"2": {"text": [prompt["1"]["inputs"]["value"]]}}
    assert client.get("/api/v1/prompts").json() == prompt  # the last prompt run, re-postable
    # the other async spellings
    r = client.post("/api/v1/prompts?prefer=respond-async", trivial_prompt("q"))
    assert r.status == 202
    r = client.post("/api/v1/prompts", trivial_prompt("accept-suffix"),
                    headers={"Accept": "application/json+respond-async"})
    assert r.status == 202
    assert client.get(f"/api/v1/prompts/{uuid.uuid4()}").status == 404


def test_idempotent_ids_run_once(srv, client):
    key = f"idem-{uuid.uuid4()}"
    prompt = image_prompt(color=33, prefix=f"idem/{key}")
    first = client.post("/api/v1/prompts", prompt, headers={"Idempotency-Key": key})
    again = client.post("/api/v1/prompts", prompt, headers={"Idempotency-Key": key})
    assert first.status == again.status == 200
    assert first.json()["prompt_id"] == again.json()["prompt_id"] == key
    assert first.json()["outputs"] == again.json()["outputs"]
    assert len([f for f in os.listdir(os.path.join(srv.base, "output", "idem")) if f.startswith(key)]) == 1
    # async + wrapped-body id + the classic /prompt route all see the same job
    r = client.post("/api/v1/prompts", {"prompt": prompt, "prompt_id": key}, headers={"Prefer": "respond-async"})
    assert r.status == 202 and r.json()["prompt_id"] == key
    r = client.post("/api/prompt", {"prompt": prompt, "prompt_id": key})
    assert r.status == 200 and r.json()["prompt_id"] == key
    assert len([f for f in os.listdir(os.path.join(srv.base, "output", "idem")) if f.startswith(key)]) == 1
    jobs = client.get("/api/jobs?limit=1000").json()["jobs"]
    assert [j["id"] for j in jobs].count(key) == 1
    # a slow async job posted twice while it runs: still one job
    key2 = f"idem-slow-{uuid.uuid4()}"
    for _ in range(3):
        r = client.post("/api/v1/prompts", sleep_prompt(key2, 0.3), headers={"Prefer": "respond-async",
                                                                          "Idempotency-Key": key2})
        assert r.status == 202 and r.json()["prompt_id"] == key2
    r = client.post("/api/v1/prompts", sleep_prompt(key2, 0.3), headers={"Idempotency-Key": key2})
    assert r.status == 204  # waited for the same job (text output only)
    assert [j["id"] for j in client.get("/api/jobs?limit=1000").json()["jobs"]].count(key2) == 1


def test_multipart_upload_referenced_by_name_and_deleted_with_the_job(srv, client):
    name = f"upload-{uuid.uuid4().hex[:8]}.png"
    png = _png()
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mp"}}}
    body, ctype = multipart([("prompt", None, "application/json", json.dumps({"prompt": prompt}).encode()),
                             ("files", name, "image/png", png)])
    r = client.post("/api/v1/prompts", raw=body, headers={"Content-Type": ctype, "Accept": "image/png"})
    assert r.status == 200, r
    assert Image.open(io.BytesIO(r.body)).size == (6, 4)
    stored = os.path.join(srv.base, "input", name)
    assert open(stored, "rb").read() == png
    pid = r.headers["location"].rsplit("/", 1)[1]

    # same name, different bytes: stored under another name, the prompt rewritten to it
    other = _png(color=(0, 0, 255), size=(3, 3))
    body, ctype = multipart([("files", name, "image/png", other),
                             ("prompt", None, "application/json", json.dumps(prompt).encode())])
    r2 = client.post("/api/v1/prompts", raw=body, headers={"Content-Type": ctype, "Accept": "image/png"})
    assert r2.status == 200, r2
    assert Image.open(io.BytesIO(r2.body)).size == (3, 3)
    assert open(stored, "rb").read() == png  # the first upload was not overwritten
    renamed = [f for f in os.listdir(os.path.join(srv.base, "input")) if f.startswith(name[:-4] + "_")]
    assert len(renamed) == 1
    pid2 = r2.headers["location"].rsplit("/", 1)[1]

    # a hostile file name stays inside the input folder
    evil = _png(color=(1, 2, 3))
    evil_prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "../../evil-x.png"}},
                   "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    body, ctype = multipart([("prompt", None, "application/json", json.dumps(evil_prompt).encode()),
                             ("files", "../../evil-x.png", "image/png", evil)])
    r3 = client.post("/api/v1/prompts", raw=body, headers={"Content-Type": ctype})
    assert r3.status == 200, r3
    assert os.path.isfile(os.path.join(srv.base, "input", "evil-x.png"))
    assert not os.path.exists(os.path.join(os.path.dirname(srv.base), "evil-x.png"))

    # delete the first job's files: its output and its uploaded input go, the other job's stay
    out = client.get(f"/api/v1/prompts/{pid}").json()["2"]["images"][0]
    out_path = _output_file(srv, out)
    assert os.path.isfile(out_path)
    r = client.delete(f"/api/v1/prompts/{pid}/outputs")
    assert r.status == 200, r
    deleted = {(d["type"], d["filename"]) for d in r.json()["deleted"]}
    assert deleted == {("output", out["filename"]), ("input", name)}
    assert not os.path.exists(out_path) and not os.path.exists(stored)
    assert os.path.isfile(os.path.join(srv.base, "input", renamed[0]))
    assert client.get(f"/api/v1/prompts/{pid}").status == 200  # the record stays
    assert client.delete(f"/api/v1/prompts/{pid}/outputs").json()["deleted"] == []
    # delete the second job entirely: files and record
    r = client.delete(f"/api/v1/prompts/{pid2}")
    assert r.status == 200 and r.json()["history_deleted"] is True
    assert not os.path.exists(os.path.join(srv.base, "input", renamed[0]))
    assert client.get(f"/api/v1/prompts/{pid2}").status == 404
    assert client.delete(f"/api/v1/prompts/{uuid.uuid4()}/outputs").status == 404


def test_outputs_shared_through_the_cache_are_kept(srv, client):
    prompt = image_prompt(color=123, prefix=f"shared-{uuid.uuid4().hex[:6]}")
    a = client.post("/api/v1/prompts", prompt).json()
    b = client.post("/api/v1/prompts", prompt).json()  # replayed from the cache: same file
    assert a["outputs"] == b["outputs"] and a["prompt_id"] != b["prompt_id"]
    r = client.delete(f"/api/v1/prompts/{b['prompt_id']}/outputs").json()
    assert r["deleted"] == [] and r["kept"][0]["used_by"] == [a["prompt_id"]]
    digest = a["files"][0]["digest"]
    assert client.get(f"/api/v1/images/{digest}").status == 200
    r = client.delete(f"/api/v1/prompts/{a['prompt_id']}/outputs").json()
    assert [d["filename"] for d in r["deleted"]] == [a["files"][0]["filename"]]
    assert client.get(f"/api/v1/images/{digest}").status == 404


def test_bad_requests_are_4xx(client):
    r = client.post("/api/v1/prompts", {"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert r.status == 400 and set(r.json()) == {"error", "node_errors"}
    r = client.post("/api/v1/prompts", {"1": {"class_type": "EmptyImage", "inputs": {"width": "wide"}},
                                        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}})
    assert r.status == 400 and r.json()["node_errors"]
    assert client.post("/api/v1/prompts", raw=b"{nope", headers={"Content-Type": "application/json"}).status == 400
    assert client.post("/api/v1/prompts", raw=b"[1,2]", headers={"Content-Type": "application/json"}).status == 400
    assert client.post("/api/v1/prompts", raw=b"", headers={"Content-Type": "application/json"}).status == 400
    assert client.post("/api/v1/prompts", raw=b"x=1", headers={"Content-Type": "text/plain"}).status == 415
    assert client.post("/api/v1/prompts", trivial_prompt("x"), headers={"Accept": "text/html"}).status == 406
    assert client.post("/api/v1/prompts", trivial_prompt("x"), headers={"Idempotency-Key": "x" * 200}).status == 400
    body, ctype = multipart([("files", "a.png", "image/png", _png())])
    assert client.post("/api/v1/prompts", raw=body, headers={"Content-Type": ctype}).status == 400
    assert client.post("/api/v1/prompts", raw=b"--zz\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=zz"}).status == 400
    assert client.get("/api/v1/images/not-a-digest").status == 400
    assert client.get("/api/v1/images/" + "0" * 64).status == 404
    assert client.get("/api/v1/prompts/" + quote("../../etc")).status == 404


def test_cancel_pending_and_running_jobs(client):
    running = client.post("/api/v1/prompts", sleep_prompt(f"run-{uuid.uuid4()}", 30),
                          headers={"Prefer": "respond-async"}).json()["prompt_id"]
    wait_until(lambda: client.get(f"/api/jobs/{running}").json()["status"] == "in_progress", what="running")
    # the pending job is posted in sync mode: its request waits, and gets the cancellation
    pending = f"pend-{uuid.uuid4()}"
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("r", client_for(client).post(
        "/api/v1/prompts", sleep_prompt(pending, 30), headers={"Idempotency-Key": pending})))
    waiter.start()
    wait_until(lambda: client.get(f"/api/jobs/{pending}").status == 200, what="the pending job")
    assert client.get(f"/api/jobs/{pending}").json()["status"] == "pending"
    r = client.post(f"/api/jobs/{pending}/cancel")
    assert r.status == 200 and r.json()["result"] == "cancelled"
    assert client.get(f"/api/jobs/{pending}").json()["status"] == "cancelled"
    t0 = time.monotonic()
    r = client.post(f"/api/jobs/{running}/cancel")
    assert r.status == 200 and r.json()["result"] == "interrupted"
    wait_until(lambda: client.get(f"/api/jobs/{running}").json()["status"] in ("cancelled", "failed"),
               timeout=10, what="the interrupted job to finish")
    assert time.monotonic() - t0 < 10
    status = client.get(f"/api/v1/prompts/{running}")
    assert status.status == 500 and status.json()["status_str"] == "error"
    waiter.join(10)
    assert result["r"].status == 500 and result["r"].json()["status_str"] == "error"
    # cancelling a finished job is a no-op; the DELETE routes refuse unfinished ones
    assert client.post(f"/api/jobs/{pending}/cancel").json()["result"] == "finished"
    slow = client.post("/api/v1/prompts", sleep_prompt(f"slow-{uuid.uuid4()}", 30),
                       headers={"Prefer": "respond-async"}).json()["prompt_id"]
    assert client.delete(f"/api/v1/prompts/{slow}/outputs").status == 409
    assert client.post(f"/api/jobs/{slow}/cancel").status == 200
    wait_until(lambda: client.get(f"/api/v1/prompts/{slow}").status == 500, what="slow job cancelled")


def client_for(c):
    from _proc import Client

    return Client(c.port, timeout=30)


def test_concurrent_clients_while_jobs_run(srv):
    """20 clients submit 5 jobs each (mixing /api/prompt and async /api/v1/prompts) while jobs
    run; queue, jobs and history views stay consistent and every job completes once."""
    observer = srv.client()
    before = observer.get("/api/jobs?limit=100000").json()["pagination"]["total"]
    ids: list[list[str]] = [[] for _ in range(20)]
    errors: list[BaseException] = []
    tag = uuid.uuid4().hex[:8]

    def worker(n: int) -> None:
        c = srv.client()
        try:
            for k in range(5):
                prompt = sleep_prompt(f"{tag}-{n}-{k}", 0.01)
                if k % 2:
                    r = c.post("/api/v1/prompts", prompt, headers={"Prefer": "respond-async"})
                    assert r.status == 202, r
                    ids[n].append(r.json()["prompt_id"])
                else:
                    ids[n].append(c.submit(prompt))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    snapshots = 0
    while any(t.is_alive() for t in threads):
        q = observer.get("/api/queue").json()
        queued = [i[1] for i in q["queue_running"] + q["queue_pending"]]
        assert len(queued) == len(set(queued)) and len(q["queue_running"]) <= 1
        snapshots += 1
    for t in threads:
        t.join()
    assert not errors, errors
    all_ids = [i for chunk in ids for i in chunk]
    assert len(all_ids) == len(set(all_ids)) == 100

    def finished():
        jobs = observer.get(f"/api/jobs?limit=100000").json()
        mine = [j for j in jobs["jobs"] if j["id"] in set(all_ids)]
        return jobs if all(j["status"] == "completed" for j in mine) and len(mine) == 100 else None

    jobs = wait_until(finished, timeout=60, interval=0.2, what="all 100 jobs")
    assert jobs["pagination"]["total"] == before + 100
    ids_seen = [j["id"] for j in jobs["jobs"]]
    assert len(ids_seen) == len(set(ids_seen))
    q = observer.get("/api/queue").json()
    assert q == {"queue_running": [], "queue_pending": []}
    assert observer.get("/api/prompt").json()["exec_info"]["queue_remaining"] == 0
    history = observer.get("/api/history").json()
    assert set(all_ids) <= set(history)
    for n, chunk in enumerate(ids):
        for k, pid in enumerate(chunk):
            assert history[pid]["outputs"]["2"]["text"] == [f"{tag}-{n}-{k}"]
            assert history[pid]["status"]["status_str"] == "success"
    assert len(observer.get("/api/jobs?status=completed&limit=100000").json()["jobs"]) >= 100
    observer.close()
