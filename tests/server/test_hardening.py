"""Issue 14, server side: credentials never shown, the Origin check with effective ports and
framing headers, slow and oversize requests cut off, no 500 for bad input, bounded previews.
Every test runs a real server: the ``comfyui`` command (``frontend_server``) or the app on a
real socket (``make_server``)."""
from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import aiohttp
import pytest
from PIL import Image

from server_helpers import text_prompt

JSON = {"Content-Type": "application/json"}


def _ensure_postgres() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "jobs_conftest", os.path.join(os.path.dirname(__file__), "..", "jobs", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ensure_postgres()


def _admin():
    import sqlalchemy as sa

    return sa, sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                                isolation_level="AUTOCOMMIT")


@pytest.fixture
def postgres_with_password():
    """``password -> url``: a fresh database on the machine's PostgreSQL, addressed with a
    password in the URL (local connections are trusted, so any password connects)."""
    _ensure_postgres()
    sa, admin = _admin()
    name = f"comfyui_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield lambda password: f"postgresql://postgres:{password}@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _get(url: str, key: str | None = None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


# ------------------------------------------------------------------------------ 1. secrets


def test_credentials_never_shown(frontend_server, postgres_with_password, tmp_path):
    """A database password and an API key (read from a file) appear nowhere: not in
    /system_stats' argv, not in the start-up log, not in /internal/logs; a store that cannot
    be opened is reported with the password masked; --help says how to keep the key off the
    command line."""
    password, key = "hunter2-" + uuid.uuid4().hex[:8], "key-" + uuid.uuid4().hex
    url = postgres_with_password(password)
    masked = url.replace(password, "***")
    key_file = tmp_path / "api-key"
    key_file.write_text(key + "\n")
    base_url, _, log_path = frontend_server("--database-url", url, "--api-key-file", str(key_file),
                                            ready="/api/object_info?token=" + key)
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(base_url + "/api/system_stats")
    assert e.value.code == 401  # the key from the file is required
    _, stats = _get(base_url + "/api/system_stats", key)
    argv = json.loads(stats)["system"]["argv"]
    assert password not in stats and key not in stats
    assert argv[argv.index("--database-url") + 1] == masked, argv
    _, logs = _get(base_url + "/internal/logs", key)
    assert masked in logs and password not in logs and key not in logs
    log_text = log_path.read_text()
    assert masked in log_text and password not in log_text and key not in log_text

    # a job store that cannot be opened: one line naming it with the password masked, exit 1
    bad = f"postgresql://comfy:{password}@127.0.0.1:1/nothing"
    proc = subprocess.run([sys.executable, "-m", "comfyui", "--listen", "127.0.0.1", "--port", "0",
                           "--database-url", bad, "--base-directory", str(tmp_path / "ws2"),
                           "--create-directories", "--disable-all-custom-nodes"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COMFYUI_API_KEY": key})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "postgresql://comfy:***@127.0.0.1:1/nothing" in out, out[-2000:]
    assert password not in out and key not in out

    # --help tells how to keep the key off the command line
    help_text = subprocess.run([sys.executable, "-m", "comfyui", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    assert "--api-key-file" in help_text and "COMFYUI_API_KEY" in help_text and " ps" in help_text


# ------------------------------------------------------------------------------ 2. origin, framing


async def test_origin_compares_effective_port_and_ui_refuses_framing(make_server):
    srv = await make_server()
    port = srv.client.port
    body = json.dumps({"prompt": text_prompt("origin")})

    async def post(origin: str, host: str | None = None, **headers) -> int:
        h = {**JSON, "Origin": origin, **headers}
        if host is not None:
            h["Host"] = host
        return (await srv.client.post("/api/prompt", data=body, headers=h)).status

    # A page on port 80 (or 443) of the same host is another origin than this server's port.
    assert await post("http://127.0.0.1") == 403
    assert await post("https://127.0.0.1") == 403
    assert await post("http://127.0.0.1:80") == 403
    assert await post(f"http://127.0.0.1:{port}") == 200
    # Host without a port: the browser used its scheme's default port.
    assert await post("http://127.0.0.1", host="127.0.0.1") == 200
    assert await post("http://127.0.0.1:80", host="127.0.0.1") == 200
    assert await post("http://127.0.0.1:8080", host="127.0.0.1") == 403
    # A proxy that says the browser came over https: an http page is another origin.
    assert await post("http://127.0.0.1", host="127.0.0.1", **{"X-Forwarded-Proto": "https"}) == 403
    assert await post("https://127.0.0.1", host="127.0.0.1", **{"X-Forwarded-Proto": "https"}) == 200
    assert await post("http://127.0.0.1:443", host="127.0.0.1", **{"X-Forwarded-Proto": "https"}) == 403
    # WebSocket upgrades follow the same rule.
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await srv.client.ws_connect("/ws", headers={"Origin": "http://127.0.0.1"})
    assert e.value.status == 403
    ws = await srv.client.ws_connect("/ws", headers={"Origin": f"http://127.0.0.1:{port}"})
    await ws.close()

    # The UI (and every other answer) may only be framed by the server's own pages.
    for path in ("/", "/api/system_stats", "/api/view?filename=missing.png"):
        resp = await srv.client.get(path)
        assert resp.headers.get("X-Frame-Options") == "DENY", path
        assert resp.headers.get("Content-Security-Policy") == "frame-ancestors 'self'", path
    resp = await srv.client.get("/")
    if resp.status == 200:
        assert resp.content_type == "text/html"


# ------------------------------------------------------------------------------ 3. slow clients


def _open(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """True once the server closed the connection (EOF or reset); answers are drained."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_slow_and_oversize_requests_are_cut_off(frontend_server):
    url, _, _ = frontend_server("--header-timeout", "1", "--body-timeout", "1", "--max-upload-size", "1")
    port = int(url.rsplit(":", 1)[1])
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    # half-sent headers, headers then half a body, and an idle connection that sends nothing
    socks = []
    for i in range(30):
        s = _open(port)
        if i % 3 == 0:
            s.sendall(b"POST /api/prompt HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n")
        elif i % 3 == 1:
            s.sendall(b"POST /api/prompt HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
                      b"Content-Length: 5000\r\n\r\n{\"prompt\": ")
        socks.append(s)
    # and two that trickle: a header byte, or a body byte, every 0.2 s
    trickle_headers, trickle_body = _open(port), _open(port)
    trickle_headers.sendall(b"GET /api/features HTTP/1.1\r\n" + host)
    trickle_body.sendall(b"POST /api/prompt HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
                         b"Content-Length: 5000\r\n\r\n")
    socks += [trickle_headers, trickle_body]
    t0 = time.monotonic()
    open_socks = list(socks)
    while open_socks and time.monotonic() - t0 < 10:  # 1 s timeouts; slack for a loaded machine
        for s, byte in ((trickle_headers, b"X"), (trickle_body, b" ")):
            if s in open_socks:
                try:
                    s.sendall(byte)
                except OSError:
                    pass
        open_socks = [s for s in open_socks if not _closed_by_server(s)]
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    assert not open_socks, f"{len(open_socks)} of {len(socks)} slow connections still open after {elapsed:.1f} s"

    # the server still answers, and a stalled body got a 408 before the close
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /api/prompt HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{")
    answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    s.close()

    # Content-Length beyond --max-upload-size: 413 at once, nothing of the body sent
    for declared in (10 ** 12, 1024 * 1024 + 1):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        t1 = time.monotonic()
        s.sendall(b"POST /api/upload/image HTTP/1.1\r\n" + host
                  + b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: "
                  + str(declared).encode() + b"\r\n\r\n")
        answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"--max-upload-size" in answer
        assert time.monotonic() - t1 < 5  # at once, not after a body that never comes
        s.close()
    status, _ = _get(url + "/api/features")
    assert status == 200


# ------------------------------------------------------------------------------ 4. bad input


def _deep_list(n: int) -> str:
    return "[" * n + "1" + "]" * n


def _deep_dict(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


async def test_bad_input_answers_4xx_never_500(make_server, workspace):
    """A small fuzz over every registered route (path parameters filled with junk, huge
    numbers in the query, deeply nested JSON bodies), over-long file names, a nested
    ``original_ref`` in a mask upload and non-ASCII Authorization / cookie bytes, on a server
    with the durable store and an API key: nothing answers 5xx."""
    key = "fuzz-key-123"
    srv = await make_server(api_key=key, database_url=f"sqlite:///{workspace / 'jobs.db'}")
    auth = {"Authorization": f"Bearer {key}"}
    routes = sorted(set(srv.ctx.routes))
    failures = []

    async def check(method: str, path: str, **kw):
        headers = {**auth, **kw.pop("headers", {})}
        resp = await srv.client.request(method, path, headers=headers, **kw)
        if resp.status >= 500:
            failures.append((method, path[:80], resp.status, (await resp.text())[:120]))
        return resp

    huge = ["100000000000000000000", "9223372036854775808", "1e20", "-99999999999999999999", "nan"]
    prompt_ok = text_prompt("fuzz")
    deep_bodies = [_deep_list(1020), _deep_dict(1020), _deep_list(5000),
                   json.dumps({"prompt": prompt_ok})[:-1] + ', "extra_data": ' + _deep_dict(900) + "}",
                   '{"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": '
                   + _deep_list(900) + '}}, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}}',
                   '{"Comfy.Setting": ' + _deep_dict(1000) + "}"]
    for method, path in routes:
        concrete = path
        while "{" in concrete:
            start, end = concrete.index("{"), concrete.index("}")
            concrete = concrete[:start] + "x" * 300 + concrete[end + 1:]
        if method == "GET":
            for n in huge:
                await check("GET", f"{concrete}?max_items={n}&offset={n}&limit={n}")
        elif method in ("POST", "PUT", "PATCH"):
            for body in deep_bodies:
                await check(method, concrete, data=body, headers={**JSON, "Comfy-User": "default"})
    for name in ("a" * 300, "a/" * 3000 + "x", "%s.png" % ("é" * 200)):
        for extra in ("", "&preview=webp;90", "&channel=rgb"):
            await check("GET", f"/api/view?filename={name}{extra}")
        await check("GET", f"/api/view?filename=x.png&subfolder={name}")
        await check("GET", f"/api/userdata/{'b' * 300}.json")
    for ref in ('{"filename": ' + _deep_list(5000) + "}", _deep_list(900), '{"filename": "x", "a": ' + _deep_list(1000) + "}"):
        form = aiohttp.FormData()
        form.add_field("image", b"\x89PNG", filename="m.png", content_type="image/png")
        form.add_field("original_ref", ref)
        await check("POST", "/api/upload/mask", data=form)

    # non-ASCII bytes in Authorization and the token cookie, sent raw
    for raw in (b"Bearer \xc3\xa9\xc3\xa9", b"Bearer \xff\xfe", "Bearer 中文".encode(), b"\xe9"):
        for path in (b"/api/features", b"/ws"):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.client.port)
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + raw
                         + b"\r\nCookie: comfyui_token=\xc3\xa9\xff\r\nConnection: close\r\n\r\n")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            if b" 401 " not in status_line:
                failures.append(("raw auth", raw, path, status_line))
    assert not failures, "\n".join(map(str, failures[:30]))
    # the depth limit: 254 levels (what orjson encodes) are stored and read back, 255 are a 400
    settings = {**auth, **JSON, "Comfy-User": "default"}
    ok = await srv.client.post("/api/settings/Deep.Value", data=_deep_list(254), headers=settings)
    assert ok.status == 200
    assert (await (await srv.client.get("/api/settings/Deep.Value", headers=auth)).json()) == json.loads(_deep_list(254))
    refused = await srv.client.post("/api/settings/Deep.Value", data=_deep_list(255), headers=settings)
    assert refused.status == 400 and "nested deeper than 254" in (await refused.json())["error"]
    # the server is still fine
    assert (await srv.client.get("/api/features", headers=auth)).status == 200


# ------------------------------------------------------------------------------ 5. previews


async def test_preview_of_huge_dimension_png_is_refused(make_server, workspace):
    """169 megapixels in a few KiB: previews, channels and mask merges refuse it with 422
    before decoding (the process does not grow); the raw file is still served unchanged."""
    import psutil

    srv = await make_server()
    out = workspace / "output"
    big = Image.new("1", (13000, 13000), 1)  # 1 bit a pixel here; 4 bytes a pixel when decoded
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    del big
    data = buf.getvalue()
    assert len(data) < 200 * 1024
    (out / "huge.png").write_bytes(data)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(out / "small.png")

    rss0 = psutil.Process().memory_info().rss
    for query in ("preview=webp;90", "preview=jpeg;50", "channel=rgb", "channel=a", "preview=webp;90&channel=rgb"):
        resp = await srv.client.get(f"/api/view?filename=huge.png&type=output&{query}")
        body = await resp.json()
        assert resp.status == 422, (query, resp.status)
        assert "13000 x 13000" in body["error"] and "without preview" in body["error"]
    form = aiohttp.FormData()
    mask = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(mask, format="PNG")
    form.add_field("image", mask.getvalue(), filename="mask.png", content_type="image/png")
    form.add_field("original_ref", json.dumps({"filename": "huge.png", "type": "output"}))
    resp = await srv.client.post("/api/upload/mask", data=form)
    assert resp.status == 422
    assert psutil.Process().memory_info().rss - rss0 < 150 * 1024 * 1024

    raw = await srv.client.get("/api/view?filename=huge.png&type=output")
    assert raw.status == 200 and await raw.read() == data
    # ordinary previews are unchanged
    small = await srv.client.get("/api/view?filename=small.png&type=output&preview=webp;90")
    assert small.status == 200 and small.content_type == "image/webp"
    assert Image.open(io.BytesIO(await small.read())).size == (64, 48)
