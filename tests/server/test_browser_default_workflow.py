"""The frontend's default workflow (Z-Image Turbo) runs in headless Chromium against the real
server, on tiny random-weight files placed under the names it asks for
(``tests/models/lumina2_fixtures.py``).

A new user's first page load: the app opens its default graph (the tutorial is marked done so
that the templates browser stays closed); the three loaders find their files; only the latent
size is made test-sized (256 x 192, through the node's widgets as a user would); **Run** is
clicked and the SaveImage node shows the generated image (the graph is fitted into view first:
the frontend loads a node's images when it draws the node). Needs Debian's ``chromium`` and the
``playwright`` package, like ``test_browser.py``; the screenshot lands in
``test-artifacts/browser-default-workflow.png``.
"""
from __future__ import annotations

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: `models.*`
from models import lumina2_fixtures as lf  # noqa: E402
from test_browser import ARTIFACTS, CHROMIUM, HARMLESS_CONSOLE, is_harmless  # noqa: E402

WIDTH, HEIGHT = 256, 192


@pytest.fixture
def zimage_server(frontend_server):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    return frontend_server("--cpu", ready="/api/object_info/KSampler", models=lf.write_default_workflow_models)


@pytest.mark.timeout(240)
def test_default_workflow_runs_in_the_browser(zimage_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    url, base, log = zimage_server
    try:
        asyncio.run(_run(playwright_api, url))
    except Exception:
        print(log.read_text()[-3000:])
        raise
    (saved,) = sorted((base / "output").glob("ComfyUI_*.png"))
    from PIL import Image
    with Image.open(saved) as img:
        assert img.size == (WIDTH, HEIGHT)


async def _run(pw_api, url: str) -> None:
    problems: list[str] = []
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(f"console error: {m.text[:500]}")
                    if m.type == "error" and not m.text.startswith("Failed to load resource")
                    and not any(h in m.text for h in HARMLESS_CONSOLE) else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}")
                    if r.status >= 400 and not is_harmless(r.status, r.url, url) else None)

            await page.goto(url + "/")
            await page.wait_for_function(
                "() => !!(window.app && window.app.rootGraph && window.app.canvas"
                " && window.app.rootGraph.nodes.some(n => n.type === 'KSampler'))", timeout=45000)
            loaders = await page.evaluate(
                "() => Object.fromEntries(window.app.rootGraph.nodes"
                ".filter(n => n.type.endsWith('Loader')).map(n => [n.type, n.widgets.map(w => w.value)]))")
            assert loaders["UNETLoader"][0] == "z_image_turbo_bf16.safetensors"
            assert loaders["CLIPLoader"][:2] == ["qwen_3_4b.safetensors", "lumina2"]
            assert loaders["VAELoader"][0] == "ae.safetensors"
            await page.evaluate(
                "([w, h]) => { const n = window.app.rootGraph.nodes.find(n => n.type === 'EmptySD3LatentImage');"
                " n.widgets.find(x => x.name === 'width').value = w;"
                " n.widgets.find(x => x.name === 'height').value = h; }", [WIDTH, HEIGHT])
            # fit the graph into view: a node's output images load when the node is drawn
            await page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
            await page.get_by_role("button", name="Run", exact=True).click()
            await page.wait_for_function(
                "() => { const n = window.app.rootGraph.nodes.find(n => n.type === 'SaveImage');"
                " return !!(n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0); }",
                timeout=180000)
            size = await page.evaluate(
                "() => { const i = window.app.rootGraph.nodes.find(n => n.type === 'SaveImage').imgs[0];"
                " return [i.naturalWidth, i.naturalHeight]; }")
            assert size == [WIDTH, HEIGHT]
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-default-workflow.png"))
        finally:
            await browser.close()
    assert not problems, "\n".join(problems)
