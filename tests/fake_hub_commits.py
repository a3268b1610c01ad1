"""A loopback aiohttp server that speaks the part of the Hugging Face Hub's HTTP API that
``HfApi.create_commit`` / ``upload_file`` use for small (regular, non-LFS) files; point
``HF_ENDPOINT`` at :attr:`HubCommits.url`.

``POST /api/{repo_type}s/{repo_id}/preupload/{revision}`` answers ``uploadMode: regular`` for
every file; ``POST /api/{repo_type}s/{repo_id}/commit/{revision}`` reads the NDJSON body
(a ``header`` line, then one ``file`` line per file with base64 ``content``), stores the files in
:attr:`repos` and answers ``commitUrl`` / ``commitOid``. Unknown repositories answer ``404`` with
``X-Error-Code: RepoNotFound``; a repository in :attr:`tokens` needs ``Authorization: Bearer <token>``
(``401`` otherwise). ``GET /{repo}/resolve/{revision}/{path}`` serves what was committed.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Commit:
    revision: str
    summary: str
    files: dict[str, bytes]
    authorization: str | None


@dataclass
class HubCommits:
    repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = field(default_factory=dict)  # (type, id) -> rev -> files
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, id) -> the token it needs
    commits: list[Commit] = field(default_factory=list)
    url: str = ""

    def add_repo(self, repo_id: str, repo_type: str = "model", token: str | None = None) -> None:
        self.repos[(repo_type, repo_id)] = {"main": {}}
        if token:
            self.tokens[(repo_type, repo_id)] = token

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        return self.repos[(repo_type, repo_id)].get(revision, {})

    def _repo(self, request: web.Request) -> tuple[str, str]:
        key = (request.match_info["type"][:-1], f"{request.match_info['owner']}/{request.match_info['name']}")
        if key not in self.repos:
            raise web.HTTPNotFound(text='{"error": "Repository not found"}', content_type="application/json",
                                   headers={"X-Error-Code": "RepoNotFound"})
        token = self.tokens.get(key)
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            raise web.HTTPUnauthorized(text='{"error": "Invalid credentials"}', content_type="application/json")
        return key

    async def preupload(self, request: web.Request) -> web.Response:
        self._repo(request)
        body = await request.json()
        return web.json_response({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                            for f in body["files"]]})

    async def commit(self, request: web.Request) -> web.Response:
        key = self._repo(request)
        revision = request.match_info["revision"]
        lines = [json.loads(line) for line in (await request.text()).splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = {}
        for line in lines:
            if line["key"] == "file":
                assert line["value"]["encoding"] == "base64"
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] != "header":  # lfsFile, deletedFile...: not part of this fake
                raise web.HTTPBadRequest(text=f"unsupported operation {line['key']}")
        self.repos[key].setdefault(revision, {}).update(files)
        self.commits.append(Commit(revision, header["summary"], files, request.headers.get("Authorization")))
        oid = hashlib.sha1(repr((len(self.commits), sorted(files))).encode()).hexdigest()
        kind = "" if key[0] == "model" else f"{key[0]}s/"
        return web.json_response({"commitUrl": f"{self.url}/{kind}{key[1]}/commit/{oid}", "commitOid": oid,
                                  "success": True})

    async def resolve(self, request: web.Request) -> web.Response:
        kind = request.match_info.get("kind", "")
        key = (kind[:-1] if kind else "model", f"{request.match_info['owner']}/{request.match_info['name']}")
        files = self.repos.get(key, {}).get(request.match_info["revision"], {})
        if request.match_info["path"] not in files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound"})
        return web.Response(body=files[request.match_info["path"]])

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        api = "/api/{type:models|datasets|spaces}/{owner}/{name}"
        app.router.add_post(api + "/preupload/{revision}", self.preupload)
        app.router.add_post(api + "/commit/{revision}", self.commit)
        app.router.add_get("/{kind:datasets/|spaces/}{owner}/{name}/resolve/{revision}/{path:.+}", self.resolve)
        app.router.add_get("/{owner}/{name}/resolve/{revision}/{path:.+}", self.resolve)
        return app

    async def start(self) -> web.AppRunner:
        runner = web.AppRunner(self.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return runner
