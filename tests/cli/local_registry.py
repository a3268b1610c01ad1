"""A Comfy registry on loopback (aiohttp in a thread) for pack-install tests: it serves
``GET /nodes/{id}``, ``GET /nodes/{id}/install[?version=V]`` (``downloadUrl`` + ``version``), the
zip files, and the search the frontend's Manager dialog uses (``GET /nodes``, ``/nodes/search``)."""
from __future__ import annotations

import asyncio
import io
import threading
import zipfile

from aiohttp import web


def pack_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def node_pack_files(node_class: str, version: str, requirements: str | None = None) -> dict[str, str]:
    """A pack defining one node ``node_class`` whose output is the version string."""
    init = (f"class {node_class}:\n"
            f"    CATEGORY = 'test'\n"
            f"    RETURN_TYPES = ('STRING',)\n"
            f"    FUNCTION = 'run'\n"
            f"    @classmethod\n"
            f"    def INPUT_TYPES(cls):\n"
            f"        return {{'required': {{}}}}\n"
            f"    def run(self):\n"
            f"        return ({version!r},)\n"
            f"NODE_CLASS_MAPPINGS = {{{node_class!r}: {node_class}}}\n")
    files = {"__init__.py": init, "pyproject.toml": f"[project]\nname = 'PACK-ID'\nversion = '{version}'\n"}
    if requirements is not None:
        files["requirements.txt"] = requirements
    return files


class LocalRegistry:
    def __init__(self):
        self.packs: dict[str, dict[str, bytes]] = {}   # id -> version -> zip
        self.requests: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def add(self, node_id: str, version: str, files: dict[str, str]) -> None:
        files = {k: v.replace("PACK-ID", node_id) for k, v in files.items()}  # [project] name = the id
        self.packs.setdefault(node_id, {})[version] = pack_zip(files)

    def _latest(self, node_id: str) -> str:
        return sorted(self.packs[node_id], key=lambda v: tuple(int(x) for x in v.split(".")))[-1]

    def _node_json(self, node_id: str) -> dict:
        latest = self._latest(node_id)
        return {"id": node_id, "name": node_id, "description": f"{node_id} test pack",
                "publisher": {"id": "tester", "name": "tester"}, "author": "tester", "repository": "",
                "downloads": 1, "rating": 0, "status": "NodeStatusActive", "category": "",
                "latest_version": {"version": latest, "id": f"{node_id}-{latest}",
                                   "downloadUrl": f"{self.url}/files/{node_id}/{latest}.zip",
                                   "status": "NodeVersionStatusActive", "deprecated": False,
                                   "createdAt": "2026-01-01T00:00:00Z", "supported_os": [],
                                   "supported_accelerators": []}}

    def app(self) -> web.Application:
        app = web.Application()

        @web.middleware
        async def record(request, handler):
            self.requests.append(request.path_qs)
            resp = await handler(request)
            resp.headers["Access-Control-Allow-Origin"] = "*"
            return resp

        app.middlewares.append(record)

        async def node(request):
            node_id = request.match_info["id"]
            if node_id not in self.packs:
                return web.json_response({"message": "Node not found"}, status=404)
            return web.json_response(self._node_json(node_id))

        async def install(request):
            node_id = request.match_info["id"]
            if node_id not in self.packs:
                return web.json_response({"message": "Node not found"}, status=404)
            version = request.query.get("version") or self._latest(node_id)
            if version not in self.packs[node_id]:
                return web.json_response({"message": "Node version not found"}, status=404)
            return web.json_response({"id": f"{node_id}-{version}", "version": version,
                                      "downloadUrl": f"{self.url}/files/{node_id}/{version}.zip"})

        async def file(request):
            node_id, version = request.match_info["id"], request.match_info["version"]
            data = self.packs.get(node_id, {}).get(version)
            if data is None:
                raise web.HTTPNotFound()
            return web.Response(body=data, content_type="application/zip")

        async def search(request):
            nodes = [self._node_json(i) for i in sorted(self.packs)]
            return web.json_response({"nodes": nodes, "total": len(nodes), "page": 1, "limit": 64,
                                      "totalPages": 1})

        async def options(request):
            return web.Response(headers={"Access-Control-Allow-Origin": "*",
                                         "Access-Control-Allow-Headers": "*",
                                         "Access-Control-Allow-Methods": "GET, POST, OPTIONS"})

        app.router.add_route("OPTIONS", "/{tail:.*}", options)
        app.router.add_get("/nodes", search)
        app.router.add_get("/nodes/search", search)
        app.router.add_get("/nodes/{id}", node)
        app.router.add_get("/nodes/{id}/install", install)
        app.router.add_get("/files/{id}/{version}.zip", file)
        return app

    def start(self) -> "LocalRegistry":
        self._thread.start()

        async def up():
            self._runner = web.AppRunner(self.app())
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return site._server.sockets[0].getsockname()[1]

        port = asyncio.run_coroutine_threadsafe(up(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
