"""Webhooks: output.complete per output, prompt.failed, retries with backoff, Standard Webhooks
signatures checked by a receiver that fails on purpose first."""
from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api_helpers import decode_image, image_prompt

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_signature_matches_the_standard_webhooks_reference_vector():
    from comfyui.api_server.webhooks import secret_key, sign, verify

    # the example of the Standard Webhooks specification's reference libraries
    sig = sign(secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
               b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    import time

    now = int(time.time())
    headers = {"webhook-id": "m", "webhook-timestamp": str(now),
               "webhook-signature": "v1,bogus " + sign(secret_key(SECRET), "m", now, b"{}")}
    assert verify(SECRET, headers, b"{}")
    assert not verify(SECRET, headers, b"{ }")
    assert not verify(SECRET, {**headers, "webhook-timestamp": str(now - 3600)}, b"{}")


class Receiver:
    """Answers 500 to the first ``fail_first`` posts, then 200; keeps what it accepted."""

    def __init__(self, fail_first: int = 0):
        from comfyui.api_server.webhooks import verify

        self.verify = verify
        self.fail_first = fail_first
        self.tries: list[dict] = []
        self.accepted: list[dict] = []
        self.got = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = self.verify(SECRET, request.headers, body)
        self.tries.append({"id": request.headers.get("webhook-id"), "valid": valid})
        if not self.tries[-1]["valid"]:
            return web.Response(status=401)
        if len(self.tries) <= self.fail_first:
            return web.Response(status=500)
        async with self.got:
            self.accepted.append(json.loads(body))
            self.got.notify_all()
        return web.Response(status=204)

    async def wait_for(self, n: int, timeout: float = 20) -> list[dict]:
        async with self.got:
            await asyncio.wait_for(self.got.wait_for(lambda: len(self.accepted) >= n), timeout)
        return self.accepted


@pytest.fixture
async def receiver():
    servers = []

    async def make(fail_first: int = 0):
        r = Receiver(fail_first)
        app = web.Application()
        app.router.add_post("/hook", r.handle)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        r.url = str(server.make_url("/hook"))
        return r

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def api(make_api):
    from comfyui.api_server.settings import ApiSettings

    return await make_api(settings=ApiSettings(webhook_secret=SECRET, webhook_retries=3, webhook_backoff_s=0.05))


def slow_prompt(color=0x00FF00, batch=2, seconds=0.5):
    prompt = image_prompt(color, batch=batch)
    prompt["3"] = {"class_type": "ApiTestSlowImage", "inputs": {"images": ["1", 0], "seconds": seconds}}
    prompt["2"]["inputs"]["images"] = ["3", 0]
    return prompt


async def test_webhook_answers_202_at_once_and_delivers_every_output_despite_failures(api, receiver):
    hook = await receiver(fail_first=2)
    status, out = await api.post({"id": "wh", "prompt": slow_prompt(), "webhook": hook.url})
    assert status == 202 and out["status"] == "ok" and out["id"] == "wh" and out["webhook"] == hook.url
    assert hook.tries == []  # answered before the prompt finished
    events = await hook.wait_for(2)
    assert len(hook.tries) == 4 and all(t["valid"] for t in hook.tries)  # 2 refused, then 2 delivered
    delivered_ids = {t["id"] for t in hook.tries[2:]}
    assert {t["id"] for t in hook.tries[:2]} <= delivered_ids  # a retry keeps its message id
    assert [e["event"] for e in events] == ["output.complete"] * 2
    assert len({e["filename"] for e in events}) == 2
    for event in events:
        assert event["filename"].startswith("wh_") and set(event) >= {"image", "id", "filename", "prompt"}
        assert decode_image(event["image"]).convert("RGB").getpixel((0, 0)) == (0, 255, 0)
    for _ in range(50):  # delivered: the request's outputs are removed
        if not os.listdir(api.workspace / "output" / "api"):
            break
        await asyncio.sleep(0.05)
    assert not os.listdir(api.workspace / "output" / "api")


async def test_prompt_failed_webhook(api, receiver):
    hook = await receiver()
    prompt = image_prompt()
    prompt["3"] = {"class_type": "ApiTestFailImage", "inputs": {"images": ["1", 0], "fail": True,
                                                                "message": "boom on purpose"}}
    prompt["2"]["inputs"]["images"] = ["3", 0]
    status, out = await api.post({"id": "bad", "prompt": prompt, "webhook": hook.url})
    assert status == 202
    (event,) = await hook.wait_for(1)
    assert event["event"] == "prompt.failed" and event["id"] == "bad"
    assert "boom on purpose" in event["error"] and event["prompt"]["3"]["class_type"] == "ApiTestFailImage"


async def test_outputs_are_kept_when_the_webhook_stays_down(api, receiver, caplog):
    hook = await receiver(fail_first=100)
    status, out = await api.post({"id": "down", "prompt": slow_prompt(batch=1, seconds=0), "webhook": hook.url})
    assert status == 202
    for _ in range(200):
        if len(hook.tries) == 4 and not api.state.service.background:
            break
        await asyncio.sleep(0.05)
    assert len(hook.tries) == 4  # the first try and PROMPT_WEBHOOK_RETRIES=3 retries
    kept = list((api.workspace / "output" / "api").rglob("down_*.png"))
    assert [p.parent.name for p in kept] == ["undelivered"]  # the owed bytes, with their record
    assert "not delivered" in caplog.text and "outputs kept" in caplog.text


async def test_the_seed_request_example_round_trips(api, receiver):
    """comfyui-api's README example (LoadImage by URL with ``upload`` and ``_meta``, a webhook,
    JPEG conversion), with a saving node added, as a client of that product sends it."""
    import io

    from PIL import Image

    async def jpg(request):
        buf = io.BytesIO()
        Image.new("RGB", (12, 10), (90, 140, 200)).save(buf, "JPEG", quality=95)
        return web.Response(body=buf.getvalue(), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/coco/000000000009.jpg", jpg)
    images = TestServer(app)
    await images.start_server()
    hook = await receiver()
    try:
        body = {
            "id": "123e4567-e89b-12d3-a456-426614174000",
            "prompt": {
                "1": {"inputs": {"image": str(images.make_url("/coco/000000000009.jpg")), "upload": "image"},
                      "class_type": "LoadImage", "_meta": {"title": "Load Image"}},
                "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["1", 0]}, "class_type": "SaveImage",
                      "_meta": {"title": "Save Image"}},
            },
            "webhook": hook.url,
            "convert_output": {"format": "jpeg", "options": {"quality": 80, "progressive": True}},
        }
        status, out = await api.post(body)
        assert status == 202
        assert {k: out[k] for k in ("id", "webhook", "convert_output")} == \
            {k: body[k] for k in ("id", "webhook", "convert_output")}
        assert out["prompt"]["1"]["_meta"] == {"title": "Load Image"}
        (event,) = await hook.wait_for(1)
    finally:
        await images.close()
    assert set(event) >= {"event", "image", "id", "filename", "prompt"}
    assert event["id"] == body["id"] and event["filename"] == f"{body['id']}_00001_.jpeg"
    img = decode_image(event["image"])
    assert img.format == "JPEG" and img.size == (12, 10)
    r, g, b = img.convert("RGB").getpixel((6, 5))
    assert abs(r - 90) < 8 and abs(g - 140) < 8 and abs(b - 200) < 8
