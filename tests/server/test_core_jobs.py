"""Jobs API (/api/jobs, /api/jobs/{id}, cancel routes) as frontend 1.58.1 reads it."""
from __future__ import annotations

import asyncio

import pytest

from server_helpers import collect, is_done, sleep_prompt, text_prompt

JOB_KEYS = {"id", "status", "create_time", "priority", "execution_start_time", "execution_end_time",
            "outputs_count", "previewable_outputs_count", "preview_output", "execution_error", "workflow_id"}


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path) -> dict:
    """The server's job store: in memory, or the durable one (SQLite)."""
    return {} if request.param == "memory" else {"database_url": f"sqlite:///{tmp_path / 'jobs.db'}"}


def _check_job(job: dict) -> None:
    """The frontend's zod schema: one bad item empties the whole panel."""
    assert isinstance(job["id"], str)
    assert job["status"] in ("pending", "in_progress", "completed", "failed", "cancelled")
    assert isinstance(job["create_time"], (int, float))
    err = job.get("execution_error")
    if err is not None:
        assert isinstance(err["node_id"], str) and isinstance(err["traceback"], list)
        for k in ("node_type", "exception_message", "exception_type"):
            assert isinstance(err[k], str)
    prev = job.get("preview_output")
    if prev is not None:
        assert prev["type"] in ("input", "output", "temp") and "nodeId" in prev and "mediaType" in prev


async def test_jobs_list_shapes_filters_and_paging(make_server, store):
    srv = await make_server(**store)
    ws, sid = await srv.ws()
    wf = {"extra_pnginfo": {"workflow": {"id": "wf-42", "nodes": [], "links": []}}}
    done_ids = []
    for i in range(3):
        done_ids.append((await srv.submit(text_prompt(f"j{i}"), client_id=sid, extra_data=wf))["prompt_id"])
    for pid in done_ids:
        await srv.wait_history(pid)
    running = (await srv.submit(sleep_prompt(30, "run"), client_id=sid))["prompt_id"]
    pending = (await srv.submit(text_prompt("pending"), client_id=sid))["prompt_id"]
    while srv.engine.running_prompt_id != running:
        await asyncio.sleep(0.02)

    body = await (await srv.client.get("/api/jobs?status=in_progress,pending&limit=200&offset=0")).json()
    assert set(body) == {"jobs", "pagination"}
    assert body["pagination"] == {"offset": 0, "limit": 200, "total": 2, "has_more": False}
    by_id = {j["id"]: j for j in body["jobs"]}
    assert by_id[running]["status"] == "in_progress" and by_id[pending]["status"] == "pending"
    for j in body["jobs"]:
        _check_job(j)
        assert set(j) == JOB_KEYS

    body = await (await srv.client.get("/api/jobs?status=completed,failed,cancelled&limit=2&offset=0")).json()
    assert body["pagination"] == {"offset": 0, "limit": 2, "total": 3, "has_more": True}
    assert [j["id"] for j in body["jobs"]] == done_ids[::-1][:2]  # newest first
    job = body["jobs"][0]
    _check_job(job)
    assert job["status"] == "completed" and job["workflow_id"] == "wf-42"
    assert job["execution_start_time"] <= job["execution_end_time"]
    page2 = await (await srv.client.get("/jobs?status=completed&limit=2&offset=2")).json()
    assert [j["id"] for j in page2["jobs"]] == [done_ids[0]]
    assert page2["pagination"]["has_more"] is False

    everything = await (await srv.client.get("/api/jobs")).json()
    assert everything["pagination"]["total"] == 5
    asc = await (await srv.client.get("/api/jobs?status=completed&sort_order=asc")).json()
    assert [j["id"] for j in asc["jobs"]] == done_ids
    by_wf = await (await srv.client.get("/api/jobs?workflow_id=wf-42")).json()
    assert {j["id"] for j in by_wf["jobs"]} == set(done_ids)
    for bad in ("status=bogus", "limit=-1", "limit=x", "offset=-3", "sort_by=name", "sort_order=up"):
        resp = await srv.client.get(f"/api/jobs?{bad}")
        assert resp.status == 400, bad
        assert "error" in await resp.json()
    await srv.post_json("/api/interrupt", {})
    await ws.close()


async def test_job_detail_outputs_and_workflow(server):
    extra = {"extra_pnginfo": {"workflow": {"id": "wf-9"}}}
    pid = (await server.submit(text_prompt("detail"), extra_data=extra))["prompt_id"]
    await server.wait_history(pid)
    resp = await server.client.get(f"/api/jobs/{pid}")
    assert resp.status == 200
    job = await resp.json()
    _check_job(job)
    assert job["outputs"] == {"2": {"text": ["detail"]}}
    assert job["execution_status"]["status_str"] == "success"
    assert job["workflow"]["prompt"] == text_prompt("detail")
    assert job["workflow"]["extra_data"]["extra_pnginfo"]["workflow"]["id"] == "wf-9"
    resp = await server.client.get("/api/jobs/does-not-exist")
    assert resp.status == 404
    assert await resp.json() == {"error": "Job not found"}


async def test_failed_job_carries_execution_error(server):
    ws, sid = await server.ws()
    prompt = {"1": {"class_type": "ServerTestFail", "inputs": {"value": "kaput"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    pid = (await server.submit(prompt, client_id=sid))["prompt_id"]
    msgs = await collect(ws, is_done(pid))
    err = next(m for m in msgs if m["type"] == "execution_error")["data"]
    assert err["node_id"] == "1" and err["node_type"] == "ServerTestFail"
    assert err["exception_type"].endswith("ValueError") and "kaput" in err["exception_message"]
    job = await (await server.client.get(f"/api/jobs/{pid}")).json()
    _check_job(job)
    assert job["status"] == "failed"
    assert job["execution_error"]["node_id"] == "1"
    assert "kaput" in job["execution_error"]["exception_message"]
    failed = await (await server.client.get("/api/jobs?status=failed")).json()
    assert [j["id"] for j in failed["jobs"]] == [pid]
    await ws.close()


async def test_cancel_pending_running_finished_and_batch(make_server, store):
    server = await make_server(**store)
    ws, sid = await server.ws()
    running = (await server.submit(sleep_prompt(30, "c1"), client_id=sid))["prompt_id"]
    p1 = (await server.submit(text_prompt("p1"), client_id=sid))["prompt_id"]
    p2 = (await server.submit(text_prompt("p2"), client_id=sid))["prompt_id"]
    p3 = (await server.submit(text_prompt("p3"), client_id=sid))["prompt_id"]
    while server.engine.running_prompt_id != running:
        await asyncio.sleep(0.02)

    # pending -> removed from the queue, recorded as cancelled
    resp = await server.client.post(f"/api/jobs/{p1}/cancel")
    assert resp.status == 200
    assert (await resp.json())["result"] == "cancelled"
    job = await (await server.client.get(f"/api/jobs/{p1}")).json()
    assert job["status"] == "cancelled"
    q = await (await server.client.get("/api/queue")).json()
    assert p1 not in [i[1] for i in q["queue_pending"]]

    # batch: one pending, one unknown
    resp = await server.post_json("/api/jobs/cancel", {"job_ids": [p2, "nope"]})
    assert resp.status == 200
    assert await resp.json() == {"cancelled": [p2], "not_found": ["nope"]}

    # running -> interrupted, ends as cancelled
    resp = await server.client.post(f"/api/jobs/{running}/cancel")
    assert (await resp.json())["result"] == "interrupted"
    await collect(ws, is_done(running))
    job = await (await server.client.get(f"/api/jobs/{running}")).json()
    assert job["status"] == "cancelled"

    # the remaining pending prompt still runs; finished jobs: idempotent no-op
    await server.wait_history(p3)
    resp = await server.client.post(f"/api/jobs/{p3}/cancel")
    assert resp.status == 200 and (await resp.json())["result"] == "finished"
    assert (await (await server.client.get(f"/api/jobs/{p3}")).json())["status"] == "completed"
    resp = await server.client.post(f"/api/jobs/{p1}/cancel")
    assert resp.status == 200

    resp = await server.client.post("/api/jobs/unknown-id/cancel")
    assert resp.status == 404
    for bad in ({}, {"job_ids": "x"}, [1]):
        resp = await server.post_json("/api/jobs/cancel", bad)
        assert resp.status == 400
    cancelled = await (await server.client.get("/api/jobs?status=cancelled")).json()
    assert {j["id"] for j in cancelled["jobs"]} == {p1, p2, running}
    await ws.close()


async def test_jobs_created_in_the_same_millisecond_keep_their_submission_order(make_server, store):
    srv = await make_server(**store)
    same = {"create_time": 1_700_000_000_000}
    ids = [(await srv.submit(text_prompt(f"tie{i}"), extra_data=dict(same)))["prompt_id"] for i in range(4)]
    for pid in ids:
        await srv.wait_history(pid)
    desc = await (await srv.client.get("/api/jobs?status=completed")).json()
    asc = await (await srv.client.get("/api/jobs?status=completed&sort_order=asc")).json()
    assert [j["id"] for j in desc["jobs"]] == ids[::-1]
    assert [j["id"] for j in asc["jobs"]] == ids
