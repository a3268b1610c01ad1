"""The frontend's Manager dialog in headless Chromium (``--enable-manager``), served by the
built-in routes and by the comfyui-manager package (when installed): it opens, lists a
pack of a loopback registry, installs it into the workspace's custom_nodes/, and its "Apply
Changes" restarts the server, which then has the pack's node. The frontend
asks ``https://api.comfy.org`` for the registry (a URL built into it), so the page's requests
there are answered by the local registry; Algolia (its first search provider) is cut off, as on
a machine without internet, and the frontend falls back to the registry's own search. Needs
Debian's ``chromium`` and ``playwright`` like ``test_browser.py``; the screenshot lands in
``test-artifacts/browser-manager.png``."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cli"))
from local_registry import LocalRegistry, node_pack_files  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("manager", ["builtin", "package"])
def test_manager_dialog_installs_a_pack_from_the_registry(frontend_server, manager, tmp_path, monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pw_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    if manager == "package":
        if importlib.util.find_spec("comfyui_manager") is None:
            pytest.skip("pip install 'comfyui[manager]'")
        expected = "--enable-manager: running the comfyui-manager package"
    else:  # the server process cannot import the package: the built-in routes serve the dialog
        hide = tmp_path / "hide" / "comfyui_manager"
        hide.mkdir(parents=True)
        (hide / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hide.parent), os.environ.get("PYTHONPATH")])))
        expected = "[Manager] installed hello-pack 1.0.0"
    registry = LocalRegistry()
    registry.add("hello-pack", "1.0.0", node_pack_files("HelloNode", "1.0.0"))
    registry.start()
    try:
        url, base, log_path = frontend_server("--enable-manager", "--registry-url", registry.url,
                                              "--whitelist-custom-nodes", "hello-pack")
        asyncio.run(_run(pw_api, url, registry, base))
        log = log_path.read_text()
        assert expected in log, log[-3000:]
    finally:
        registry.stop()


async def _forward_to_registry(route, registry_url: str) -> None:
    path = route.request.url.split("api.comfy.org", 1)[1]
    try:
        with urllib.request.urlopen(registry_url + path, timeout=10) as r:
            body, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "application/json")
    except urllib.error.HTTPError as e:
        body, status, ctype = e.read(), e.code, "application/json"
    await route.fulfill(status=status, body=body, content_type=ctype,
                        headers={"Access-Control-Allow-Origin": "*"})


def _wait_for_node(url: str, name: str, timeout: float = 40.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/object_info/{name}", timeout=5) as r:
                body = json.loads(r.read())
                if body:
                    return body
        except OSError:
            pass  # restarting
        time.sleep(0.3)
    raise AssertionError(f"{name} did not appear after the restart")


async def _run(pw_api, url: str, registry: LocalRegistry, base: Path) -> None:
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM,
                                          args=["--headless", "--no-sandbox", "--disable-gpu",
                                                "--disable-background-networking"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.route("**/*algolia*/**", lambda route: route.abort())
            await page.route("https://api.comfy.org/**",
                             lambda route: _forward_to_registry(route, registry.url))
            await page.goto(url + "/")
            await page.wait_for_function("() => !!(window.app && window.app.extensionManager && window.app.canvas)",
                                         timeout=45000)
            await page.evaluate("() => app.extensionManager.command.execute("
                                "'Comfy.Manager.CustomNodesManager.ShowCustomNodesMenu')")
            card = page.locator("text=hello-pack test pack")
            await card.wait_for(timeout=20000)  # listed from the registry's /nodes
            await page.get_by_role("button", name="Install", exact=True).click()
            init = base / "custom_nodes" / "hello-pack" / "__init__.py"
            for _ in range(200):
                if init.exists():
                    break
                await page.wait_for_timeout(100)
            assert init.exists(), "the pack was not installed into custom_nodes/"
            assert "/nodes/hello-pack/install?version=1.0.0" in registry.requests
            # the dialog learns of the finished task (cm-task-completed) and offers the restart
            apply = page.get_by_text("Apply Changes", exact=True)
            await apply.wait_for(timeout=20000)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-manager.png"))
            await apply.click()
            # the server restarts itself (same command line) and now has the pack's node
            node = await asyncio.to_thread(_wait_for_node, url, "HelloNode")
            assert node["HelloNode"]["python_module"] == "custom_nodes.hello-pack"
        finally:
            await browser.close()
