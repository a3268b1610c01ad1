"""A saved video plays in the official frontend (headless Chromium against the real server).

LoadVideo -> GetVideoComponents -> CreateVideo -> SaveVideo is loaded through the app's JS API
and queued with **Run**; the SaveVideo node then shows a ``<video>`` that the browser decoded
from ``/api/view`` (its size is the saved file's), and seeking it works: the browser fetches
the parts it needs with HTTP range requests (206). The finished job's video is listed in the
media assets panel. Needs Debian's ``chromium`` and the ``playwright`` package, like
``test_browser.py``; the screenshot lands in ``test-artifacts/browser-video.png``.
"""
from __future__ import annotations

import asyncio
import os
from fractions import Fraction

import pytest

from test_browser import ARTIFACTS, CHROMIUM, HARMLESS_CONSOLE, is_harmless

av = pytest.importorskip("av")

W, H, FRAMES = 64, 48, 24

WORKFLOW = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
    "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
    "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 8.0}},
    "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "browser",
                                                "format": "auto", "codec": "auto"}},
}


def _write_clip(models_dir: str) -> None:
    import torch

    from comfyui.nodes.schema.video import VideoComponents, VideoFromComponents

    frames = torch.linspace(0, 1, FRAMES)[:, None, None, None].expand(FRAMES, H, W, 3).contiguous()
    path = os.path.join(os.path.dirname(models_dir), "input", "clip.mp4")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    VideoFromComponents(VideoComponents(images=frames, frame_rate=Fraction(12))).save_to(path)


@pytest.mark.timeout(180)
def test_saved_video_plays_and_seeks_in_the_browser(frontend_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    url, base, log = frontend_server(ready="/api/object_info/SaveVideo", models=_write_clip)
    try:
        ranges = asyncio.run(_run(playwright_api, url))
    except Exception:
        print(log.read_text()[-3000:])
        raise
    saved = base / "output" / "browser_00001_.mp4"
    with av.open(str(saved)) as c:
        assert c.streams.video[0].average_rate == 8
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
    assert ranges, "the browser made no range request for the video"


async def _run(pw_api, url: str) -> list[int]:
    problems: list[str] = []
    video_statuses: list[int] = []
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--autoplay-policy=no-user-gesture-required"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(f"console error: {m.text[:500]}")
                    if m.type == "error" and not m.text.startswith("Failed to load resource")
                    and not any(h in m.text for h in HARMLESS_CONSOLE) else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def on_response(r):
                if r.status >= 400 and not is_harmless(r.status, r.url, url):
                    problems.append(f"HTTP {r.status} for {r.url}")
                if "browser_00001_.mp4" in r.url:
                    video_statuses.append(r.status)

            page.on("response", on_response)
            await page.goto(url + "/")
            await page.wait_for_function(
                "() => !!(window.app && window.app.rootGraph && window.app.canvas"
                " && window.LiteGraph && LiteGraph.registered_node_types['SaveVideo'])", timeout=45000)
            await page.evaluate("wf => window.app.loadApiJson(wf, 'video-test')", WORKFLOW)
            await page.wait_for_function(
                "() => window.app.rootGraph.nodes.some(n => n.type === 'SaveVideo')", timeout=10000)
            await page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
            await page.get_by_role("button", name="Run", exact=True).click()
            # the node shows the saved video, decoded by the browser
            await page.wait_for_function(
                "() => { const n = window.app.rootGraph.nodes.find(n => n.type === 'SaveVideo');"
                " const v = n && n.videoContainer && n.videoContainer.querySelector('video');"
                " return !!(v && v.readyState >= 1 && v.videoWidth > 0); }", timeout=90000)
            info = await page.evaluate(
                "() => { const v = window.app.rootGraph.nodes.find(n => n.type === 'SaveVideo')"
                ".videoContainer.querySelector('video');"
                " return {src: v.currentSrc || v.src, w: v.videoWidth, h: v.videoHeight, d: v.duration}; }")
            assert "/api/view?" in info["src"] and "browser_00001_.mp4" in info["src"]
            assert (info["w"], info["h"]) == (W, H)
            assert abs(info["d"] - FRAMES / 8) < 0.2
            # seek to the middle and near the end: the browser asks for byte ranges
            for t in (1.5, 2.8):
                seeked = await page.evaluate(
                    "t => new Promise((resolve, reject) => {"
                    " const v = window.app.rootGraph.nodes.find(n => n.type === 'SaveVideo')"
                    ".videoContainer.querySelector('video');"
                    " const timer = setTimeout(() => reject(new Error('no seeked event')), 10000);"
                    " v.addEventListener('seeked', () => { clearTimeout(timer); resolve(v.currentTime); },"
                    " {once: true}); v.currentTime = t; })", t)
                assert abs(seeked - t) < 0.2
            # the media assets panel lists the job's video
            await page.get_by_role("button", name="Assets (a)").click()
            await page.get_by_text("browser_00001_", exact=False).first.wait_for(timeout=15000)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-video.png"))
        finally:
            await browser.close()
    assert not problems, "\n".join(problems)
    assert all(s in (200, 206, 304) for s in video_statuses), video_statuses
    return [s for s in video_statuses if s == 206]
