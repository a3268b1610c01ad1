"""The frontend's Logs panel (bottom panel, "Logs" tab) in headless Chromium shows the server's
log: the start-up, and a prompt's lines (``got prompt``, ``Prompt executed in``) streamed while
the panel is open. Needs Debian's ``chromium`` and ``playwright`` like ``test_browser.py``;
the screenshot lands in ``test-artifacts/browser-logs.png``."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PROMPT = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "logs panel"}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


@pytest.mark.timeout(120)
def test_logs_panel_shows_a_run(frontend_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pw_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    url, _base, _log = frontend_server(ready="/api/object_info/EmptyImage")
    asyncio.run(_run(pw_api, url))


async def _panel_text(page) -> str:
    return await page.evaluate("() => Array.from(document.querySelectorAll('.xterm-rows'))"
                               ".map(e => e.innerText).join('\\n')")


async def _run(pw_api, url: str) -> None:
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM,
                                          args=["--headless", "--no-sandbox", "--disable-gpu",
                                                "--disable-background-networking"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(url + "/")
            await page.wait_for_function("() => !!(window.app && window.app.extensionManager && window.app.canvas)",
                                         timeout=45000)
            await page.evaluate("() => app.extensionManager.command.execute("
                                "'Workspace.ToggleBottomPanelTab.logs-terminal')")
            await page.wait_for_selector(".xterm-rows", timeout=20000)
            # the start-up, logged before the server existed
            await page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.xterm-rows')).some(e => e.innerText.includes('server ready in'))",
                timeout=20000)
            # a run while the panel is open streams in through the `logs` WS subscription
            request = urllib.request.Request(url + "/api/prompt", data=json.dumps({"prompt": PROMPT}).encode(),
                                             headers={"Content-Type": "application/json"})
            prompt_id = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=10).read()))[
                "prompt_id"]
            try:
                await page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.xterm-rows')).some(e => e.innerText.includes('Prompt executed in'))",
                    timeout=20000)
            finally:
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "browser-logs.png"))
            text = await _panel_text(page)
            assert f"got prompt {prompt_id}" in text.replace("\n", "")
        finally:
            await browser.close()
