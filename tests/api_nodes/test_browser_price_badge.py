"""The official frontend (headless Chromium) shows API nodes with their price badges, computed
from our price_badge rules and the node's widget values (Vue node mode, where the badge is DOM
text). Needs Debian's chromium and the playwright package, like tests/server/test_browser.py."""
from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WORKFLOW = {
    "1": {"class_type": "OpenAIDalle3", "inputs": {"prompt": "a fox", "seed": 0, "quality": "hd", "style": "vivid",
                                                   "size": "1024x1792"}},
    "2": {"class_type": "FluxProUltraImageNode", "inputs": {"prompt": "x", "prompt_upsampling": False, "seed": 1,
                                                            "aspect_ratio": "16:9", "raw": False}},
}


@pytest.mark.timeout(120)
def test_price_badges_show_on_api_nodes(frontend_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pw_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    url, base, _log = frontend_server(ready="/api/object_info/OpenAIDalle3")
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "Comfy.VueNodes.Enabled": True}))
    asyncio.run(_check_badges(pw_api, url))


async def _badges(page) -> dict[str, str]:
    """Node title -> the credits figure shown above it."""
    lines = (await page.locator("body").inner_text()).splitlines()
    return {lines[i - 2]: lines[i - 1] for i, line in enumerate(lines) if line == "credits/Run" and i >= 2}


async def _check_badges(pw_api, url: str) -> None:
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM,
                                          args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(url + "/")
            await page.wait_for_function(
                "() => !!(window.app && window.app.rootGraph && window.app.canvas"
                " && LiteGraph.registered_node_types['OpenAIDalle3'])", timeout=45000)
            await page.evaluate("wf => window.app.loadApiJson(wf, 'api-nodes')", WORKFLOW)
            await page.get_by_text("credits/Run").first.wait_for(timeout=15000)
            # 211 credits a dollar: DALL-E 3 hd 1024x1792 is $0.12, Flux 1.1 [pro] Ultra $0.06
            await page.wait_for_function("() => document.body.innerText.includes('25.3')", timeout=10000)
            assert await _badges(page) == {"OpenAI DALL·E 3": "25.3", "Flux 1.1 [pro] Ultra Image": "12.7"}
            # the badge follows the widgets it depends on: standard quality is $0.08
            await page.evaluate("""() => {
                const node = window.app.rootGraph.nodes.find(n => n.type === 'OpenAIDalle3');
                const w = node.widgets.find(w => w.name === 'quality');
                w.value = 'standard'; w.callback?.(w.value); node.setDirtyCanvas(true, true);
            }""")
            await page.wait_for_function("() => document.body.innerText.includes('16.9')", timeout=10000)
            assert (await _badges(page))["OpenAI DALL·E 3"] == "16.9"
        finally:
            await browser.close()
