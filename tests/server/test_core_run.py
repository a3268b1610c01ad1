"""run_server as the ``comfyui`` command runs it: a real process with TLS, the printed URL,
custom nodes' routes and WebSocket events, and a clean exit on SIGTERM."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import aiohttp
import pytest

PACK = '''
from aiohttp import web
from server import PromptServer


@PromptServer.instance.routes.get("/runtest_pack/ping")
async def ping(request):
    return web.json_response({"pong": True})


class RunTestNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def run(self, text):
        PromptServer.instance.send_sync("runtest.event", {"text": text})
        return {"ui": {"text": [text]}}


NODE_CLASS_MAPPINGS = {"RunTestNode": RunTestNode}
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_comfyui_process_tls_custom_nodes_and_sigterm(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    pack = tmp_path / "custom_nodes" / "runtest_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    port = _free_port()
    cmd = [sys.executable, "-m", "comfyui", "--port", str(port), "--base-directory", str(tmp_path),
           "--create-directories", "--tls-keyfile", str(key), "--tls-certfile", str(cert)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "To see the GUI go to:" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "timeout"
            line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip().endswith(f"https://127.0.0.1:{port}")
        sslctx = ssl.create_default_context()
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
        base = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sslctx)) as s:
            async with s.get(base + "/api/features") as r:
                assert r.status == 200
            for path in ("/runtest_pack/ping", "/api/runtest_pack/ping"):
                async with s.get(base + path) as r:
                    assert r.status == 200 and await r.json() == {"pong": True}
            async with s.get(base + "/api/object_info/RunTestNode") as r:
                info = await r.json()
                assert info["RunTestNode"]["python_module"] == "custom_nodes.runtest_pack"
            ws = await s.ws_connect(f"wss://127.0.0.1:{port}/ws?clientId=runtest")
            assert (await ws.receive_json(timeout=10))["data"]["sid"] == "runtest"
            body = {"prompt": {"1": {"class_type": "RunTestNode", "inputs": {"text": "via tls"}}}, "client_id": "runtest"}
            async with s.post(base + "/api/prompt", json=body) as r:
                assert r.status == 200, await r.text()
                pid = (await r.json())["prompt_id"]
            seen = []
            while True:
                m = await ws.receive_json(timeout=20)
                seen.append(m["type"])
                if m["type"] == "executing" and m["data"]["node"] is None and m["data"].get("prompt_id") == pid:
                    break
            assert "runtest.event" in seen and "executed" in seen
            await ws.close()
            async with s.get(base + "/api/system_stats") as r:
                argv = (await r.json())["system"]["argv"]
                assert "--tls-keyfile" in argv
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_dont_print_server_and_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "comfyui", "--port", str(port), "--base-directory", str(tmp_path),
               "--dont-print-server", "--disable-all-custom-nodes"]
        out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode != 0
    assert "To see the GUI" not in out.stdout
    assert "cannot listen" in out.stderr
