"""POST/GET /prompt, /queue, /history, /interrupt, /free: contract shapes and error bodies."""
from __future__ import annotations

import asyncio
import json

from server_helpers import sleep_prompt, text_prompt


async def test_post_prompt_success_shape_and_both_prefixes(server):
    for path in ("/prompt", "/api/prompt"):
        resp = await server.post_json(path, {"prompt": text_prompt(), "client_id": "abc"})
        assert resp.status == 200
        body = await resp.json()
        assert set(body) == {"prompt_id", "number", "node_errors"}
        assert isinstance(body["prompt_id"], str) and body["node_errors"] == {}
        entry = await server.wait_history(body["prompt_id"])
        assert entry["status"]["status_str"] == "success"
        assert entry["outputs"]["2"] == {"text": ["hello"]}
        assert entry["prompt"][1] == body["prompt_id"]
        assert entry["prompt"][3]["client_id"] == "abc"


async def test_client_supplied_prompt_id_and_idempotent_resubmit(server):
    body = await server.submit(text_prompt("mine"), prompt_id="my-own-id-1")
    assert body["prompt_id"] == "my-own-id-1"
    await server.wait_history("my-own-id-1")
    again = await server.submit(text_prompt("mine"), prompt_id="my-own-id-1")
    assert again["prompt_id"] == "my-own-id-1"
    resp = await server.client.get("/api/history")
    assert list((await resp.json()).keys()).count("my-own-id-1") == 1
    for bad in ("", 5, "x" * 500):
        resp = await server.post_json("/api/prompt", {"prompt": text_prompt(), "prompt_id": bad})
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_prompt"


async def test_invalid_prompts_get_comfyui_error_bodies(server):
    resp = await server.post_json("/api/prompt", {"client_id": "x"})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == "no_prompt" and body["node_errors"] == {}
    assert set(body["error"]) >= {"type", "message", "details", "extra_info"}

    resp = await server.post_json("/api/prompt", {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] in ("invalid_prompt", "missing_node_type")

    resp = await server.post_json("/api/prompt", {"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}})
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "prompt_no_outputs"

    # bad input value on an output node's dependency -> node_errors populated
    prompt = sleep_prompt(seconds=1000.0)  # max is 60
    resp = await server.post_json("/api/prompt", {"prompt": prompt})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    errs = body["node_errors"]["1"]["errors"]
    assert errs[0]["type"] == "value_bigger_than_max"
    assert errs[0]["extra_info"]["input_name"] == "seconds"
    assert body["node_errors"]["1"]["class_type"] == "ServerTestSleep"

    for bad in ([], "str", 5, {"prompt": "nope"}, {"prompt": [1, 2]}):
        resp = await server.post_json("/api/prompt", bad)
        assert resp.status == 400, bad
        assert "error" in await resp.json()
    resp = await server.post_json("/api/prompt", {"prompt": text_prompt(), "number": "abc"})
    assert resp.status == 400
    resp = await server.post_json("/api/prompt", {"prompt": text_prompt(), "extra_data": [1]})
    assert resp.status == 400
    resp = await server.post_json("/api/prompt", {"prompt": text_prompt(), "partial_execution_targets": "2"})
    assert resp.status == 400
    # garbage graph structures must never be a 500
    for graph in ({"1": 5}, {"1": {"class_type": 7}}, {"1": {"class_type": "PreviewAny", "inputs": 3}},
                  {"1": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}}},
                  {"1": {"class_type": "PreviewAny", "inputs": {"source": ["1", "x", 3]}}}):
        resp = await server.post_json("/api/prompt", {"prompt": graph})
        assert resp.status == 400, (graph, await resp.text())


async def test_malformed_json_and_wrong_content_type(server):
    resp = await server.client.post("/api/prompt", data=b"{not json",
                                    headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "Invalid JSON" in (await resp.json())["error"]
    # a browser's <form enctype=text/plain> can smuggle JSON: refused
    resp = await server.client.post("/api/prompt", data=json.dumps({"prompt": text_prompt()}),
                                    headers={"Content-Type": "text/plain", "Sec-Fetch-Mode": "navigate"})
    assert resp.status == 415
    resp = await server.client.post("/api/prompt", data=b"{not json", headers={"Content-Type": "text/plain"})
    assert resp.status == 400
    resp = await server.client.post("/api/prompt", data=b"\xff\xfe\x00",
                                    headers={"Content-Type": "application/json"})
    assert resp.status == 400


async def test_get_prompt_queue_and_number_front_ordering(make_server):
    srv = await make_server(start_engine=False)
    resp = await srv.client.get("/prompt")
    assert await resp.json() == {"exec_info": {"queue_remaining": 0}}
    a = await srv.submit(text_prompt("a"))
    b = await srv.submit(text_prompt("b"), front=True)
    c = await srv.submit(text_prompt("c"), number=0.5)
    resp = await srv.client.get("/api/prompt")
    assert (await resp.json())["exec_info"]["queue_remaining"] == 3
    resp = await srv.client.get("/api/queue")
    q = await resp.json()
    assert q["queue_running"] == []
    assert [i[1] for i in q["queue_pending"]] == [b["prompt_id"], c["prompt_id"], a["prompt_id"]]
    item = q["queue_pending"][0]
    assert len(item) == 5 and item[2] == text_prompt("b") and isinstance(item[4], list)
    assert c["number"] == 0.5 and b["number"] < 0


async def test_queue_full_answers_429(make_server):
    srv = await make_server(start_engine=False, max_queue_size=2)
    await srv.submit(text_prompt("1"))
    await srv.submit(text_prompt("2"))
    resp = await srv.post_json("/api/prompt", {"prompt": text_prompt("3")})
    assert resp.status == 429
    body = await resp.json()
    assert body["error"]["type"] == "queue_full" and body["node_errors"] == {}
    assert resp.headers["Retry-After"] == "1"


async def test_post_queue_delete_and_clear(make_server):
    srv = await make_server(start_engine=False)
    ids = [(await srv.submit(text_prompt(str(i))))["prompt_id"] for i in range(4)]
    resp = await srv.post_json("/api/queue", {"delete": [ids[0]]})
    assert resp.status == 200
    q = await (await srv.client.get("/api/queue")).json()
    assert [i[1] for i in q["queue_pending"]] == ids[1:]
    resp = await srv.post_json("/queue", {"clear": True})
    assert resp.status == 200
    q = await (await srv.client.get("/queue")).json()
    assert q["queue_pending"] == []
    resp = await srv.post_json("/api/queue", {"delete": "notalist"})
    assert resp.status == 400


async def test_history_paging_by_id_delete_clear(server):
    ids = []
    for i in range(5):
        ids.append((await server.submit(text_prompt(f"h{i}")))["prompt_id"])
    for pid in ids:
        await server.wait_history(pid)
    hist = await (await server.client.get("/api/history")).json()
    assert list(hist) == ids  # oldest first
    entry = hist[ids[0]]
    assert set(entry) >= {"prompt", "outputs", "status", "meta"}
    assert entry["status"]["completed"] is True
    events = [m[0] for m in entry["status"]["messages"]]
    assert events[0] == "execution_start" and events[-1] == "execution_success"
    assert all("timestamp" in m[1] for m in entry["status"]["messages"])
    newest2 = await (await server.client.get("/history?max_items=2")).json()
    assert list(newest2) == ids[-2:]
    page = await (await server.client.get("/api/history?max_items=2&offset=1")).json()
    assert list(page) == ids[1:3]
    one = await (await server.client.get(f"/api/history/{ids[2]}")).json()
    assert list(one) == [ids[2]]
    assert await (await server.client.get("/api/history/unknown")).json() == {}
    resp = await server.client.get("/api/history?max_items=abc")
    assert resp.status == 400
    jobs = await (await server.client.get("/api/jobs?status=completed")).json()
    assert jobs["pagination"]["total"] == 5
    resp = await server.post_json("/api/history", {"delete": [ids[0], ids[1]]})
    assert resp.status == 200
    hist = await (await server.client.get("/api/history")).json()
    assert list(hist) == ids[2:]
    jobs = await (await server.client.get("/api/jobs?status=completed")).json()
    assert [j["id"] for j in jobs["jobs"]] == ids[2:][::-1]
    resp = await server.post_json("/history", {"clear": True})
    assert await (await server.client.get("/api/history")).json() == {}


async def test_interrupt_empty_body_and_by_prompt_id(server):
    ws, sid = await server.ws()
    slow = await server.submit(sleep_prompt(30), client_id=sid)
    # wait until it runs
    while server.engine.running_prompt_id != slow["prompt_id"]:
        await asyncio.sleep(0.02)
    # interrupting another prompt id does nothing
    resp = await server.post_json("/api/interrupt", {"prompt_id": "someone-else"})
    assert resp.status == 200
    await asyncio.sleep(0.1)
    assert server.engine.running_prompt_id == slow["prompt_id"]
    # the frontend's Interrupt button: POST with no body at all
    resp = await server.client.post("/api/interrupt")
    assert resp.status == 200
    entry = await server.wait_history(slow["prompt_id"], timeout=5)
    assert entry["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"])
    # by prompt id
    slow2 = await server.submit(sleep_prompt(30, "two"), client_id=sid)
    while server.engine.running_prompt_id != slow2["prompt_id"]:
        await asyncio.sleep(0.02)
    resp = await server.post_json("/interrupt", {"prompt_id": slow2["prompt_id"]})
    assert resp.status == 200
    await server.wait_history(slow2["prompt_id"], timeout=5)
    await ws.close()


async def test_free(server):
    resp = await server.post_json("/api/free", {"unload_models": True, "free_memory": True})
    assert resp.status == 200
    resp = await server.post_json("/free", {"unload_models": True})
    assert resp.status == 200
    resp = await server.post_json("/free", [1])
    assert resp.status == 400


async def test_secrets_never_stored(server):
    extra = {"api_key_comfy_org": "SECRET-KEY-123", "auth_token_comfy_org": "SECRET-TOKEN-456",
             "extra_pnginfo": {"workflow": {"id": "wf-1"}}}
    body = await server.submit(text_prompt(), extra_data=extra, client_id="c1")
    entry = await server.wait_history(body["prompt_id"])
    for path in ("/api/history", f"/api/history/{body['prompt_id']}", "/api/queue",
                 "/api/jobs", f"/api/jobs/{body['prompt_id']}"):
        text = await (await server.client.get(path)).text()
        assert "SECRET-" not in text, path
    assert entry["prompt"][3]["extra_pnginfo"]["workflow"]["id"] == "wf-1"
    assert "SECRET-" not in server.ctx.logs.text()


async def test_on_prompt_handlers_can_rewrite_the_request(server):
    from comfyui.compat.server import PromptServer

    def handler(body):
        body["prompt"]["1"]["inputs"]["value"] = "rewritten"
        return body

    PromptServer.instance.add_on_prompt_handler(handler)
    try:
        pid = (await server.submit(text_prompt("original")))["prompt_id"]
    finally:
        PromptServer.instance.on_prompt_handlers.remove(handler)
    entry = await server.wait_history(pid)
    assert entry["outputs"]["2"] == {"text": ["rewritten"]}


async def test_nan_in_a_body_is_accepted_and_answers_stay_valid_json(server):
    # Python clients' json.dumps writes NaN literals; browsers cannot parse them in answers
    data = '{"prompt": %s, "extra_data": {"weight": NaN, "big": %d}}' % (json.dumps(text_prompt("nan")), 2 ** 70)
    resp = await server.client.post("/api/prompt", data=data, headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    prompt_id = (await resp.json())["prompt_id"]
    await server.wait_history(prompt_id)
    resp = await server.client.get(f"/api/history/{prompt_id}")

    def no_constants(token):
        raise AssertionError(f"{token} is not JSON")

    entry = json.loads(await resp.text(), parse_constant=no_constants)[prompt_id]
    assert entry["prompt"][3]["weight"] is None and entry["prompt"][3]["big"] == 2 ** 70
