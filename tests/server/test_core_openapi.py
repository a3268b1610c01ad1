"""/openapi.json documents every route the app serves (both servers' routes)."""
from __future__ import annotations

from aiohttp import web

from comfyui.server.openapi import normalize_path


def _served_routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        method = route.method.upper()
        if method in ("HEAD", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None and "prefix" in info:  # static resource
            path = info["prefix"].rstrip("/") + "/{path}"
        out.add((method.lower(), normalize_path(path)))
    return out


async def test_every_registered_route_is_documented(make_server):
    from comfyui.compat.server import PromptServer

    async def hello(request):
        return web.json_response({"hello": True})

    table = PromptServer.instance.routes
    table.get("/servertest_pack/hello")(hello)
    try:
        srv = await make_server()
        resp = await srv.client.get("/openapi.json")
        assert resp.status == 200
        doc = await resp.json()
        assert doc["openapi"].startswith("3.")
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        served = _served_routes(srv.app)
        missing = sorted(served - documented)
        assert not missing, f"routes missing from /openapi.json: {missing}"
        # both prefixes of the core routes, and the custom node route
        for path in ("/prompt", "/api/prompt", "/api/jobs/{job_id}/cancel", "/internal/logs",
                     "/api/userdata/{file}", "/ws", "/servertest_pack/hello", "/api/servertest_pack/hello"):
            assert path in doc["paths"], path
        assert "/api/internal/logs" not in doc["paths"]
        assert doc["paths"]["/servertest_pack/hello"]["get"]["tags"] == ["custom_nodes"]
        # the custom node route is served, bare and under /api
        assert (await (await srv.client.get("/api/servertest_pack/hello")).json()) == {"hello": True}
        assert (await srv.client.get("/servertest_pack/hello")).status == 200
        # documented operations have responses; ids are unique
        ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values() if "operationId" in op]
        assert len(ids) == len(set(ids))
    finally:
        table._items[:] = [r for r in table._items if getattr(r, "path", None) != "/servertest_pack/hello"]


async def test_documented_core_routes_exist(server):
    """The hand-written part of the document does not describe routes that are not served."""
    from comfyui.server.openapi import base_document

    served = _served_routes(server.app)
    for path, ops in base_document()["paths"].items():
        for method in ops:
            assert (method, path) in served, (method, path)
