"""A local HTTP server that speaks the part of the Hugging Face Hub's HTTP API that
``huggingface_hub.hf_hub_download`` uses (point ``HF_ENDPOINT`` at it), plus plain file URLs.

Hub: ``HEAD|GET /{owner}/{repo}/resolve/{revision}/{path}`` answers as huggingface.co does for an
LFS file: ``302`` to ``/cdn/{sha256}`` on a second port (another origin, as the Hub's CDN) with
``X-Repo-Commit``, ``X-Linked-Etag`` (the file's SHA-256, quoted), ``X-Linked-Size`` and ``ETag``; a gated repository answers ``401``
with ``X-Error-Code: GatedRepo`` unless the request carries its token; unknown repositories and
files answer ``404`` with ``X-Error-Code: RepoNotFound`` / ``EntryNotFound``.
Files: ``GET /files/{name}`` (and ``/cdn/{sha256}``) with ``Range: bytes=N-`` (``206`` +
``Content-Range``), an optional ``Content-Disposition`` name, and an optional stall: the first
GET sends ``stall_after`` bytes, then waits until :meth:`FakeHub.release` (a connection that
hangs mid-download, for the interrupted-download tests).
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Blob:
    data: bytes
    claimed_sha256: str | None = None  # what the server says the SHA-256 is (a lying mirror)
    disposition: str | None = None  # Content-Disposition file name

    @property
    def sha256(self) -> str:
        return self.claimed_sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, Blob]] = field(default_factory=dict)  # repo id -> {path: blob}
    files: dict[str, Blob] = field(default_factory=dict)  # /files/<name>
    gated: dict[str, str] = field(default_factory=dict)  # repo id -> the token that opens it
    stall_after: int | None = None  # bytes the first GET of a file sends before hanging
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)

    def __post_init__(self):
        self._release = threading.Event()
        self.stalled = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        # the Hub and its file store (another origin, as huggingface.co's CDN: huggingface_hub
        # stops at a redirect that leaves the Hub and reads the file's metadata from it)
        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
        self.url, self.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers)
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def release(self) -> None:
        """Let a stalled download's connection end (and later GETs run to the end)."""
        self.stall_after = None
        self._release.set()

    def close(self) -> None:
        self.release()
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def ranges(self) -> list[str | None]:
        return [r for m, p, r in self.requests if m == "GET" and (p.startswith(("/files/", "/cdn/")))]

    # ---- answers ----
    def _by_sha(self, sha: str) -> Blob | None:
        for blob in [*self.files.values(), *(b for r in self.repos.values() for b in r.values())]:
            if blob.sha256 == sha:
                return blob
        return None

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = h.path.split("?", 1)[0]
        self.requests.append((h.command, path, h.headers.get("Range")))
        if path.startswith("/files/"):
            return self._send_blob(h, self.files.get(path[len("/files/"):]), body)
        if path.startswith("/cdn/"):
            return self._send_blob(h, self._by_sha(path[len("/cdn/"):]), body)
        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(h, 404, "RepoNotFound", "not a resolve URL")
        repo, file_path = "/".join(parts[:2]), "/".join(parts[4:])
        if repo not in self.repos:
            return self._error(h, 404, "RepoNotFound", f"Repository Not Found for url: {path}")
        token = self.gated.get(repo)
        if token is not None and h.headers.get("Authorization") != f"Bearer {token}":
            return self._error(h, 401, "GatedRepo", f"Access to model {repo} is restricted.")
        blob = self.repos[repo].get(file_path)
        if blob is None:
            return self._error(h, 404, "EntryNotFound", f"Entry Not Found for url: {path}")
        h.send_response(302)
        h.send_header("Location", f"{self.cdn_url}/cdn/{blob.sha256}")
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("X-Linked-Etag", f'"{blob.sha256}"')
        h.send_header("X-Linked-Size", str(len(blob.data)))
        h.send_header("ETag", f'"{blob.sha256}"')
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _error(self, h, status: int, code: str, message: str) -> None:
        data = ('{"error": "%s"}' % message).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(data)

    def _send_blob(self, h, blob: Blob | None, body: bool) -> None:
        if blob is None:
            return self._error(h, 404, "EntryNotFound", "no such file")
        data, start = blob.data, 0
        wanted = h.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[len("bytes="):-1])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("ETag", f'"{blob.sha256}"')
        if blob.disposition:
            h.send_header("Content-Disposition", f'attachment; filename="{blob.disposition}"')
        h.end_headers()
        if not body:
            return
        rest = data[start:]
        stall = self.stall_after
        try:
            if stall is not None and h.command == "GET":
                self.stall_after = None  # only the first download hangs
                h.wfile.write(rest[:stall])
                h.wfile.flush()
                self.stalled.set()
                self._release.wait(60)
                return  # the connection closes short of Content-Length
            h.wfile.write(rest)
        except (BrokenPipeError, ConnectionResetError):
            pass
