"""S3 upload and s3:// inputs against moto's standalone server on loopback; the system
webhook (SYSTEM_WEBHOOK_URL/EVENTS, SYSTEM_META_*); the warmup prompt before /ready."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import subprocess
import sys
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api_helpers import decode_image, image_prompt


@pytest.fixture(scope="module")
def moto_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3(moto_url, monkeypatch):
    import boto3

    for name, value in {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    bucket = f"outputs-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    return client


async def test_sync_s3_upload_answers_s3_urls(api, s3):
    status, out = await api.post({"id": "s3sync", "prompt": image_prompt(0x0000FF, batch=2),
                                  "s3": {"bucket": s3.bucket, "prefix": "run/1", "async": False}})
    assert status == 200, out
    assert len(out["images"]) == 2
    for url, name in zip(out["images"], out["filenames"]):
        assert url == f"s3://{s3.bucket}/run/1/{name}"
        obj = s3.get_object(Bucket=s3.bucket, Key=f"run/1/{name}")
        assert obj["ContentType"] == "image/png"
        img = decode_image(base64.b64encode(obj["Body"].read()).decode())
        assert img.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert out["s3"] == {"bucket": s3.bucket, "prefix": "run/1", "async": False}


async def test_async_s3_answers_202_and_uploads_in_the_background(api, s3):
    status, out = await api.post({"id": "s3async", "prompt": image_prompt(), "convert_output": {"format": "webp"},
                                  "s3": {"bucket": s3.bucket, "prefix": "bg", "async": True}})
    assert status == 202 and out["status"] == "ok"
    for _ in range(200):
        listed = s3.list_objects_v2(Bucket=s3.bucket, Prefix="bg/").get("Contents", [])
        if listed:
            break
        await asyncio.sleep(0.05)
    assert [o["Key"] for o in listed] == ["bg/s3async_00001_.webp"]


async def test_upload_to_a_missing_bucket_is_502_and_keeps_the_outputs(api, s3):
    status, out = await api.post({"id": "nob", "prompt": image_prompt(), "s3": {"bucket": "no-such-bucket"}})
    assert status == 502 and out["error"]["type"] == "upload_failed"
    assert "NoSuchBucket" in out["error"]["details"]
    assert list((api.workspace / "output" / "api").rglob("nob_*.png"))


async def test_s3_input(api, s3):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 3), (7, 8, 9)).save(buf, "PNG")
    s3.put_object(Bucket=s3.bucket, Key="in/pic.png", Body=buf.getvalue(), ContentType="image/png")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": f"s3://{s3.bucket}/in/pic.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    status, out = await api.post({"prompt": prompt})
    assert status == 200, out
    assert decode_image(out["images"][0]).convert("RGB").getpixel((1, 1)) == (7, 8, 9)
    prompt["1"]["inputs"]["image"] = f"s3://{s3.bucket}/in/missing.png"
    status, out = await api.post({"prompt": prompt})
    assert status == 400 and out["node_errors"]["1"]["errors"][0]["message"] == "Download failed"


async def test_system_webhook_forwards_the_chosen_events_with_metadata(make_api):
    from comfyui.api_server.settings import ApiSettings

    got: list[dict] = []

    async def handle(request):
        got.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/sys", handle)
    server = TestServer(app)
    await server.start_server()
    try:
        settings = ApiSettings.from_env(env={"SYSTEM_WEBHOOK_URL": str(server.make_url("/sys")),
                                             "SYSTEM_WEBHOOK_EVENTS": "execution_start,executed,execution_success",
                                             "SYSTEM_META_batch": "abc", "SYSTEM_META_purpose": "testing"})
        api = await make_api(settings=settings)
        status, out = await api.post({"prompt": image_prompt()})
        assert status == 200
        for _ in range(100):
            if len(got) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.close()
    assert [g["event"] for g in got] == ["comfy.execution_start", "comfy.executed", "comfy.execution_success"]
    assert all(g["metadata"] == {"batch": "abc", "purpose": "testing"} for g in got)
    executed = got[1]["data"]
    assert executed["type"] == "executed" and executed["data"]["node"] == "2"
    assert executed["data"]["output"]["images"][0]["filename"] == out["filenames"][0]


def test_settings_from_env_and_bad_values():
    from comfyui.api_server.settings import SYSTEM_EVENTS, ApiSettings, SettingsError

    s = ApiSettings.from_env(env={"MAX_QUEUE_DEPTH": "4", "PROMPT_WEBHOOK_RETRIES": "5", "SYSTEM_WEBHOOK_EVENTS": "all",
                                  "MAX_BODY_SIZE_MB": "2"})
    assert (s.max_queue_depth, s.webhook_retries, s.system_webhook_events, s.max_body_bytes) == \
        (4, 5, SYSTEM_EVENTS, 2 * 1024 * 1024)
    for env in ({"MAX_QUEUE_DEPTH": "-1"}, {"PROMPT_WEBHOOK_RETRIES": "x"}, {"SYSTEM_WEBHOOK_EVENTS": "progres"}):
        with pytest.raises(SettingsError):
            ApiSettings.from_env(env=env)


async def test_warmup_runs_before_ready(make_api, tmp_path):
    from comfyui.api_server.settings import ApiSettings

    warm = image_prompt()
    warm["3"] = {"class_type": "ApiTestSlowImage", "inputs": {"images": ["1", 0], "seconds": 0.6}}
    warm["2"]["inputs"]["images"] = ["3", 0]
    # a loader no output needs is neither validated nor run; its checkpoint is still noted
    warm["4"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}}
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps(warm))
    api = await make_api(settings=ApiSettings(warmup_prompt_file=str(path)))
    assert (await api.client.get("/ready")).status == 503
    assert (await api.client.get("/health")).status == 500
    await asyncio.wait_for(api.state.warm.wait(), 20)
    assert (await api.client.get("/ready")).status == 200
    assert (await api.client.get("/health")).status == 200
    assert len(api.engine.get_history()) == 1
    assert api.state.warmup_checkpoint == "tiny.safetensors"
    assert not list((api.workspace / "output" / "api").rglob("*.png"))  # warmup outputs are not kept


async def test_failed_warmup_keeps_ready_503(make_api, tmp_path, caplog):
    from comfyui.api_server.settings import ApiSettings

    bad = image_prompt()
    bad["1"]["class_type"] = "NoSuchNode"
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps({"prompt": bad}))
    api = await make_api(settings=ApiSettings(warmup_prompt_file=str(path)))
    await asyncio.wait_for(api.state.warmup_task, 20)
    assert (await api.client.get("/ready")).status == 503
    assert "warmup prompt" in caplog.text and api.state.warmup_failed
