"""``--enable-manager``: the /v2 Manager routes the frontend's Manager dialog calls, run over
PackManager against a loopback registry (tests/cli/local_registry.py)."""
from __future__ import annotations

import os
import sys

import pytest

from server_helpers import collect

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cli"))
from local_registry import LocalRegistry, node_pack_files  # noqa: E402


@pytest.fixture
def registry():
    reg = LocalRegistry()
    reg.add("hello-pack", "1.0.0", node_pack_files("HelloNode", "1.0.0"))
    reg.add("hello-pack", "1.1.0", node_pack_files("HelloNode", "1.1.0"))
    reg.start()
    yield reg
    reg.stop()


async def run_task(srv, ws, kind, params, ui_id):
    resp = await srv.post_json("/v2/manager/queue/task", {"kind": kind, "params": params, "ui_id": ui_id,
                                                          "client_id": "c1"})
    assert resp.status == 200, await resp.text()
    assert (await srv.client.post("/v2/manager/queue/start")).status in (200, 201)
    msgs = await collect(ws, lambda m: isinstance(m, dict) and m["type"] == "cm-task-completed"
                         and m["data"]["ui_id"] == ui_id, timeout=30)
    started = [m for m in msgs if isinstance(m, dict) and m["type"] == "cm-task-started"]
    assert started and started[-1]["data"]["ui_id"] == ui_id and started[-1]["data"]["kind"] == kind
    return msgs[-1]["data"]


async def installed(srv):
    resp = await srv.client.get("/api/v2/customnode/installed")
    assert resp.status == 200
    return await resp.json()


async def test_manager_installs_updates_disables_and_uninstalls(make_server, workspace, registry):
    srv = await make_server(enable_manager=True, registry_url=registry.url)
    flags = await (await srv.client.get("/features")).json()
    assert flags["extension"]["manager"] == {"supports_v4": True, "supports_csrf_post": True}
    stats = await (await srv.client.get("/system_stats")).json()
    assert "--enable-manager" in stats["system"]["argv"]  # the frontend looks for it there
    assert await (await srv.client.get("/v2/manager/is_legacy_manager_ui")).json() == {"is_legacy_manager_ui": False}
    assert await installed(srv) == {}
    ws, _sid = await srv.ws()

    done = await run_task(srv, ws, "install", {"id": "hello-pack", "version": "1.0.0", "selected_version": "1.0.0",
                                               "repository": "", "channel": "default", "mode": "cache"}, "t1")
    assert done["status"]["status_str"] == "success", done
    assert done["state"]["installed_packs"]["hello-pack"] == {"ver": "1.0.0", "cnr_id": "hello-pack",
                                                              "aux_id": None, "enabled": True}
    assert os.path.isfile(workspace / "custom_nodes" / "hello-pack" / "__init__.py")
    assert (await installed(srv))["hello-pack"]["ver"] == "1.0.0"

    # installing the other version of an installed pack switches to it (the dialog's version picker)
    done = await run_task(srv, ws, "install", {"id": "hello-pack", "selected_version": "1.1.0"}, "t2")
    assert done["status"]["status_str"] == "success" and (await installed(srv))["hello-pack"]["ver"] == "1.1.0"

    done = await run_task(srv, ws, "disable", {"node_name": "hello-pack", "is_unknown": False}, "t3")
    assert done["status"]["status_str"] == "success"
    assert (workspace / "custom_nodes" / ".disabled" / "hello-pack").is_dir()
    assert (await installed(srv))["hello-pack"]["enabled"] is False
    done = await run_task(srv, ws, "enable", {"cnr_id": "hello-pack"}, "t4")
    assert done["status"]["status_str"] == "success" and (await installed(srv))["hello-pack"]["enabled"] is True

    done = await run_task(srv, ws, "update", {"node_name": "hello-pack", "node_ver": "1.1.0"}, "t5")
    assert done["status"]["status_str"] == "success" and "up to date" in " ".join(done["status"]["messages"])

    failed = await run_task(srv, ws, "install", {"id": "no-such-pack", "selected_version": "latest"}, "t6")
    assert failed["status"]["status_str"] == "failed" and "404" in failed["result"]

    done = await run_task(srv, ws, "uninstall", {"node_name": "hello-pack", "is_unknown": False}, "t7")
    assert done["status"]["status_str"] == "success" and await installed(srv) == {}

    status = await (await srv.client.get("/v2/manager/queue/status", params={"client_id": "c1"})).json()
    assert status["total_count"] == 0 and status["done_count"] == 7 and status["is_processing"] is False
    history = (await (await srv.client.get("/v2/manager/queue/history", params={"ui_id": "t6"})).json())["history"]
    assert list(history) == ["t6"] and history["t6"]["status"]["status_str"] == "failed"
    await ws.close()


async def test_manager_bad_requests_and_import_failures(make_server, workspace, registry):
    srv = await make_server(enable_manager=True, registry_url=registry.url)
    bad_kind = await srv.post_json("/v2/manager/queue/task", {"kind": "explode", "params": {}, "ui_id": "x"})
    assert bad_kind.status == 400 and "unknown task kind" in (await bad_kind.json())["error"]
    no_params = await srv.post_json("/v2/manager/queue/task", {"kind": "install", "ui_id": "x"})
    assert no_params.status == 400
    not_json = await srv.client.post("/v2/manager/queue/task", data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status == 400
    empty = await srv.post_json("/v2/customnode/import_fail_info_bulk", {})
    assert empty.status == 400

    from comfyui.nodes.custom_nodes import LoadResult

    srv.engine.registry.custom_node_results = [LoadResult(name="broken-pack", source="directory",
                                                          error="Traceback ...\nImportError: no module x\n")]
    try:
        resp = await srv.post_json("/v2/customnode/import_fail_info_bulk",
                                   {"cnr_ids": ["broken-pack", "fine-pack"], "urls": ["https://x/y/broken-pack.git"]})
        body = await resp.json()
        assert body["fine-pack"] is None
        assert body["broken-pack"]["error"] == "ImportError: no module x"
        assert body["https://x/y/broken-pack.git"]["traceback"].startswith("Traceback")
    finally:
        srv.engine.registry.custom_node_results = []


async def test_manager_routes_are_absent_without_the_flag(make_server):
    srv = await make_server()
    assert (await srv.client.get("/v2/customnode/installed")).status == 404
    assert "extension" not in await (await srv.client.get("/features")).json()
