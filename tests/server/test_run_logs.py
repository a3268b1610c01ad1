"""The server's terminal and the frontend's Logs panel, on a real ``comfyui`` process: a line
when a prompt is queued, ``Prompt executed in N seconds``, a validation failure with its node
and input, a failing node's full traceback; /internal/logs holds them and a subscribed
WebSocket client receives them as ``logs`` messages. Start-up names the config file and the
flags that change nothing, creates the workspace folders and prints no migration chatter."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import aiohttp
import pytest

PACK = textwrap.dedent('''
    def _deep(text):
        raise ValueError("kaboom " + text)

    class LogBoom:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"default": "x"})}}
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, text):
            return _deep(text)

    NODE_CLASS_MAPPINGS = {"LogBoom": LogBoom}
''')

GOOD = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "hi"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
INVALID = {"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
BOOM = {"1": {"class_type": "LogBoom", "inputs": {"text": "now"}}}


def _env():
    return {**{k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_")}, "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    base = tmp_path / "ws"
    (base / "custom_nodes" / "logboom").mkdir(parents=True)
    (base / "custom_nodes" / "logboom" / "__init__.py").write_text(PACK)
    (tmp_path / "settings.yaml").write_text("preview-size: 256\n")
    port = _free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "comfyui", "--port", str(port), "--base-directory", str(base),
                                 "-c", str(tmp_path / "settings.yaml"), "--use-sage-attention"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/api/system_stats", timeout=5):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server not ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
    yield url, base, log_path, tmp_path
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for(log_path, text, timeout=30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log_path.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.05)
    pytest.fail(f"{text!r} not in the server's output:\n{log_path.read_text()[-3000:]}")


def test_server_logs_runs_and_the_logs_panel_streams_them(server):
    url, base, log_path, tmp_path = server

    async def scenario():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url + "/ws?clientId=logpanel")
            r = await session.patch(url + "/internal/logs/subscribe", json={"clientId": "logpanel", "enabled": True})
            assert r.status == 200
            r = await session.post(url + "/prompt", json={"prompt": INVALID})
            assert r.status == 400
            r = await session.post(url + "/prompt", json={"prompt": GOOD})
            good_id = (await r.json())["prompt_id"]
            streamed = ""
            deadline = time.monotonic() + 30
            while "Prompt executed in" not in streamed and time.monotonic() < deadline:
                msg = await ws.receive(timeout=30)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data["type"] == "logs":
                        streamed += "".join(e["m"] for e in data["data"]["entries"])
            r = await session.post(url + "/prompt", json={"prompt": BOOM})
            boom_id = (await r.json())["prompt_id"]
            await ws.close()
            return good_id, boom_id, streamed

    good_id, boom_id, streamed = asyncio.run(scenario())

    async def remote():  # the remote client's refusal names the node and input too
        from comfyui.client.remote import RemoteComfy, RemotePromptError

        async with RemoteComfy(url) as client:
            with pytest.raises(RemotePromptError) as info:
                await client.queue_prompt(INVALID)
        return str(info.value)

    remote_text = asyncio.run(remote())
    assert "* EmptyImage 1:" in remote_text and "Value 0 smaller than min of 1: width" in remote_text
    # the Logs panel received the run's lines as they were logged
    assert f"got prompt {good_id}" in streamed and "Prompt executed in" in streamed
    assert "* EmptyImage 1:" in streamed and "Value 0 smaller than min of 1: width" in streamed

    out = _wait_for(log_path, "kaboom now\n")
    out = _wait_for(log_path, f"got prompt {boom_id}")
    out = _wait_for(log_path, "ValueError: kaboom now")
    # validation failure: the output, the node (class and id) and the input, as ComfyUI prints them
    assert "Failed to validate prompt for output 2:" in out
    assert "* EmptyImage 1:" in out and "  - Value 0 smaller than min of 1: width" in out
    assert "invalid prompt: Prompt outputs failed validation" in out
    # a queued prompt and its time
    assert f"got prompt {good_id}" in out
    assert out.index(f"got prompt {good_id}") < out.index("Prompt executed in")
    assert any(line.split("Prompt executed in ")[-1].endswith(" seconds")
               for line in out.splitlines() if "Prompt executed in" in line)
    # a failing node: its message and full traceback down to the raising function
    assert "!!! Exception during processing !!! kaboom now" in out
    tb = out[out.index("Traceback (most recent call last):"):]
    assert "in _deep" in tb and "in run" in tb and 'raise ValueError("kaboom " + text)' in tb
    # /internal/logs (what the panel loads when opened) holds the same lines
    with urllib.request.urlopen(url + "/internal/logs", timeout=10) as r:
        panel = json.loads(r.read())
    for line in (f"got prompt {boom_id}", "* EmptyImage 1:", "!!! Exception during processing !!! kaboom now",
                 "in _deep", "Prompt executed in",
                 # ... and the start-up, from before the server existed
                 "config file:", "--use-sage-attention has no effect here", "server ready in"):
        assert line in panel
    # start-up: the config file in use is named, an inert flag says so, no alembic chatter,
    # the workspace folders exist
    assert f"config file: {tmp_path / 'settings.yaml'}" in out
    assert "--use-sage-attention has no effect here" in out
    assert "alembic" not in out and "Running upgrade" not in out
    for sub in ("models/checkpoints", "models/loras", "models/vae", "models/diffusion_models", "models/text_encoders",
                "input", "output", "user"):
        assert (base / sub).is_dir(), sub
