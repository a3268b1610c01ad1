"""The Templates dialog in headless Chromium, as a new user meets it: it lists the official
templates (``comfyui-workflow-templates-*``, dependencies) with their thumbnails; a click on
Z-Image-Turbo opens it; **Run** runs it. Two of its three models are not on disk: they are known
models, so the loaders offer them and the server downloads them when the prompt runs -- here from
a local Hugging Face Hub (``HF_ENDPOINT``, tests/fake_hub.py) serving tiny random-weight files in
the real layouts (``tests/models/lumina2_fixtures.py``); the third (``ae.safetensors``) is in
place, as the known table's SHA-256 for it is the real file's. Only the latent size is made
test-sized, through the subgraph node's widgets. Needs Debian's ``chromium`` and ``playwright``
like ``test_browser.py``; the screenshots land in ``test-artifacts/browser-templates-*.png``.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
from fake_hub import Blob, FakeHub  # noqa: E402
from test_browser import ARTIFACTS, CHROMIUM  # noqa: E402

TEMPLATE = "image_z_image_turbo"
DOWNLOADED = {"diffusion_models": "z_image_turbo_bf16.safetensors", "text_encoders": "qwen_3_4b.safetensors"}
WIDTH, HEIGHT = 256, 192


@pytest.fixture
def hub(monkeypatch):
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.close()


@pytest.mark.timeout(300)
def test_templates_dialog_lists_opens_and_runs_a_template(frontend_server, hub, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    from models import lumina2_fixtures as lf

    from comfyui import known_models

    served = tmp_path / "served"
    written = lf.write_default_workflow_models(str(served))
    for folder, name in DOWNLOADED.items():
        source = known_models.find(name, folder).source
        hub.repos.setdefault(source.repo_id, {})[source.path_in_repo] = Blob(Path(written[folder]).read_bytes())

    def place_vae(models_dir: str) -> None:
        os.makedirs(os.path.join(models_dir, "vae"))
        shutil.copy(written["vae"], os.path.join(models_dir, "vae", "ae.safetensors"))

    url, base, log = frontend_server("--cpu", ready="/api/object_info/KSampler", models=place_vae)
    try:
        asyncio.run(_run(playwright_api, url))
    except Exception:
        print(log.read_text()[-4000:])
        raise
    for folder, name in DOWNLOADED.items():
        assert (base / "models" / folder / name).read_bytes() == Path(written[folder]).read_bytes()
    text = log.read_text()
    assert "z_image_turbo_bf16.safetensors is a known model that is not in models/diffusion_models" in text
    (saved,) = sorted((base / "output").glob("*.png"))
    from PIL import Image
    with Image.open(saved) as img:
        assert img.size == (WIDTH, HEIGHT)


async def _run(pw_api, url: str) -> None:
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            thumbnails: list[int] = []
            page.on("response", lambda r: thumbnails.append(r.status) if r.url == f"{url}/templates/{TEMPLATE}-1.webp"
                    else None)
            await page.goto(url + "/")
            await page.wait_for_function("() => !!(window.app && window.app.extensionManager && window.app.canvas)",
                                         timeout=60000)
            await page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
            card = f"[data-testid=template-workflow-{TEMPLATE}]"
            await page.wait_for_selector(card, timeout=30000)
            # its thumbnail is served from the media-image bundle and shows (as a blob: URL)
            await page.wait_for_function(
                "(sel) => [...document.querySelectorAll(sel + ' img')].some(i => i.complete && i.naturalWidth > 0)",
                arg=card, timeout=30000)
            assert 200 in thumbnails
            cards = await page.evaluate("() => document.querySelectorAll('[data-testid^=template-workflow-]').length")
            assert cards >= 8
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-templates-dialog.png"))

            await page.click(card)
            await page.wait_for_function(
                "() => window.app.rootGraph.nodes.some(n => n.type === 'SaveImage')"
                " && !document.querySelector('[data-testid=template-workflows-content]')", timeout=30000)
            # the subgraph node's promoted widgets: only the size is made test-sized
            names = await page.evaluate(
                "([w, h]) => { const n = window.app.rootGraph.nodes.find(n => (n.widgets || []).some(x => x.name === 'width'));"
                " n.widgets.find(x => x.name === 'width').value = w; n.widgets.find(x => x.name === 'height').value = h;"
                " return n.widgets.map(x => [x.name, x.value]); }", [WIDTH, HEIGHT])
            assert ["unet_name", "z_image_turbo_bf16.safetensors"] in names, names
            await page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
            await page.get_by_role("button", name="Run", exact=True).click()
            await page.wait_for_function(
                "() => { const n = window.app.rootGraph.nodes.find(n => n.type === 'SaveImage');"
                " return !!(n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0); }",
                timeout=240000)
            await page.screenshot(path=str(ARTIFACTS / "browser-templates-run.png"))
        finally:
            await browser.close()
