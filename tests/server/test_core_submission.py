"""One submission policy behind every way in (/prompt, /api/v1/prompts, the embedded and
remote clients, batch mode), and store reads that never hold up the event loop."""
from __future__ import annotations

import asyncio
import json
import time

from server_helpers import text_prompt


def _ways_in(srv):
    """Submit ``prompt`` (with ``prompt_id``/``extra_data``) every way there is; each returns
    (status, error body) for a refusal or (200, {"prompt_id"}) for a job queued."""
    from comfyui.client.embedded import Comfy
    from comfyui.client.remote import RemoteComfy
    from comfyui.jobs.submission import PromptRejected

    async def classic(prompt, **options):
        resp = await srv.post_json("/api/prompt", {"prompt": prompt, **options})
        return resp.status, await resp.json(), resp.headers

    async def v1(prompt, **options):
        resp = await srv.post_json("/api/v1/prompts", {"prompt": prompt, **options},
                                   headers={"Prefer": "respond-async"})
        return resp.status, await resp.json(), resp.headers

    async def embedded(prompt, **options):
        client = Comfy(engine=srv.engine)  # not started: only submits
        try:
            await client._submit(client.prepare(prompt, options.get("extra_data")), options.get("prompt_id"),
                                 None, None)
        except PromptRejected as e:
            return e.status, e.body(), e.headers
        return 200, {}, {}

    async def remote(prompt, **options):
        async with RemoteComfy(str(srv.client.make_url("")).rstrip("/")) as client:
            try:
                await client.post_prompt(prompt, **options)
            except PromptRejected as e:
                return e.status, e.body(), {}
        return 200, {}, {}

    return {"classic": classic, "v1": v1, "embedded": embedded, "remote": remote}


async def test_every_way_in_refuses_alike(make_server):
    srv = await make_server(start_engine=False, max_queue_size=1)
    ways = _ways_in(srv)
    invalid = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "no output"}}}
    for name, submit in ways.items():
        status, body, _h = await submit(text_prompt(), prompt_id="x" * 500)
        assert status == 400 and body["error"]["type"] == "invalid_prompt" and body["node_errors"] == {}, name
        status, body, _h = await submit(invalid)
        assert status == 400 and body["error"]["type"] == "prompt_no_outputs", name
    # batch mode writes the same error body on its line
    from comfyui.cli.workflows import WorkflowItem, _run_one
    from comfyui.client.embedded import Comfy

    line, ok = await _run_one(Comfy(engine=srv.engine), WorkflowItem("bad.json", invalid), False)
    assert not ok and line["error"]["type"] == "prompt_no_outputs" and line["workflow"] == "bad.json"

    await srv.submit(text_prompt("fills the queue"))
    for name, submit in ways.items():
        status, body, headers = await submit(text_prompt(name))
        assert status == 429 and body["error"]["type"] == "queue_full", name
        if name in ("classic", "v1"):
            assert headers["Retry-After"] == "1"


async def test_every_way_in_keeps_secrets_out_and_takes_a_known_id_once(make_server):
    srv = await make_server(start_engine=False)
    secret = {"api_key_comfy_org": "SECRET-1", "auth_token_comfy_org": "SECRET-2"}
    for name, submit in _ways_in(srv).items():
        for _ in range(2):  # the second time the id is known: nothing new is queued
            status, _body, _h = await submit(text_prompt(name), prompt_id=f"id-{name}", extra_data=dict(secret))
            assert status in (200, 202), name
    running, pending = srv.engine.get_queue()
    assert sorted(i[1] for i in pending) == sorted(f"id-{n}" for n in ("classic", "v1", "embedded", "remote"))
    assert "SECRET" not in json.dumps(pending)
    assert all(isinstance(i[3]["create_time"], int) for i in pending)  # every job gets its create_time


async def test_store_reads_never_hold_up_the_event_loop(make_server, tmp_path):
    """Every read of the durable store made 1 s slow: while /api/jobs, /history, a job's
    detail and a cancel wait for theirs, the loop answers other requests and sends
    WebSocket events at once."""
    srv = await make_server(database_url=f"sqlite:///{tmp_path / 'jobs.db'}")
    first = (await srv.submit(text_prompt("first")))["prompt_id"]
    await srv.wait_history(first)
    store = srv.engine.queue
    read = store._connection

    def slow_read(**options):
        time.sleep(1.0)
        return read(**options)

    store._connection = slow_read
    ws, _sid = await srv.ws()
    loop = asyncio.get_running_loop()
    started = loop.time()
    reads = [asyncio.create_task(srv.client.get(path)) for path in (
        "/api/jobs?status=completed,failed,cancelled&limit=64", "/api/history", f"/api/jobs/{first}")]
    reads.append(asyncio.create_task(srv.client.post(f"/api/jobs/{first}/cancel")))
    await asyncio.sleep(0.1)
    t = loop.time()
    assert (await srv.client.get("/api/prompt")).status == 200
    assert loop.time() - t < 0.5
    t = loop.time()
    await srv.submit(text_prompt("during"))  # its WebSocket status message comes at once
    while True:
        message = await ws.receive_json(timeout=0.5)
        if message["type"] == "status":
            break
    assert loop.time() - t < 0.5
    answers = await asyncio.gather(*reads)
    assert [a.status for a in answers] == [200, 200, 200, 200]
    assert loop.time() - started >= 1.0  # the reads really were slow
    assert (await answers[3].json())["result"] == "finished"
    await ws.close()
