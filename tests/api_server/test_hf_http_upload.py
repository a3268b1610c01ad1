"""Hugging Face upload (``hfUpload``) against a loopback Hub (tests/fake_hub_commits.py) that
huggingface_hub's own HfApi talks to, and plain HTTP upload (``http_upload``) against an aiohttp
receiver that records what it got."""
from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web
from api_helpers import decode_image, image_prompt
from fake_hub_commits import HubCommits


@pytest.fixture
async def hub(monkeypatch):
    hub = HubCommits()
    runner = await hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    yield hub
    await runner.cleanup()


class Receiver:
    """Records ``(method, path, headers, body)`` of each request; answers ``status``."""

    def __init__(self):
        self.got: list[tuple[str, str, dict, bytes]] = []
        self.status = 201
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((request.method, request.path, dict(request.headers), await request.read()))
        return web.Response(status=self.status, text="stored" if self.status < 300 else "no room")


@pytest.fixture
async def receiver():
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


async def _until(check, seconds=10):
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


# ---- Hugging Face ----

async def test_hf_sync_upload_commits_the_outputs_and_answers_resolve_urls(api, hub):
    hub.add_repo("me/outputs", token="hf_secret")
    status, out = await api.post({"id": "hf", "prompt": image_prompt(0x0000FF, batch=2),
                                  "hfUpload": {"repo": "me/outputs", "directory": "runs/1/"}})
    assert status == 200, out
    names = ["runs/1/hf_00001_.png", "runs/1/hf_00002_.png"]
    assert out["images"] == [f"{hub.url}/me/outputs/resolve/main/{n}" for n in names]
    assert sorted(hub.files("me/outputs")) == names
    assert len(hub.commits) == 1 and hub.commits[0].authorization == "Bearer hf_secret"
    img = decode_image(base64.b64encode(hub.files("me/outputs")[names[0]]).decode())
    assert img.getpixel((0, 0))[:3] == (0, 0, 255)
    assert not (api.workspace / "output" / "api" / out["prompt_id"]).exists()  # delivered: removed


async def test_hf_dataset_branch_async_answers_202_then_commits(api, hub):
    hub.add_repo("me/data", repo_type="dataset")
    hub.repos[("dataset", "me/data")]["dev"] = {}
    status, out = await api.post({"id": "hfa", "prompt": image_prompt(),
                                  "hf_upload": {"repo": "me/data", "repo_type": "dataset", "revision": "dev",
                                                "async": True}})
    assert status == 202 and out["status"] == "ok"
    await _until(lambda: hub.files("me/data", "dataset", "dev"))
    assert list(hub.files("me/data", "dataset", "dev")) == ["hfa_00001_.png"]
    assert hub.files("me/data", "dataset") == {}


async def test_hf_unknown_repo_is_a_502_and_the_outputs_are_kept(api, hub):
    status, out = await api.post({"id": "nohf", "prompt": image_prompt(), "hfUpload": {"repo": "me/missing"}})
    assert status == 502 and out["error"]["type"] == "upload_failed", out
    assert "me/missing" in out["error"]["details"]
    kept = api.workspace / "output" / "api" / out["prompt_id"]
    assert [p.name for p in kept.iterdir()] == ["nohf_00001_.png"]


async def test_hf_wrong_token_is_a_502(api, hub, monkeypatch):
    hub.add_repo("me/private", token="hf_right")
    status, out = await api.post({"prompt": image_prompt(), "hfUpload": {"repo": "me/private"}})
    assert status == 502 and "401" in out["error"]["details"], out
    assert hub.files("me/private") == {}


@pytest.mark.parametrize("field, message", [
    ({"directory": "x"}, "'repo'"),
    ({"repo": "a/b/c"}, "'repo'"),
    ({"repo": "a/b", "repo_type": "bucket"}, "repo_type"),
    ({"repo": "a/b", "directory": "../up"}, ".."),
    ({"repo": "a/b", "async": "yes"}, "boolean"),
])
async def test_hf_bad_fields_are_400(api, field, message):
    status, out = await api.post({"prompt": image_prompt(), "hfUpload": field})
    assert status == 400 and message in out["error"]["details"], out


# ---- HTTP ----

async def test_http_sync_put_sends_each_output_with_headers(api, receiver):
    status, out = await api.post({"id": "h", "prompt": image_prompt(0x00FF00, batch=2),
                                  "convert_output": {"format": "jpeg"},
                                  "http_upload": {"url_prefix": receiver.url + "/bucket/run-1/",
                                                  "headers": {"Authorization": "Bearer abc", "X-Run": "1"}}})
    assert status == 200, out
    assert out["images"] == [f"{receiver.url}/bucket/run-1/h_0000{i}_.jpeg" for i in (1, 2)]
    assert sorted((m, p) for m, p, _, _ in receiver.got) == [("PUT", "/bucket/run-1/h_00001_.jpeg"),
                                                             ("PUT", "/bucket/run-1/h_00002_.jpeg")]
    for _, _, headers, body in receiver.got:
        assert headers["Authorization"] == "Bearer abc" and headers["X-Run"] == "1"
        assert headers["Content-Type"] == "image/jpeg"
        assert decode_image(base64.b64encode(body).decode()).format == "JPEG"


async def test_http_post_async_with_env_header_and_basic_auth_in_the_url(api, receiver, monkeypatch):
    monkeypatch.setenv("HTTP_AUTH_HEADER_NAME", "X-Api-Key")
    monkeypatch.setenv("HTTP_AUTH_HEADER_VALUE", "k1")
    prefix = receiver.url.replace("http://", "http://user:pa%3Ass@") + "/in"
    status, out = await api.post({"id": "ha", "prompt": image_prompt(),
                                  "http_upload": {"url_prefix": prefix, "method": "POST", "async": True}})
    assert status == 202, out
    await _until(lambda: receiver.got)
    method, path, headers, body = receiver.got[0]
    assert (method, path) == ("POST", "/in/ha_00001_.png")
    assert headers["X-Api-Key"] == "k1"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert body.startswith(b"\x89PNG")


async def test_http_error_answer_is_a_502_and_the_outputs_are_kept(api, receiver):
    receiver.status = 507
    status, out = await api.post({"id": "hx", "prompt": image_prompt(),
                                  "http_upload": {"url_prefix": receiver.url.replace("//", "//u:p@") + "/x"}})
    assert status == 502 and out["error"]["type"] == "upload_failed", out
    assert "507" in out["error"]["details"] and "u:p" not in out["error"]["details"]
    kept = api.workspace / "output" / "api" / out["prompt_id"]
    assert [p.name for p in kept.iterdir()] == ["hx_00001_.png"]


@pytest.mark.parametrize("field, message", [
    ({}, "url_prefix"),
    ({"url_prefix": "ftp://x/y"}, "url_prefix"),
    ({"url_prefix": "http://x/", "method": "PATCH"}, "method"),
    ({"url_prefix": "http://x/", "headers": {"a": 1}}, "headers"),
])
async def test_http_bad_fields_are_400(api, field, message):
    status, out = await api.post({"prompt": image_prompt(), "http_upload": field})
    assert status == 400 and message in out["error"]["details"], out


async def test_one_upload_target_per_request(api):
    status, out = await api.post({"prompt": image_prompt(), "s3": {"bucket": "b"},
                                  "http_upload": {"url_prefix": "http://x/"}})
    assert status == 400 and "one of" in out["error"]["details"]


async def test_webhook_with_http_upload_names_each_outputs_url(api, receiver):
    import json

    status, _ = await api.post({"id": "hw", "prompt": image_prompt(batch=2), "webhook": receiver.url + "/hook",
                                "http_upload": {"url_prefix": receiver.url + "/store"}})
    assert status == 202
    await _until(lambda: sum(p == "/hook" for _, p, _, _ in receiver.got) == 2)
    uploaded = sorted(p for m, p, _, _ in receiver.got if m == "PUT")
    assert uploaded == ["/store/hw_00001_.png", "/store/hw_00002_.png"]
    hooks = [json.loads(body) for _, p, _, body in receiver.got if p == "/hook"]
    assert sorted(h["url"] for h in hooks) == [receiver.url + p for p in uploaded]
    assert all(h["event"] == "output.complete" for h in hooks)
