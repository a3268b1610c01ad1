"""Closed by default: Host (DNS rebinding), Origin / Sec-Fetch-Site, JSON content type for browsers,
CORS mode, API key (header, ?token=, cookie, WebSocket), upload size."""
from __future__ import annotations

import json

import aiohttp
import pytest

from server_helpers import text_prompt

JSON = {"Content-Type": "application/json"}


def _host(srv) -> str:
    return f"127.0.0.1:{srv.client.port}"


async def test_dns_rebinding_host_header_refused(server):
    for host in ("evil.example.com", "evil.example.com:8188", "attacker.localhost.evil.net", "", "a:b:c:d"):
        resp = await server.client.get("/api/system_stats", headers={"Host": host})
        assert resp.status == 403, host
    for host in ("localhost", f"localhost:{server.client.port}", "127.0.0.1", "[::1]:8188", "127.0.0.5"):
        resp = await server.client.get("/api/features", headers={"Host": host})
        assert resp.status == 200, host


async def test_allowed_hosts_and_listen_address(make_server):
    srv = await make_server(listen="0.0.0.0")
    # listening on all interfaces: IP literals are fine (rebinding needs a DNS name)
    assert (await srv.client.get("/api/features", headers={"Host": "192.168.1.20:8188"})).status == 200
    assert (await srv.client.get("/api/features", headers={"Host": "rebind.attacker.com"})).status == 403
    import os
    os.environ["COMFYUI_ALLOWED_HOSTS"] = "comfy.lan"
    try:
        srv2 = await make_server()
    finally:
        del os.environ["COMFYUI_ALLOWED_HOSTS"]
    assert (await srv2.client.get("/api/features", headers={"Host": "comfy.lan:8188"})).status == 200
    assert (await srv2.client.get("/api/features", headers={"Host": "other.lan"})).status == 403


async def test_cross_site_state_changes_refused(server):
    body = json.dumps({"prompt": text_prompt()})
    bad = [
        {"Origin": "http://evil.example.com"},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{server.client.port + 1}"},
        {"Origin": "http://localhost.evil.com"},
        {"Sec-Fetch-Site": "cross-site"},
    ]
    for headers in bad:
        for method, path, data in (("POST", "/api/prompt", body), ("POST", "/api/interrupt", None),
                                   ("POST", "/api/queue", '{"clear":true}'),
                                   ("POST", "/api/jobs/x/cancel", None)):
            resp = await server.client.request(method, path, data=data, headers={**JSON, **headers})
            assert resp.status == 403, (headers, path)
    assert server.engine.queue_remaining() == 0
    # cross-site WebSocket hijacking is refused too
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await server.client.ws_connect("/ws", headers={"Origin": "http://evil.example.com"})
    assert exc.value.status == 403
    # same origin (what the bundled frontend sends) works, with or without a port in Origin
    for origin in (f"http://127.0.0.1:{server.client.port}",):
        resp = await server.client.post("/api/prompt", data=body,
                                        headers={**JSON, "Origin": origin, "Sec-Fetch-Site": "same-origin"})
        assert resp.status == 200
    ws = await server.client.ws_connect("/ws", headers={"Origin": f"http://127.0.0.1:{server.client.port}"})
    await ws.close()
    # reads are not state changing: a cross-origin GET is answered (the browser's CORS hides it)
    resp = await server.client.get("/api/features", headers={"Origin": "http://evil.example.com"})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_scripts_post_json_with_any_content_type(server):
    # ComfyUI's own clients (script_examples, its test client) send JSON through urllib,
    # which labels the body application/x-www-form-urlencoded: that must be accepted
    import asyncio
    import urllib.request

    def urllib_post() -> dict:
        data = json.dumps({"prompt": text_prompt("from urllib")}).encode()
        req = urllib.request.Request(f"http://{_host(server)}/prompt", data=data)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    answer = await asyncio.to_thread(urllib_post)
    entry = await server.wait_history(answer["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    for ct in ("text/plain", "application/x-www-form-urlencoded", None):
        resp = await server.client.post("/api/queue", data='{"clear": true}',
                                        headers={"Content-Type": ct} if ct else {})
        assert resp.status == 200, ct


async def test_browser_form_post_needs_json_content_type(server):
    # a page's <form enctype="text/plain"> can smuggle JSON; browsers mark such requests
    same_site = {"Origin": f"http://{_host(server)}", "Sec-Fetch-Site": "same-origin"}
    for marker in (same_site, {"Referer": f"http://{_host(server)}/"}, {"Sec-Fetch-Mode": "navigate"}):
        resp = await server.client.post("/api/prompt", data=json.dumps({"prompt": text_prompt()}),
                                        headers={"Content-Type": "text/plain", **marker})
        assert resp.status == 415, marker
    # from another site it is refused before the body is read
    resp = await server.client.post("/api/prompt", data=json.dumps({"prompt": text_prompt()}),
                                    headers={"Content-Type": "text/plain", "Origin": "http://evil.example.com"})
    assert resp.status == 403
    assert server.engine.queue_remaining() == 0


async def test_cors_mode(make_server):
    srv = await make_server(enable_cors_header="http://my.app")
    resp = await srv.client.options("/api/prompt", headers={"Origin": "http://my.app",
                                                            "Access-Control-Request-Method": "POST"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "http://my.app"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    resp = await srv.client.post("/api/prompt", data=json.dumps({"prompt": text_prompt()}),
                                 headers={**JSON, "Origin": "http://my.app"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "http://my.app"


async def test_api_key_required_everywhere(make_server):
    srv = await make_server(api_key="s3cret-key")
    for path in ("/api/features", "/api/object_info", "/api/jobs", "/openapi.json", "/api/history"):
        resp = await srv.client.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await srv.client.get("/api/features", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    auth = {"Authorization": "Bearer s3cret-key"}
    resp = await srv.client.get("/api/features", headers=auth)
    assert resp.status == 200
    resp = await srv.client.post("/api/prompt", data=json.dumps({"prompt": text_prompt()}), headers={**JSON, **auth})
    assert resp.status == 200
    resp = await srv.client.post("/api/prompt", data=json.dumps({"prompt": text_prompt()}),
                                 headers={**JSON, "Authorization": "Bearer nope"})
    assert resp.status == 401
    # ?token= is only for GETs (page loads, <img>, WebSocket)
    resp = await srv.client.post("/api/interrupt?token=s3cret-key")
    assert resp.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await srv.client.ws_connect("/ws")
    assert exc.value.status == 401
    ws = await srv.client.ws_connect("/ws?token=s3cret-key")
    assert (await ws.receive_json(timeout=5))["type"] == "status"
    await ws.close()
    ws = await srv.client.ws_connect("/ws", headers=auth)
    await ws.close()
    # a page load with ?token= sets an HttpOnly SameSite=Strict cookie that later requests use
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        base = f"http://127.0.0.1:{srv.client.port}"
        resp = await session.get(base + "/api/features?token=s3cret-key")
        assert resp.status == 200
        cookie = resp.headers.get("Set-Cookie", "")
        assert "comfyui_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        resp = await session.get(base + "/api/system_stats")
        assert resp.status == 200
        stats = await resp.json()
        assert "s3cret-key" not in json.dumps(stats)


async def test_api_key_from_environment(make_server, monkeypatch):
    monkeypatch.setenv("COMFYUI_API_KEY", "env-key")
    srv = await make_server()
    assert (await srv.client.get("/api/features")).status == 401
    assert (await srv.client.get("/api/features", headers={"Authorization": "Bearer env-key"})).status == 200


async def test_body_size_limit_413(make_server):
    srv = await make_server(max_upload_size=0.01)  # ~10 KB
    big = json.dumps({"prompt": text_prompt("x" * 20000)})
    resp = await srv.client.post("/api/prompt", data=big, headers=JSON)
    assert resp.status == 413
    assert "error" in await resp.json()
    features = await (await srv.client.get("/api/features")).json()
    assert features["max_upload_size"] == int(0.01 * 1024 * 1024)


async def test_never_500_on_junk(server):
    junk = [b"", b"null", b"[]", b"{}", b'{"prompt": null}', b'{"delete": [null]}', b"\x00\x01",
            b'{"job_ids": [{}]}', b'{"clear": "yes", "delete": {}}', b"1e999999"]
    for path in ("/api/prompt", "/api/queue", "/api/history", "/api/interrupt", "/api/free",
                 "/api/jobs/cancel", "/api/jobs/x/cancel"):
        for body in junk:
            resp = await server.client.post(path, data=body, headers=JSON)
            assert resp.status < 500, (path, body, resp.status)
    for path in ("/api/history?max_items=-5", "/api/history?offset=zz", "/api/jobs?limit=1e3",
                 "/api/object_info/%00", "/api/models/..%2F..", "/api/history/%FF", "/api/jobs/%2e%2e"):
        resp = await server.client.get(path)
        assert resp.status < 500, path
