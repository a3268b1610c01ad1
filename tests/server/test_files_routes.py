"""Contract tests for the frontend, file, user, settings and userdata routes.

Each test runs a real server (``create_app``) over its own temporary workspace and talks to it
over HTTP like the frontend does.
"""
from __future__ import annotations

import io
import json
import os
import struct

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from comfyui.engine.engine import Engine
from comfyui.nodes.registry import NodeRegistry
from comfyui.server.app import create_app


@pytest.fixture
async def make_client(workspace):
    clients = []

    async def make(registry=None, **config):
        app = create_app(Engine(registry=registry or NodeRegistry()), config)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def client(make_client):
    return await make_client()


def png_bytes(size=(8, 6), color=(255, 0, 0, 128), mode="RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGBA" else color[:3]).save(buf, format="PNG")
    return buf.getvalue()


def upload_form(data: bytes, filename: str = "img.png", **fields) -> FormData:
    form = FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for k, v in fields.items():
        form.add_field(k, v)
    return form


def raw_multipart(data: bytes, filename: str, **fields) -> tuple[bytes, dict]:
    """A multipart body with the file name written verbatim (as curl or a hostile client
    would; aiohttp's FormData percent-encodes it)."""
    boundary = "----comfyuitestboundary"
    out = bytearray()
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode("utf-8", "surrogateescape")
    out += data + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# ============================================================================ frontend


async def test_index_and_static_mime_types(client):
    r = await client.get("/")
    assert r.status == 200
    assert r.content_type == "text/html"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["Pragma"] == "no-cache" and r.headers["Expires"] == "0"
    assert "<script" in await r.text()

    r = await client.get("/scripts/app.js")
    assert r.status == 200 and r.content_type == "application/javascript"
    r = await client.get("/build-manifest.json")
    assert r.status == 200 and r.content_type == "application/json"
    r = await client.get("/materialdesignicons.min.css")
    assert r.status == 200 and r.content_type == "text/css"


async def test_no_spa_catch_all(client):
    for path in ("/user.css", "/no/such/page", "/assets/missing.js", "/templates_x"):
        r = await client.get(path)
        assert r.status == 404, path
        assert r.content_type != "text/html"


async def test_extensions_list_and_pack_files(make_client, tmp_path):
    web = tmp_path / "packweb"
    (web / "js").mkdir(parents=True)
    (web / "js" / "main.js").write_text("export const x = 1;")
    (web / "style.css").write_text("a{}")
    registry = NodeRegistry()
    registry.web_directories["MyPack"] = str(web)
    client = await make_client(registry=registry)
    for url in ("/extensions", "/api/extensions"):
        r = await client.get(url)
        assert r.status == 200
        listed = await r.json()
        assert isinstance(listed, list) and all(isinstance(x, str) for x in listed)
        assert "/extensions/MyPack/js/main.js" in listed
        assert any(x.startswith("/extensions/core/") for x in listed)
    r = await client.get("/extensions/MyPack/js/main.js")
    assert r.status == 200 and r.content_type == "application/javascript"
    assert await r.text() == "export const x = 1;"
    r = await client.get("/extensions/core/groupNode.js")
    assert r.status == 200 and r.content_type == "application/javascript"
    assert (await client.get("/extensions/MyPack/nope.js")).status == 404
    # dot-files of a pack (WEB_DIRECTORY is sometimes the pack itself) are never served
    (web / ".env").write_text("API_KEY=x")
    (web / ".git").mkdir()
    (web / ".git" / "config").write_text("[core]")
    assert (await client.get("/extensions/MyPack/.env")).status == 404
    assert (await client.get("/extensions/MyPack/.git/config")).status == 404


async def test_front_end_root_override(make_client, tmp_path):
    root = tmp_path / "fe"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<html>custom</html>")
    (root / "assets" / "a.js").write_text("1")
    client = await make_client(front_end_root=str(root))
    r = await client.get("/")
    assert r.status == 200 and "custom" in await r.text()
    r = await client.get("/assets/a.js")
    assert r.status == 200 and r.content_type == "application/javascript"
    assert (await client.get("/scripts/app.js")).status == 404


async def test_templates_and_docs_degrade_gracefully(client):
    import importlib.util

    r = await client.get("/templates/index.json")
    if importlib.util.find_spec("comfyui_workflow_templates_core") is None:
        assert r.status == 404
    else:
        assert r.status == 200 and r.content_type == "application/json"
    r = await client.get("/docs/KSampler/en.md")
    if importlib.util.find_spec("comfyui_embedded_docs") is None:
        assert r.status == 404
    assert (await client.get("/templates/../../etc/passwd")).status in (403, 404)


async def test_custom_node_i18n_templates_and_subgraphs(client, workspace):
    pack = workspace / "custom_nodes" / "CoolPack"
    (pack / "locales" / "en").mkdir(parents=True)
    (pack / "locales" / "en" / "main.json").write_text(json.dumps({"menu": {"hello": "Hello"}}))
    (pack / "locales" / "en" / "nodeDefs.json").write_text(json.dumps({"CoolNode": {"display_name": "Cool"}}))
    (pack / "locales" / "fr").mkdir(parents=True)
    (pack / "locales" / "fr" / "settings.json").write_text(json.dumps({"Cool.Setting": {"name": "Réglage"}}))
    (pack / "example_workflows").mkdir()
    (pack / "example_workflows" / "demo.json").write_text('{"nodes": []}')
    (pack / "subgraphs").mkdir()
    (pack / "subgraphs" / "blur.json").write_text('{"definitions": {}}')

    r = await client.get("/api/i18n")
    assert await r.json() == {"en": {"menu": {"hello": "Hello"}, "nodeDefs": {"CoolNode": {"display_name": "Cool"}}},
                              "fr": {"settings": {"Cool.Setting": {"name": "Réglage"}}}}
    r = await client.get("/api/workflow_templates")
    assert await r.json() == {"CoolPack": ["demo"]}
    r = await client.get("/api/workflow_templates/CoolPack/demo.json")
    assert r.status == 200 and await r.json() == {"nodes": []}
    assert (await client.get("/api/workflow_templates/CoolPack/nope.json")).status == 404

    r = await client.get("/api/global_subgraphs")
    listing = await r.json()
    assert len(listing) == 1
    (sid, entry), = listing.items()
    assert entry["name"] == "blur" and entry["info"]["node_pack"] == "CoolPack"
    r = await client.get(f"/api/global_subgraphs/{sid}")
    assert json.loads((await r.json())["data"]) == {"definitions": {}}
    assert (await client.get("/api/global_subgraphs/unknown")).status == 404


# ============================================================================ users / settings


async def test_single_user_users_and_settings(client, workspace):
    r = await client.get("/api/users")
    assert await r.json() == {"storage": "server", "migrated": False}

    r = await client.get("/api/settings")
    assert r.status == 200 and await r.json() == {}
    # the frontend posts settings as text/plain with a Comfy-User header
    r = await client.post("/api/settings/Comfy.Locale", data=json.dumps("fr"), headers={"Comfy-User": ""})
    assert r.status == 200
    r = await client.post("/api/settings", json={"A.b": 1, "C.d": {"x": [1, 2]}})
    assert r.status == 200
    r = await client.get("/api/settings")
    assert await r.json() == {"Comfy.Locale": "fr", "A.b": 1, "C.d": {"x": [1, 2]}}
    r = await client.get("/api/settings/Comfy.Locale")
    assert await r.json() == "fr"
    r = await client.get("/api/settings/Missing.Key")
    assert r.status == 200 and await r.json() is None
    # an empty body deletes the key
    r = await client.post("/api/settings/A.b", data=b"", headers={"Comfy-User": ""})
    assert r.status == 200
    assert "A.b" not in await (await client.get("/settings")).json()
    stored = json.loads((workspace / "user" / "default" / "comfy.settings.json").read_text())
    assert stored == {"Comfy.Locale": "fr", "C.d": {"x": [1, 2]}}
    r = await client.get("/api/users")
    assert await r.json() == {"storage": "server", "migrated": True}


async def test_settings_bad_input(client):
    r = await client.post("/api/settings", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and "error" in await r.json()
    r = await client.post("/api/settings", json=[1, 2])
    assert r.status == 400
    # text/plain without the frontend's Comfy-User header: a cross-site form could send this
    r = await client.post("/api/settings/X", data=b'"v"', headers={"Content-Type": "text/plain"})
    assert r.status == 415


async def test_multi_user(make_client):
    client = await make_client(multi_user=True)
    r = await client.get("/api/users")
    assert await r.json() == {"storage": "server", "users": {}}
    r = await client.post("/api/users", json={"username": "Alice Smith"})
    assert r.status == 200
    alice = await r.json()
    assert isinstance(alice, str) and alice.startswith("Alice-Smith_")
    r = await client.post("/api/users", json={"username": "Alice Smith"})
    assert r.status == 400 and await r.json() == {"error": "Duplicate username."}
    bob = await (await client.post("/api/users", json={"username": "bob"})).json()
    r = await client.get("/api/users")
    assert await r.json() == {"storage": "server", "users": {alice: "Alice Smith", bob: "bob"}}

    # unknown, missing and reserved users are 401 (the client then forgets its user)
    for headers in ({}, {"Comfy-User": ""}, {"Comfy-User": "mallory"}, {"Comfy-User": "__system"}):
        assert (await client.get("/api/settings", headers=headers)).status == 401
        assert (await client.get("/api/userdata?dir=workflows", headers=headers)).status == 401
    # settings are per user
    await client.post("/api/settings/Comfy.Locale", data='"de"', headers={"Comfy-User": alice})
    assert await (await client.get("/api/settings", headers={"Comfy-User": alice})).json() == {"Comfy.Locale": "de"}
    assert await (await client.get("/api/settings", headers={"Comfy-User": bob})).json() == {}
    r = await client.post("/api/userdata/a.txt", data=b"alice", headers={"Comfy-User": alice})
    assert r.status == 200
    assert (await client.get("/api/userdata/a.txt", headers={"Comfy-User": bob})).status == 404


async def test_multi_user_with_api_key(make_client):
    client = await make_client(multi_user=True, api_key="sekrit")
    auth = {"Authorization": "Bearer sekrit"}
    uid = await (await client.post("/api/users", json={"username": "carol"}, headers=auth)).json()
    # without the key the middleware refuses everything; with it the header picks the user
    assert (await client.get("/api/settings", headers={"Comfy-User": uid})).status == 401
    r = await client.get("/api/settings", headers={"Comfy-User": uid, **auth})
    assert r.status == 200


# ============================================================================ userdata


async def test_userdata_round_trip_with_encoded_slashes(client, workspace):
    wf = json.dumps({"nodes": [], "links": []})
    url = "/api/userdata/workflows%2FMy%20flow.json"
    r = await client.post(url + "?overwrite=false&full_info=true", data=wf)
    assert r.status == 200
    info = await r.json()
    assert info["path"] == "workflows/My flow.json" and info["size"] == len(wf)
    assert isinstance(info["modified"], float) and "created" in info
    assert (workspace / "user" / "default" / "workflows" / "My flow.json").read_text() == wf
    # exists + overwrite=false -> 409; overwrite=true -> 200 with a path string
    assert (await client.post(url + "?overwrite=false&full_info=true", data=wf)).status == 409
    r = await client.post(url + "?overwrite=true", data=wf)
    assert r.status == 200 and await r.json() == "workflows/My flow.json"
    # a real "/" is not the same route
    assert (await client.get("/api/userdata/workflows/My%20flow.json")).status == 404

    r = await client.get(url)
    assert r.status == 200 and await r.text() == wf
    # listing (hidden files are not listed)
    await client.post("/api/userdata/workflows%2F.index.json", data='{"favorites": []}')
    await client.post("/api/userdata/workflows%2Fsub%2Fdeep.json", data="{}")
    r = await client.get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")
    listing = await r.json()
    assert sorted(x["path"] for x in listing) == ["My flow.json", "sub/deep.json"]
    assert all({"path", "size", "modified", "created"} <= set(x) for x in listing)
    r = await client.get("/api/userdata?dir=workflows")
    assert await r.json() == ["My flow.json"]
    r = await client.get("/api/userdata?dir=workflows&recurse=true&split=true")
    assert await r.json() == [["My flow.json", "My flow.json"], ["sub/deep.json", "sub", "deep.json"]]
    r = await client.get("/api/v2/userdata?path=workflows")
    v2 = await r.json()
    assert {"name": "sub", "path": "workflows/sub", "type": "directory"} in v2
    assert any(x["type"] == "file" and x["path"] == "workflows/My flow.json" and x["size"] == len(wf) for x in v2)

    # rename (no full_info -> path string), then delete -> 204
    r = await client.post("/api/userdata/workflows%2FMy%20flow.json/move/workflows%2FRenamed.json?overwrite=false")
    assert r.status == 200 and await r.json() == "workflows/Renamed.json"
    assert (await client.get(url)).status == 404
    r = await client.post("/api/userdata/workflows%2Fsub%2Fdeep.json/move/workflows%2FRenamed.json?overwrite=false")
    assert r.status == 409
    r = await client.post("/api/userdata/workflows%2Fsub%2Fdeep.json/move/workflows%2FRenamed.json?full_info=true")
    assert r.status == 200 and (await r.json())["path"] == "workflows/Renamed.json"
    r = await client.delete("/api/userdata/workflows%2FRenamed.json")
    assert r.status == 204
    assert (await client.delete("/api/userdata/workflows%2FRenamed.json")).status == 404
    assert (await client.post("/api/userdata/nope.json/move/x.json")).status == 404


async def test_userdata_errors(client):
    assert (await client.get("/api/userdata")).status == 400
    assert (await client.get("/api/userdata?dir=nothing")).status == 404
    assert (await client.get("/api/userdata/missing.json")).status == 404
    assert (await client.get("/api/v2/userdata?path=missing")).status == 404
    await client.post("/api/userdata/dir%2Ffile.txt", data=b"x")
    assert (await client.post("/api/userdata/dir", data=b"x")).status == 400
    assert (await client.delete("/api/userdata/dir")).status == 400
    assert (await client.get("/api/v2/userdata?path=dir%2Ffile.txt")).status == 400
    for bad in ("..%2F..%2Fusers.json", "%2E%2E%2Fx", "%252E%252E%252Fx", "a%00b"):
        r = await client.get(f"/api/userdata/{bad}")
        assert r.status in (400, 403), bad
        r = await client.post(f"/api/userdata/{bad}", data=b"evil")
        assert r.status in (400, 403), bad


# ============================================================================ uploads


async def test_upload_dedupe_rename_overwrite_subfolder(client, workspace):
    a, b = png_bytes(color=(1, 2, 3, 255)), png_bytes(color=(9, 9, 9, 255))
    r = await client.post("/api/upload/image", data=upload_form(a, "photo.png"))
    assert r.status == 200 and await r.json() == {"name": "photo.png", "subfolder": "", "type": "input"}
    # same content again: the existing file is reused, nothing new is written
    r = await client.post("/api/upload/image", data=upload_form(a, "photo.png"))
    assert await r.json() == {"name": "photo.png", "subfolder": "", "type": "input"}
    # different content, same name: renamed
    r = await client.post("/api/upload/image", data=upload_form(b, "photo.png"))
    assert (await r.json())["name"] == "photo (1).png"
    r = await client.post("/api/upload/image", data=upload_form(png_bytes(color=(5, 5, 5, 255)), "photo.png"))
    assert (await r.json())["name"] == "photo (2).png"
    assert sorted(os.listdir(workspace / "input")) == ["photo (1).png", "photo (2).png", "photo.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(workspace / "input" / "photo.png").st_mode & 0o777 == 0o666 & ~umask
    # overwrite
    r = await client.post("/api/upload/image", data=upload_form(b, "photo.png", overwrite="true"))
    assert (await r.json())["name"] == "photo.png"
    assert (workspace / "input" / "photo.png").read_bytes() == b
    # subfolder + type
    r = await client.post("/api/upload/image", data=upload_form(a, "m.png", subfolder="clipspace/x", type="temp"))
    assert await r.json() == {"name": "m.png", "subfolder": "clipspace/x", "type": "temp"}
    assert (workspace / "temp" / "clipspace" / "x" / "m.png").read_bytes() == a
    # the client file name is never trusted: only its last segment is used
    # (backslashes are doubled because the header's quoted-string unescapes them)
    for evil in ("../../evil.png", "..\\\\..\\\\evil.png", "/etc/evil.png", "C:\\\\x\\\\evil.png"):
        body, headers = raw_multipart(a, evil, overwrite="1")
        r = await client.post("/api/upload/image", data=body, headers=headers)
        assert r.status == 200 and (await r.json())["name"] == "evil.png"
    assert (workspace / "input" / "evil.png").exists()
    assert not (workspace.parent / "evil.png").exists()


async def test_upload_errors(make_client):
    client = await make_client(max_upload_size=0.01)  # 10 KiB
    r = await client.post("/api/upload/image", data=upload_form(png_bytes(), "x.png", type="models"))
    assert r.status == 400
    form = FormData()
    form.add_field("other", "x")
    assert (await client.post("/api/upload/image", data=form)).status == 400
    assert (await client.post("/api/upload/image", json={"image": "x"})).status == 400
    for bad in ("..", ".", "", "a\x00b.png", "x/.."):
        body, headers = raw_multipart(png_bytes(), bad)
        r = await client.post("/api/upload/image", data=body, headers=headers)
        assert r.status == 400, bad
    r = await client.post("/api/upload/image", data=upload_form(png_bytes(), "x.png", subfolder="../../out"))
    assert r.status == 403
    r = await client.post("/api/upload/image", data=upload_form(os.urandom(64 * 1024), "big.png"))
    assert r.status == 413


async def test_upload_mask_merges_alpha(client, workspace):
    Image.new("RGB", (4, 4), (10, 20, 30)).save(workspace / "input" / "orig.png")
    mask = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    mask.putpixel((0, 0), (0, 0, 0, 255))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    form = upload_form(buf.getvalue(), "orig-mask.png", type="input", subfolder="clipspace",
                       original_ref=json.dumps({"filename": "orig.png", "subfolder": "", "type": "input"}))
    r = await client.post("/api/upload/mask", data=form)
    assert r.status == 200
    assert await r.json() == {"name": "orig-mask.png", "subfolder": "clipspace", "type": "input"}
    with Image.open(workspace / "input" / "clipspace" / "orig-mask.png") as img:
        assert img.mode == "RGBA"
        assert img.getpixel((0, 0)) == (10, 20, 30, 255) and img.getpixel((1, 1)) == (10, 20, 30, 0)
    form = upload_form(buf.getvalue(), "m.png", original_ref=json.dumps({"filename": "../x.png", "type": "input"}))
    assert (await client.post("/api/upload/mask", data=form)).status == 403
    form = upload_form(buf.getvalue(), "m.png", original_ref="{bad")
    assert (await client.post("/api/upload/mask", data=form)).status == 400
    form = upload_form(buf.getvalue(), "m.png", original_ref=json.dumps({"filename": "none.png", "type": "input"}))
    assert (await client.post("/api/upload/mask", data=form)).status == 404


# ============================================================================ /view


async def test_view_types_annotations_and_headers(client, workspace):
    data = png_bytes()
    (workspace / "output" / "sub").mkdir()
    (workspace / "output" / "sub" / "o.png").write_bytes(data)
    (workspace / "input" / "i.png").write_bytes(data)
    r = await client.get("/api/view?filename=o.png&subfolder=sub&type=output&rand=0.5&display_name=x")
    assert r.status == 200 and r.content_type == "image/png" and await r.read() == data
    assert "o.png" in r.headers["Content-Disposition"]
    r = await client.get("/view?filename=i.png&type=input")
    assert r.status == 200 and await r.read() == data
    # the " [input]" suffix overrides type
    r = await client.get("/api/view", params={"filename": "i.png [input]", "type": "output"})
    assert r.status == 200 and await r.read() == data
    assert (await client.get("/api/view?filename=i.png&type=bogus")).status == 400
    assert (await client.get("/api/view")).status == 400
    assert (await client.get("/api/view?filename=nope.png")).status == 404
    assert (await client.get("/api/view?filename=o.png&subfolder=../input")).status == 403
    # active content is never served with its own type
    (workspace / "output" / "page.html").write_text("<script>alert(1)</script>")
    (workspace / "output" / "x.js").write_text("alert(1)")
    (workspace / "output" / "x.svg").write_text("<svg onload='alert(1)'/>")
    for name in ("page.html", "x.js", "x.svg"):
        r = await client.get(f"/api/view?filename={name}")
        assert r.status == 200 and r.content_type == "application/octet-stream", name
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_view_channel_and_preview(client, workspace):
    img = Image.new("RGBA", (10, 8), (200, 100, 50, 77))
    img.save(workspace / "output" / "c.png")
    Image.new("RGB", (10, 8), (1, 2, 3)).save(workspace / "output" / "rgb.png")

    r = await client.get("/api/view?filename=c.png&channel=rgb")
    with Image.open(io.BytesIO(await r.read())) as out:
        assert r.content_type == "image/png" and out.mode == "RGB" and out.getpixel((0, 0)) == (200, 100, 50)
    r = await client.get("/api/view?filename=c.png&channel=a")
    with Image.open(io.BytesIO(await r.read())) as out:
        assert out.mode == "RGBA" and out.getpixel((3, 3))[3] == 77
    r = await client.get("/api/view?filename=rgb.png&channel=a")
    with Image.open(io.BytesIO(await r.read())) as out:
        assert out.getpixel((0, 0))[3] == 255  # no alpha -> opaque mask
    r = await client.get("/api/view?filename=c.png&preview=webp;50")
    assert r.content_type == "image/webp"
    with Image.open(io.BytesIO(await r.read())) as out:
        assert out.format == "WEBP" and out.size == (10, 8)
    r = await client.get("/api/view?filename=c.png&preview=jpeg;80")
    assert r.content_type == "image/jpeg"
    with Image.open(io.BytesIO(await r.read())) as out:
        assert out.format == "JPEG"
    r = await client.get("/api/view?filename=c.png&preview=gif;80")
    assert r.content_type == "image/webp"
    # preview of something that is not an image: the raw file
    (workspace / "output" / "notes.txt").write_text("hello")
    r = await client.get("/api/view?filename=notes.txt&preview=webp;90")
    assert r.status == 200 and await r.text() == "hello"
    assert (await client.get("/api/view?filename=notes.txt&channel=a")).status == 400


# ============================================================================ models / internal / logs


def write_safetensors(path, metadata: dict):
    header = json.dumps({"__metadata__": metadata}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


async def test_model_library_routes(client, workspace):
    ckpt = workspace / "models" / "checkpoints"
    (ckpt / "sd").mkdir(parents=True, exist_ok=True)
    cover = io.BytesIO()
    Image.new("RGB", (3, 3), (0, 255, 0)).save(cover, format="PNG")
    import base64

    write_safetensors(ckpt / "sd" / "m.safetensors",
                      {"modelspec.title": "M", "ssmd_cover_images": json.dumps([base64.b64encode(cover.getvalue()).decode()])})
    write_safetensors(ckpt / "plain.safetensors", {"a": "b"})
    Image.new("RGB", (5, 5), (0, 0, 255)).save(ckpt / "plain.preview.png")
    (ckpt / "readme.txt").write_text("not a model")

    folders = await (await client.get("/api/experiment/models")).json()
    names = [f["name"] for f in folders]
    assert "checkpoints" in names and "configs" not in names and "custom_nodes" not in names
    assert all(isinstance(f["folders"], list) for f in folders)
    r = await client.get("/api/experiment/models/checkpoints")
    files = await r.json()
    assert sorted(f["name"] for f in files) == ["plain.safetensors", "sd/m.safetensors"]
    assert all(f["pathIndex"] == 0 and f["size"] > 0 and "modified" in f and "created" in f for f in files)
    assert (await client.get("/api/experiment/models/nope")).status == 404
    assert (await client.get("/api/experiment/models/configs")).status == 404

    r = await client.get("/api/experiment/models/preview/checkpoints/0/sd/m.safetensors")
    assert r.status == 200 and r.content_type == "image/webp"
    with Image.open(io.BytesIO(await r.read())) as img:
        r_, g_, b_ = img.convert("RGB").getpixel((1, 1))
        assert r_ < 30 and g_ > 220 and b_ < 30
    r = await client.get("/api/experiment/models/preview/checkpoints/0/plain.safetensors")
    with Image.open(io.BytesIO(await r.read())) as img:
        assert img.size == (5, 5)
    assert (await client.get("/api/experiment/models/preview/checkpoints/3/plain.safetensors")).status == 404
    assert (await client.get("/api/experiment/models/preview/checkpoints/x/plain.safetensors")).status == 400
    assert (await client.get("/api/experiment/models/preview/checkpoints/0/readme.txt")).status == 404

    r = await client.get("/api/view_metadata/checkpoints?filename=sd%2Fm.safetensors")
    assert (await r.json())["modelspec.title"] == "M"
    assert (await client.get("/api/view_metadata/checkpoints?filename=readme.txt")).status == 404
    assert (await client.get("/api/view_metadata/nope?filename=a.safetensors")).status == 404
    assert (await client.get("/api/view_metadata/checkpoints?filename=missing.safetensors")).status == 404


async def test_internal_routes(client, workspace):
    (workspace / "input" / "old.png").write_bytes(b"1")
    (workspace / "input" / "new.png").write_bytes(b"2")
    (workspace / "input" / ".hidden").write_bytes(b"3")
    (workspace / "input" / "dir").mkdir()
    os.utime(workspace / "input" / "old.png", (1_000_000, 1_000_000))
    r = await client.get("/internal/files/input")
    assert await r.json() == ["new.png", "old.png"]
    assert (await client.get("/internal/files/models")).status == 400
    assert (await client.get("/api/internal/files/input")).status == 404  # never under /api
    r = await client.get("/internal/folder_paths")
    fp = await r.json()
    assert fp["checkpoints"] == [str(workspace / "models" / "checkpoints")]


async def test_logs_routes(client):
    import logging

    logging.getLogger("comfyui.test").warning("hello from the log test")
    text = await (await client.get("/internal/logs")).json()
    assert isinstance(text, str) and "hello from the log test" in text
    raw = await (await client.get("/internal/logs/raw")).json()
    assert any("hello from the log test" in e["m"] for e in raw["entries"])
    assert all(set(e) == {"t", "m"} for e in raw["entries"])
    assert set(raw["size"]) == {"cols", "rows"}
    r = await client.patch("/internal/logs/subscribe", json={"clientId": "abc", "enabled": True})
    assert r.status == 200
    assert client.app["ctx"].logs.subscribers == {"abc"}
    r = await client.patch("/internal/logs/subscribe", json={"clientId": "abc", "enabled": False})
    assert r.status == 200 and client.app["ctx"].logs.subscribers == set()
    assert (await client.patch("/internal/logs/subscribe", json={"enabled": "yes"})).status == 400


async def test_log_subscription_streams_over_websocket(client):
    import asyncio
    import logging

    ws = await client.ws_connect("/ws")
    first = await ws.receive_json(timeout=5)
    sid = first["data"]["sid"]
    r = await client.patch("/internal/logs/subscribe", json={"clientId": sid, "enabled": True})
    assert r.status == 200
    logging.getLogger("comfyui.test").warning("streamed log line")
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        msg = await ws.receive_json(timeout=max(0.1, deadline - asyncio.get_running_loop().time()))
        if msg["type"] == "logs":
            break
    assert any("streamed log line" in e["m"] for e in msg["data"]["entries"])
    assert set(msg["data"]["size"]) == {"cols", "rows"}
    await ws.close()


async def test_upload_never_writes_through_a_symlink(client, workspace, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "target.png"
    outside.write_bytes(b"original")
    os.symlink(outside, workspace / "input" / "link.png")
    # without overwrite the name is simply taken; with overwrite it is refused
    r = await client.post("/api/upload/image", data=upload_form(png_bytes(), "link.png"))
    assert r.status == 200 and (await r.json())["name"] == "link (1).png"
    r = await client.post("/api/upload/image", data=upload_form(png_bytes(), "link.png", overwrite="true"))
    assert r.status == 403
    assert outside.read_bytes() == b"original"
