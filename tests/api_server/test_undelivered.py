"""Webhook messages that fail all their retries: recorded with their outputs, listed at
GET /undelivered, and delivered when the API starts again."""
from __future__ import annotations

import asyncio
import base64
import io
import os

from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from api_helpers import image_prompt
from test_webhooks import SECRET, Receiver

from comfyui.api_server.settings import ApiSettings


def settings() -> ApiSettings:
    return ApiSettings(webhook_secret=SECRET, webhook_retries=1, webhook_backoff_s=0.01)


async def wait_for_records(api, n: int) -> list[dict]:
    for _ in range(400):
        body = await (await api.client.get("/undelivered")).json()
        if len(body["undelivered"]) >= n:
            return body["undelivered"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} undelivered records")


async def test_undelivered_webhooks_are_listed_kept_and_sent_after_a_restart(make_api, workspace):
    receiver = Receiver(fail_first=10**9)  # down
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    hook_server = TestServer(hook_app)
    await hook_server.start_server()
    url = str(hook_server.make_url("/hook"))
    try:
        api = await make_api(settings=settings())
        status, _ = await api.post({"id": "lost", "prompt": image_prompt(0x0000FF, width=10, height=4, batch=2),
                                    "webhook": url, "convert_output": {"format": "jpeg"}})
        assert status == 202
        failing = image_prompt()
        failing["3"] = {"class_type": "ApiTestFailImage", "inputs": {"images": ["1", 0], "fail": True,
                                                                     "message": "no luck"}}
        failing["2"]["inputs"]["images"] = ["3", 0]
        assert (await api.post({"id": "doomed", "prompt": failing, "webhook": url}))[0] == 202

        records = {r["id"]: r for r in await wait_for_records(api, 2)}
        lost, doomed = records["lost"], records["doomed"]
        assert lost["event"] == "output.complete" and lost["attempts"] == 2 and lost["delivered"] == 0
        assert sorted(lost["filenames"]) == ["lost_00001_.jpeg", "lost_00002_.jpeg"]
        assert lost["webhook"] == url and "prompt" not in lost
        assert doomed["event"] == "prompt.failed" and doomed["error"] == "no luck"
        only = await (await api.client.get(f"/undelivered?id={lost['prompt_id']}")).json()
        assert [r["id"] for r in only["undelivered"]] == ["lost"]
        kept = workspace / "output" / "api" / lost["prompt_id"]
        assert kept.is_dir()
        tries_while_down = len(receiver.tries)
        assert tries_while_down == 2 * 3  # 3 messages, each tried twice

        # the receiver is back; a new API process on the same workspace resends what is owed
        receiver.fail_first = 0
        restarted = await make_api(settings=settings())
        accepted = await receiver.wait_for(3)
        assert all(t["valid"] for t in receiver.tries)  # signed afresh
        outputs = sorted((p for p in accepted if p["event"] == "output.complete"), key=lambda p: p["filename"])
        assert [p["filename"] for p in outputs] == ["lost_00001_.jpeg", "lost_00002_.jpeg"]
        for payload in outputs:
            img = Image.open(io.BytesIO(base64.b64decode(payload["image"])))
            assert img.format == "JPEG" and img.size == (10, 4)
            assert payload["id"] == "lost" and payload["prompt"]["1"]["class_type"] == "EmptyImage"
        failed = [p for p in accepted if p["event"] == "prompt.failed"]
        assert failed == [{"event": "prompt.failed", "error": "no luck", "id": "doomed", "prompt": failed[0]["prompt"]}]
        for _ in range(100):
            if not (await (await restarted.client.get("/undelivered")).json())["undelivered"]:
                break
            await asyncio.sleep(0.05)
        assert (await (await restarted.client.get("/undelivered")).json())["undelivered"] == []
        assert not os.path.exists(kept)
    finally:
        await hook_server.close()
