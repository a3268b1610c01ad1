"""Inputs by URL and base64, fetched into the input folder before validation; tested against
a local HTTP server that serves good, slow, huge and non-image answers."""
from __future__ import annotations

import asyncio
import base64
import io

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api_helpers import decode_image


def png_bytes(color=(200, 10, 20), size=(5, 4)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def load_save(image: str) -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image, "upload": "image"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


@pytest.fixture
async def files():
    """A local HTTP server; ``files.hits`` counts requests per path."""
    hits: dict[str, int] = {}

    async def ok(request):
        return web.Response(body=png_bytes(), content_type="image/png")

    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(body=png_bytes(), content_type="image/png")

    async def huge_declared(request):
        return web.Response(body=b"\0" * 50_000, content_type="image/png")

    async def huge_streamed(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"\0" * 1024)
        await resp.write_eof()
        return resp

    async def html(request):
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def fake(request):
        return web.Response(body=b"this is not a png at all", content_type="application/octet-stream")

    async def missing(request):
        return web.Response(status=404, text="nope")

    @web.middleware
    async def count(request, handler):
        hits[request.path] = hits.get(request.path, 0) + 1
        return await handler(request)

    app = web.Application(middlewares=[count])
    for path, handler in (("/ok.png", ok), ("/slow.png", slow), ("/huge.png", huge_declared),
                          ("/stream.png", huge_streamed), ("/page", html), ("/fake.png", fake),
                          ("/missing.png", missing)):
        app.router.add_get(path, handler)
    server = TestServer(app)
    await server.start_server()
    server.hits = hits
    yield server
    await server.close()


@pytest.fixture
async def api(make_api):
    from comfyui.api_server.settings import ApiSettings

    return await make_api(settings=ApiSettings(input_max_bytes=20_000, input_timeout_s=1.0))


async def test_url_input_is_downloaded_and_used(api, files):
    status, out = await api.post({"prompt": load_save(str(files.make_url("/ok.png")))})
    assert status == 200, out
    img = decode_image(out["images"][0])
    assert img.size == (5, 4) and img.convert("RGB").getpixel((0, 0)) == (200, 10, 20)
    stored = list((api.workspace / "input").glob("api-*.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == png_bytes()
    # the same content again is stored once
    status, _ = await api.post({"prompt": load_save(str(files.make_url("/ok.png")))})
    assert status == 200 and len(list((api.workspace / "input").glob("api-*"))) == 1


async def test_base64_and_data_url_inputs(api):
    raw = base64.b64encode(png_bytes((1, 2, 3))).decode()
    for value in (raw, "data:image/png;base64," + raw):
        status, out = await api.post({"prompt": load_save(value)})
        assert status == 200, out
        assert decode_image(out["images"][0]).convert("RGB").getpixel((1, 1)) == (1, 2, 3)


@pytest.mark.parametrize("path, message", [
    ("/slow.png", "Download timed out"),
    ("/huge.png", "Input too large"),
    ("/stream.png", "Input too large"),
    ("/page", "Wrong content type"),
    ("/fake.png", "Not an image"),
    ("/missing.png", "Download failed"),
])
async def test_bad_downloads_are_a_clear_400(api, files, path, message):
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, out = await api.post({"id": "in", "prompt": load_save(str(files.make_url(path)))})
    assert status == 400, out
    assert out["error"]["type"] == "input_fetch_failed"
    error = out["node_errors"]["1"]["errors"][0]
    assert error["message"] == message
    assert error["extra_info"]["input_name"] == "image"
    assert out["node_errors"]["1"]["class_type"] == "LoadImage"
    assert loop.time() - started < 4  # the slow answer is cut off at INPUT_TIMEOUT_S
    assert not list((api.workspace / "input").glob("api-*"))
    assert not api.engine.get_history()  # nothing queued


async def test_bad_base64_is_400(api):
    status, out = await api.post({"prompt": load_save("data:image/png;base64,!!!!")})
    assert status == 400 and out["node_errors"]["1"]["errors"][0]["message"] == "Invalid base64 data"
    not_image = base64.b64encode(b"x" * 100).decode()
    status, out = await api.post({"prompt": load_save(not_image)})
    assert status == 400 and out["node_errors"]["1"]["errors"][0]["message"] == "Not an image"


async def test_text_inputs_that_look_like_urls_are_left_alone(api, files):
    prompt = load_save(str(files.make_url("/ok.png")))
    prompt["3"] = {"class_type": "PrimitiveString", "inputs": {"value": str(files.make_url("/page"))}}
    status, out = await api.post({"prompt": prompt})
    assert status == 200, out
    assert out["prompt"]["3"]["inputs"]["value"].endswith("/page")
    assert files.hits == {"/ok.png": 1}
