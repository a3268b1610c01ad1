"""Our UI -> API conversion against the official frontend's own, on the official templates.

The ``comfyui`` server runs in a subprocess (free port, temporary workspace) and serves the
frontend (``comfyui-frontend-package``); headless Chromium (Debian's ``chromium`` through
playwright, as in tests/server/test_browser.py) opens it once. Every workflow of the
``comfyui-workflow-templates-json`` package whose node types all exist in our ``/object_info``
-- plus this folder's hand-made fixtures, which exercise the conversion rules one by one (the
page gets the fixtures' one custom node definition added to /object_info) -- is loaded in that page with ``app.loadGraphData`` and converted with ``app.graphToPrompt()``; the
``output`` must equal what ``convert_ui_to_api`` makes of the same file with the same node
definitions, ``_meta`` included.

The figures (templates compared, skipped, the node types missing most often) are written to
``test-artifacts/templates-conversion.json``. Run it alone with::

    .venv/bin/python -m pytest tests/workflows/test_templates_browser.py -q
"""
from __future__ import annotations

import asyncio
import collections
import importlib.resources
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from comfyui.workflows.convert import convert_ui_to_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
RULE_FIXTURES = ("default_t2i_0.4.json", "kitchen_sink_0.4.json", "subgraph_frontend.json",
                 "frontend_rules_0.4.json")
# Frontend-only node types: they never reach /object_info.
FRONTEND_ONLY = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})


def _templates_dir() -> Path:
    package = pytest.importorskip("comfyui_workflow_templates_json",
                                  reason="pip install comfyui-workflow-templates-json (the dev extra)")
    return Path(str(importlib.resources.files(package))) / "templates"


def _node_types(workflow: dict) -> set[str]:
    """Every node type the workflow uses, in its subgraph definitions (nested ones too) as well;
    subgraph instances and frontend-only nodes left out."""
    graphs, found = [workflow], []
    while graphs:
        graph = graphs.pop()
        found.append(graph)
        graphs += (graph.get("definitions") or {}).get("subgraphs") or []
    subgraph_ids = {graph.get("id") for graph in found[1:]}
    return {str(node.get("type")) for graph in found for node in graph.get("nodes") or []
            if node.get("type") not in subgraph_ids and node.get("type") not in FRONTEND_ONLY}


def select_templates(object_info: dict) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """-> ({name: workflow} whose nodes we all have, {name: [missing node types]})."""
    chosen, skipped = {}, {}
    for path in sorted(_templates_dir().glob("*.json")):
        workflow = json.loads(path.read_text())
        if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
            continue  # index.json and the other catalogues
        missing = sorted(t for t in _node_types(workflow) if t not in object_info)
        if missing:
            skipped[path.stem] = missing
        else:
            chosen[path.stem] = workflow
    return chosen, skipped


@pytest.fixture
def server(frontend_server):
    url, _base, _log = frontend_server()
    with urllib.request.urlopen(url + "/api/object_info", timeout=30) as r:
        return url, json.loads(r.read())


# Loads each workflow the way the app's own "open template" does (no dialogs, no model file
# checks) and keeps graphToPrompt's API prompt, or the error it raised.
CONVERT_IN_PAGE = """async (workflows) => {
  const results = {};
  for (const [name, workflow] of Object.entries(workflows)) {
    try {
      await app.loadGraphData(workflow, true, false, name,
        {showMissingNodesDialog: false, showMissingModelsDialog: false, skipAssetScans: true});
      results[name] = {output: (await app.graphToPrompt()).output};
    } catch (e) {
      results[name] = {error: String(e && e.stack || e).slice(0, 500)};
    }
  }
  return results;
}"""


def _differences(ours: dict, theirs: dict, limit: int = 6) -> list[str]:
    out = []
    for node_id in sorted(set(ours) | set(theirs)):
        a, b = ours.get(node_id), theirs.get(node_id)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"node {node_id} ({(a or b)['class_type']}) only in {'ours' if a else 'the frontend'}")
            continue
        for key in ("class_type", "_meta"):
            if a.get(key) != b.get(key):
                out.append(f"node {node_id} {key}: ours {a.get(key)!r}, frontend {b.get(key)!r}")
        for name in sorted(set(a["inputs"]) | set(b["inputs"])):
            x, y = a["inputs"].get(name, "<absent>"), b["inputs"].get(name, "<absent>")
            if x != y:
                out.append(f"node {node_id} ({a['class_type']}) input {name}: ours {x!r:.80}, frontend {y!r:.80}")
    return out[:limit]


@pytest.mark.timeout(240)
def test_conversion_matches_the_frontend_on_the_official_templates(server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright")
    url, object_info = server
    templates, skipped = select_templates(object_info)
    fixture_info = json.loads((FIXTURES / "object_info_sd.json").read_text())
    object_info = {**{k: v for k, v in fixture_info.items() if k not in object_info}, **object_info}
    workflows = {f"fixture:{name}": json.loads((FIXTURES / name).read_text()) for name in RULE_FIXTURES}
    workflows.update(templates)

    started = time.monotonic()
    frontend = asyncio.run(_convert_in_browser(playwright_api, url, object_info, workflows))
    browser_seconds = time.monotonic() - started

    problems = []
    for name, workflow in workflows.items():
        result = frontend[name]
        if "error" in result:
            problems.append(f"{name}: the frontend failed: {result['error']}")
            continue
        ours = convert_ui_to_api(workflow, object_info)
        if ours != result["output"]:
            problems.append(f"{name}:\n    " + "\n    ".join(_differences(ours, result["output"])))

    missing = collections.Counter(t for types in skipped.values() for t in types)
    summary = {
        "templates_compared": len(templates), "templates_skipped": len(skipped),
        "fixtures_compared": len(RULE_FIXTURES), "browser_seconds": round(browser_seconds, 1),
        "compared": sorted(templates), "missing_node_types": dict(missing.most_common()),
    }
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "templates-conversion.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\n{len(templates)} templates compared, {len(skipped)} skipped for missing nodes; "
          f"most missing: {missing.most_common(10)}")
    assert templates, "no template has all of its nodes in /object_info"
    assert not problems, f"{len(problems)} of {len(workflows)} differ:\n" + "\n".join(problems)


async def _convert_in_browser(pw_api, url: str, object_info: dict, workflows: dict) -> dict:
    async with pw_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            body = json.dumps(object_info)
            await page.route(lambda u: u.endswith("/api/object_info"),
                             lambda route: route.fulfill(status=200, content_type="application/json", body=body))
            await page.goto(url + "/")
            await page.wait_for_function(
                "() => !!(window.app && window.app.rootGraph && window.app.canvas"
                " && window.LiteGraph && LiteGraph.registered_node_types['KSampler'])", timeout=60000)
            return await page.evaluate(CONVERT_IN_PAGE, workflows)
        finally:
            await browser.close()
