"""End-to-end: the official frontend in headless Chromium against the real ``comfyui`` server.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package (``pip install playwright``; no ``playwright install`` needed, the system browser is
used through ``executable_path``). Skipped with a reason when either is missing.

Run it alone with::

    .venv/bin/python -m pytest tests/server/test_browser.py -q

The screenshot lands in ``test-artifacts/browser-run.png``.

What it checks:

1. ``GET /`` loads the app (the ``comfyui`` command in a subprocess, on a free port, over a
   temporary workspace) and no console error or page error shows up, except the known
   harmless ones listed in ``HARMLESS_404`` / ``is_harmless`` (404s the frontend expects:
   ``user.css``, missing userdata folders and files, the optional templates package; and
   requests to outside hosts such as ``api.comfy.org``, which this sandbox cannot reach).
2. The node library (sidebar "Node Library", search) lists our built-in ``EmptyImage`` node
   under its ``image`` category.
3. A workflow loaded through the app's JS API (``app.loadApiJson``) is queued by clicking
   **Run**; its ``SaveImage`` output appears on the node (``node.imgs`` is an ``/api/view``
   URL that serves a PNG of the requested size) and the file exists in ``output/``.
4. The finished job's output shows in the media assets panel (Jobs API).
5. Saving the workflow through the Save dialog as ``e2e/My flow`` writes
   ``user/default/workflows/e2e/My flow.json`` (the ``%2F``-encoded userdata route) and the
   workflows sidebar lists it.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

# URL path prefixes whose 404 the frontend expects and handles.
HARMLESS_404 = (
    "/user.css",                      # linked from index.html; optional
    "/api/userdata/user.css",         # ditto, per user
    "/api/userdata?dir=",             # no workflows/subgraphs saved yet -> 404 = empty list
    "/api/userdata/comfy.templates.json",  # legacy node templates, none saved
    "/api/userdata/workflows%2F.index.json",  # workflow bookmarks, none yet
    "/templates/",                    # comfyui-workflow-templates not installed
)
HARMLESS_CONSOLE = (
    "Error loading core workflow templates",  # the same missing optional package
)

WORKFLOW = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0xFF0000}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "browser"}},
}


@pytest.fixture
def server(frontend_server):
    url, base, _log = frontend_server(ready="/api/object_info/EmptyImage")
    return url, base


def is_harmless(status: int, url: str, base_url: str) -> bool:
    if not url.startswith(base_url):
        return True  # outside services (api.comfy.org, ...) are unreachable in tests
    path = url[len(base_url):]
    return status == 404 and path.startswith(HARMLESS_404)


@pytest.mark.timeout(120)
def test_frontend_end_to_end(server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    url, base = server
    asyncio.run(_run_browser(playwright_api, url, base))


async def _run_browser(pw_api, url: str, base: Path) -> None:
    from PIL import Image

    problems: list[str] = []
    bad_responses: list[tuple[int, str]] = []
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})

            def on_console(msg):
                if msg.type != "error":
                    return
                text = msg.text
                # resource failures are judged by their response/requestfailed event below
                if text.startswith("Failed to load resource"):
                    return
                if any(h in text for h in HARMLESS_CONSOLE):
                    return
                problems.append(f"console error: {text[:500]}")

            def on_response(resp):
                if resp.status >= 400:
                    bad_responses.append((resp.status, resp.url))

            def on_request_failed(req):
                # a stylesheet that 404s is reported as aborted too (user.css)
                if req.url.startswith(url) and not is_harmless(404, req.url, url):
                    problems.append(f"request failed: {req.url} ({req.failure})")

            page.on("console", on_console)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", on_response)
            page.on("requestfailed", on_request_failed)

            # 1. the app loads
            await page.goto(url + "/")
            await page.wait_for_function(
                "() => !!(window.app && window.app.rootGraph && window.LiteGraph"
                " && LiteGraph.registered_node_types['EmptyImage'] && window.app.canvas)",
                timeout=45000)

            # 2. the node library lists our nodes in their categories
            await page.get_by_role("button", name="Node Library (n)").click()
            search = page.get_by_placeholder("Search Nodes", exact=False).first
            await search.fill("EmptyImage")
            await page.get_by_text("EmptyImage", exact=True).first.wait_for(timeout=10000)
            sidebar_text = await page.locator("body").inner_text()
            assert "image" in sidebar_text  # the category folder of EmptyImage

            # 3. queue a workflow from the page and see its output on the node
            await page.evaluate("wf => window.app.loadApiJson(wf, 'browser-test')", WORKFLOW)
            await page.wait_for_function(
                "() => window.app.rootGraph.nodes.some(n => n.type === 'SaveImage')", timeout=10000)
            await page.get_by_role("button", name="Run", exact=True).click()
            await page.wait_for_function(
                "() => { const n = window.app.rootGraph.nodes.find(n => n.type === 'SaveImage');"
                " return !!(n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0); }",
                timeout=30000)
            info = await page.evaluate(
                "() => { const n = window.app.rootGraph.nodes.find(n => n.type === 'SaveImage');"
                " return {src: n.imgs[0].src, w: n.imgs[0].naturalWidth, h: n.imgs[0].naturalHeight}; }")
            assert "/api/view?" in info["src"] and "browser_00001_.png" in info["src"]
            assert (info["w"], info["h"]) == (64, 48)

            # 4. the finished job is listed with its output in the media assets panel
            await page.get_by_role("button", name="Assets (a)").click()
            await page.get_by_text("browser_00001_", exact=False).first.wait_for(timeout=15000)

            # 5. save the workflow through the Save dialog: the client encodes the whole path
            #    into one segment (workflows%2Fe2e%2FMy%20flow.json); it then shows in the
            #    workflows sidebar (listed through /api/userdata?dir=workflows)
            await page.evaluate("() => { window.app.extensionManager.command.execute('Comfy.SaveWorkflow'); }")
            name_input = page.get_by_role("dialog").locator("input").first
            await name_input.wait_for(timeout=10000)
            await name_input.fill("e2e/My flow")
            await page.keyboard.press("Enter")
            saved_wf = base / "user" / "default" / "workflows" / "e2e" / "My flow.json"
            for _ in range(100):
                if saved_wf.is_file():
                    break
                await asyncio.sleep(0.1)
            assert saved_wf.is_file(), "the Save dialog did not store workflows/e2e/My flow.json"
            assert {n["type"] for n in json.loads(saved_wf.read_text())["nodes"]} == {"EmptyImage", "SaveImage"}
            await page.get_by_role("button", name="Workflows (w)").click()
            await page.get_by_text("e2e", exact=True).first.wait_for(timeout=10000)  # the folder
            await page.wait_for_timeout(300)  # let the canvas draw before the screenshot
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-run.png"))
        finally:
            await browser.close()

    saved = base / "output" / "browser_00001_.png"
    assert saved.is_file()
    with Image.open(io.BytesIO(saved.read_bytes())) as img:
        assert img.size == (64, 48) and img.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    problems += [f"HTTP {s} for {u}" for s, u in bad_responses if not is_harmless(s, u, url)]
    assert not problems, "\n".join(problems)
