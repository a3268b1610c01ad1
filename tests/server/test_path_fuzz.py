"""Fuzz every file route with path-escape attempts; nothing outside the allowed folders may
ever come back, be written, be moved or be copied in.

Setup: the workspace lives in ``tmp/ws``; secrets are planted next to it (``tmp/secret.txt``,
``tmp/secret.png`` with an unusual size, ``tmp/secret.safetensors`` whose metadata holds the
marker, ``tmp/secretdir/...``) and symlinks pointing at them are planted *inside* every
allowed folder (input/output/temp, the user's directory, a model folder, a custom-node web
directory, the frontend root). Requests are sent over a raw socket so that ``..``, ``%2e``,
backslashes and NUL bytes reach the server exactly as written.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import urllib.parse

import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from comfyui import paths
from comfyui.engine.engine import Engine
from comfyui.nodes.registry import NodeRegistry
from comfyui.server.app import create_app

MARKER = "TOPSECRET-7f3a9c21"
SECRET_SIZE = (37, 23)
PASSWD_MARKER = "root:x:0:0"


def _secret_png() -> bytes:
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("secret", MARKER)
    buf = io.BytesIO()
    Image.new("RGBA", SECRET_SIZE, (1, 2, 3, 200)).save(buf, format="PNG", pnginfo=meta)
    return buf.getvalue()


def _safetensors(meta: dict) -> bytes:
    header = json.dumps({"__metadata__": meta}).encode()
    return struct.pack("<Q", len(header)) + header


@pytest.fixture
def planted(tmp_path):
    ws = tmp_path / "ws"
    paths.configure(base_directory=ws, create_directories=True)
    (tmp_path / "secret.txt").write_text(MARKER)
    (tmp_path / "secret.png").write_bytes(_secret_png())
    (tmp_path / "secret.safetensors").write_bytes(_safetensors({"s": MARKER}))
    (tmp_path / "secret.js").write_text(f"// {MARKER}")
    (tmp_path / "secret.json").write_text(json.dumps({"s": MARKER}))
    (tmp_path / "secretdir").mkdir()
    (tmp_path / "secretdir" / "secret.txt").write_text(MARKER)
    (tmp_path / "secretdir" / "secret.png").write_bytes(_secret_png())
    (tmp_path / "secretdir" / "en").mkdir()  # reached through the pack's symlinked locales/
    (tmp_path / "secretdir" / "en" / "main.json").write_text(json.dumps({"s": MARKER}))
    # another user's data is outside the default user's allowed folder too
    (ws / "user" / "other").mkdir(parents=True)
    (ws / "user" / "other" / "secret.json").write_text(MARKER)
    (ws / "user" / "users.json").write_text(json.dumps({"other": MARKER}))

    links = {
        ws / "input" / "link.png": tmp_path / "secret.png",
        ws / "input" / "link.txt": tmp_path / "secret.txt",
        ws / "input" / "linkdir": tmp_path / "secretdir",
        ws / "output" / "link.png": tmp_path / "secret.png",
        ws / "output" / "linkdir": tmp_path / "secretdir",
        ws / "temp" / "link.png": tmp_path / "secret.png",
        ws / "user" / "default" / "link.json": tmp_path / "secret.json",
        ws / "user" / "default" / "linkdir": tmp_path / "secretdir",
        ws / "user" / "default" / "workflows" / "link.json": tmp_path / "secret.json",
        ws / "models" / "checkpoints" / "link.safetensors": tmp_path / "secret.safetensors",
        ws / "models" / "checkpoints" / "link.png": tmp_path / "secret.png",
        ws / "models" / "checkpoints" / "linkdir": tmp_path / "secretdir",
    }
    (ws / "user" / "default" / "workflows").mkdir(parents=True, exist_ok=True)
    # a legitimate model whose preview sibling is a symlink to the secret image
    (ws / "models" / "checkpoints" / "m.safetensors").write_bytes(_safetensors({"ok": "1"}))
    links[ws / "models" / "checkpoints" / "m.preview.png"] = tmp_path / "secret.png"
    # custom node pack with a web directory and example workflows containing symlinks
    pack = ws / "custom_nodes" / "Pack"
    (pack / "web").mkdir(parents=True)
    (pack / "web" / "ok.js").write_text("export {}")
    (pack / "example_workflows").mkdir()
    (pack / "example_workflows" / "ok.json").write_text("{}")
    (pack / "subgraphs").mkdir()
    links[pack / "web" / "link.js"] = tmp_path / "secret.js"
    links[pack / "web" / "linkdir"] = tmp_path / "secretdir"
    links[pack / "example_workflows" / "link.json"] = tmp_path / "secret.json"
    links[pack / "subgraphs" / "link.json"] = tmp_path / "secret.json"
    links[pack / "locales"] = tmp_path / "secretdir"
    # a frontend root with symlinks (--front-end-root)
    fe = tmp_path / "fe"
    (fe / "assets").mkdir(parents=True)
    (fe / "index.html").write_text("<html>fe</html>")
    (fe / "assets" / "ok.js").write_text("1")
    (fe / "extensions" / "core").mkdir(parents=True)
    (fe / "extensions" / "core" / "ok.js").write_text("1")
    links[fe / "assets" / "link.js"] = tmp_path / "secret.js"
    links[fe / "assets" / "linkdir"] = tmp_path / "secretdir"
    links[fe / "extensions" / "core" / "link.js"] = tmp_path / "secret.js"
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    registry = NodeRegistry()
    registry.web_directories["Pack"] = str(pack / "web")
    yield tmp_path, ws, fe, registry
    paths.configure(base_directory=None)


def _snapshot_outside(tmp_path, ws) -> dict:
    """Every file outside the workspace (and the frontend root) with its content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        if os.path.abspath(dirpath).startswith(str(ws)):
            dirnames[:] = []
            continue
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                with open(p, "rb") as fh:
                    out[p] = fh.read()
    return out


async def raw_request(port: int, method: str, target: str, body: bytes = b"",
                      headers: dict | None = None) -> tuple[int, bytes, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    h = {"Host": f"127.0.0.1:{port}", "Connection": "close", "Content-Length": str(len(body))}
    h.update(headers or {})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    writer.write(head.encode("latin-1", "replace") + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
    ctype = ""
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        if k.lower() == "content-type":
            ctype = v.strip()
        if k.lower() == "transfer-encoding" and "chunked" in v.lower():
            payload = _dechunk(payload)
    return status, payload, ctype


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        try:
            n = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2:]
    return bytes(out)


def escape_corpus(tmp_path) -> list[str]:
    """Relative and absolute escape attempts aimed at the planted secrets."""
    names = ["secret.txt", "secret.png", "secretdir/secret.txt"]
    out: list[str] = []
    for depth in (2, 3, 4):  # input/ is 2 levels below the secrets, user/default 3, a pack's web/ 4
        for name in names:
            out += [
                "../" * depth + name,
                "..\\" * depth + name.replace("/", "\\"),
                "..%2f" * depth + name,
                "%2e%2e/" * depth + name,
                "%2e%2e%2f" * depth + name,
                "%252e%252e%252f" * depth + name,
                "....//" * depth + name,
                "./../" * depth + name,
            ]
        out += ["../" * depth + "secret.safetensors", "../" * depth + "secret.json",
                "sub/../" + "../" * depth + "secret.txt", "..;/" * depth + "secret.txt"]
    names += ["secret.safetensors", "secret.json"]
    for name in names:
        out += [str(tmp_path / name), "/" + name, "//" + str(tmp_path / name).lstrip("/"),
                str(tmp_path / name).replace("/", "\\"), "file://" + str(tmp_path / name)]
    out += [
        "/etc/passwd", "../../../../../../../../etc/passwd", "..\\..\\..\\..\\etc\\passwd",
        "%2Fetc%2Fpasswd", "C:\\Windows\\win.ini", "C:/secret.txt", "\\\\server\\share\\secret.txt",
        "x.png\x00../../secret.txt", "x.png%00", "../secret.txt\x00.png", "..",
        "../", "...", "．．/．．/secret.txt", "%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
        "link.png", "link.txt", "link.json", "link.js", "link.safetensors", "linkdir/secret.txt",
        "linkdir/secret.png", "linkdir", "linkdir/../link.png", "workflows/link.json",
        "../other/secret.json", "../users.json", "users.json", "..%2fusers.json",
        "m.safetensors",
        "../../secret.txt [input]", "../secret.txt [output]",
    ]
    return out


def _safetensors_variant(p: str) -> str:
    return p if p.endswith(".safetensors") else p + ".safetensors"


def _leaks(body: bytes, ctype: str) -> str | None:
    if MARKER.encode() in body or PASSWD_MARKER.encode() in body:
        return "marker"
    if ctype.startswith("image/") and body:
        try:
            with Image.open(io.BytesIO(body)) as img:
                if img.size == SECRET_SIZE:
                    return "secret image"
        except Exception:  # noqa: BLE001
            pass
    return None


def _multipart(filename: str, fields: dict, data: bytes) -> tuple[bytes, dict]:
    boundary = "----fuzzboundary"
    out = bytearray()
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode("utf-8", "replace")
    safe_name = filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")
    out += f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{safe_name}"\r\n'.encode("utf-8", "replace")
    out += b"Content-Type: image/png\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def requests_for(p: str) -> list[tuple[str, str, bytes, dict]]:
    """Every file route with ``p`` in each path-bearing slot."""
    q = urllib.parse.quote(p, safe="")          # one encoded segment, as the frontend sends
    raw = p.replace(" ", "%20").replace("\x00", "%00").replace("#", "%23").replace("?", "%3F")
    qs = lambda **kw: urllib.parse.urlencode(kw, safe="")  # noqa: E731
    reqs: list[tuple[str, str, bytes, dict]] = []
    for kind in ("input", "output", "temp"):
        reqs.append(("GET", f"/api/view?{qs(filename=p, type=kind)}", b"", {}))
        reqs.append(("GET", f"/api/view?{qs(filename='secret.txt', subfolder=p, type=kind)}", b"", {}))
    reqs += [
        ("GET", f"/view?{qs(filename=p, type='input', preview='webp;90')}", b"", {}),
        ("GET", f"/view?{qs(filename=p, type='input', channel='rgb')}", b"", {}),
        ("GET", f"/view?{qs(filename=p, type='input', channel='a')}", b"", {}),
        ("GET", f"/view?{qs(filename='secret.png', subfolder=p, type='output', preview='jpeg;50')}", b"", {}),
        ("GET", f"/api/view_metadata/checkpoints?{qs(filename=_safetensors_variant(p))}", b"", {}),
        ("GET", f"/api/experiment/models/preview/checkpoints/0/{raw}", b"", {}),
        ("GET", f"/api/experiment/models/preview/checkpoints/0/{q}", b"", {}),
        ("GET", f"/api/userdata/{q}", b"", {}),
        ("GET", f"/api/userdata/{raw}", b"", {}),
        ("GET", f"/api/userdata?{qs(dir=p, recurse='true', full_info='true')}", b"", {}),
        ("GET", f"/api/v2/userdata?{qs(path=p)}", b"", {}),
        ("POST", f"/api/userdata/{q}?overwrite=true", b"pwned", {}),
        ("POST", f"/api/userdata/{q}/move/stolen.txt?overwrite=true", b"", {}),
        ("POST", f"/api/userdata/stolen.txt/move/{q}?overwrite=true", b"", {}),
        ("DELETE", f"/api/userdata/{q}", b"", {}),
        ("GET", f"/extensions/Pack/{raw}", b"", {}),
        ("GET", f"/extensions/Pack/{q}", b"", {}),
        ("GET", f"/extensions/{raw}", b"", {}),
        ("GET", f"/extensions/core/{raw}", b"", {}),
        ("GET", f"/assets/{raw}", b"", {}),
        ("GET", f"/assets/{q}", b"", {}),
        ("GET", f"/{raw}", b"", {}),
        ("GET", f"/templates/{raw}", b"", {}),
        ("GET", f"/docs/{raw}", b"", {}),
        ("GET", f"/api/workflow_templates/Pack/{raw}", b"", {}),
        ("GET", f"/api/workflow_templates/Pack/{q}", b"", {}),
        ("GET", f"/api/global_subgraphs/{q}", b"", {}),
        ("GET", f"/internal/files/{q}", b"", {}),
    ]
    for fields in ({"type": "input"}, {"type": "input", "subfolder": p}, {"type": "output", "subfolder": p, "overwrite": "true"}):
        body, headers = _multipart(p, fields, b"\x89PNG fuzz")
        reqs.append(("POST", "/api/upload/image", body, headers))
    ref = json.dumps({"filename": p, "type": "input", "subfolder": ""})
    body, headers = _multipart("mask.png", {"original_ref": ref}, _secret_png())
    reqs.append(("POST", "/api/upload/mask", body, headers))
    ref = json.dumps({"filename": "secret.png", "type": "output", "subfolder": p})
    body, headers = _multipart("mask.png", {"original_ref": ref}, _secret_png())
    reqs.append(("POST", "/api/upload/mask", body, headers))
    return reqs


async def test_no_file_route_leaks_outside_content(planted):
    tmp_path, ws, fe, registry = planted
    before = _snapshot_outside(tmp_path, ws)
    app = create_app(Engine(registry=registry), {"front_end_root": str(fe)})
    server = TestServer(app)
    await server.start_server()
    port = server.port
    # a legitimate file the move attempts could try to push outside
    (ws / "user" / "default" / "stolen.txt").write_text("harmless")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    try:
        corpus = escape_corpus(tmp_path)
        sem = asyncio.Semaphore(32)

        async def one(method, target, body, headers):
            async with sem:
                status, payload, ctype = await raw_request(port, method, target, body, headers)
            statuses[status] = statuses.get(status, 0) + 1
            leak = _leaks(payload, ctype)
            if leak:
                failures.append(f"{leak}: {method} {target!r} -> {status}")
            if status >= 500:
                failures.append(f"{status}: {method} {target!r}: {payload[:200]!r}")

        jobs = [one(*r) for p in corpus for r in requests_for(p)]
        await asyncio.gather(*jobs)
        # listings built from custom-node folders (symlinked locales/, subgraphs, web files)
        for target in ("/api/i18n", "/api/extensions", "/api/workflow_templates", "/api/global_subgraphs",
                       "/internal/files/input", "/api/experiment/models/checkpoints", "/internal/logs"):
            await one("GET", target, b"", {})
        status, payload, _ = await raw_request(port, "GET", "/api/global_subgraphs")
        for sid in json.loads(payload):
            await one("GET", f"/api/global_subgraphs/{sid}", b"", {})
        # sanity: the legitimate files are reachable through the same routes
        ok = [("/api/view?filename=ok.json&type=input", None)]
        (ws / "input" / "ok.json").write_text("{}")
        for target, _ in ok + [("/extensions/Pack/ok.js", None), ("/assets/ok.js", None),
                               ("/api/workflow_templates/Pack/ok.json", None),
                               ("/api/view_metadata/checkpoints?filename=m.safetensors", None)]:
            status, _payload, _ = await raw_request(port, "GET", target)
            assert status == 200, target
    finally:
        await server.close()

    assert not failures, "\n".join(failures[:40])
    # nothing outside the workspace was created, changed, moved or deleted
    assert _snapshot_outside(tmp_path, ws) == before
    # and no secret was copied into an allowed folder (where a later request could read it)
    for dirpath, _dirs, filenames in os.walk(ws):
        for f in filenames:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                continue
            with open(p, "rb") as fh:
                data = fh.read()
            if p.endswith("users.json") or p.endswith(os.path.join("other", "secret.json")):
                continue  # planted inside the workspace on purpose
            assert _leaks(data, "image/png") is None, f"secret copied to {p}"
    assert len(statuses) > 1 and sum(statuses.values()) > 1000
