"""RemoteComfy against the real server (HTTP + WebSocket), and ``comfyui`` starting it."""
import asyncio
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from PIL import Image


FIXTURES = pathlib.Path(__file__).parent.parent / "workflows" / "fixtures"

serve = pytest.importorskip("comfyui.server.app", reason="the server (comfyui.server.app) is not there yet").serve


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(ws):
    """The real server on a thread of its own, over an engine with a test custom node."""
    from comfyui.client.embedded import build_engine
    from comfyui.config import load_config

    port = free_port()
    config = load_config(["--base-directory", str(ws), "--port", str(port), "--dont-print-server"],
                         env={}, discover_config_file=False)
    config.apply_paths()
    engine = build_engine(config)
    engine.start()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def main():
        state["stop"] = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.ensure_future(serve(config, engine, ready=started, stop=state["stop"]))
        await asyncio.wait([task, asyncio.ensure_future(started.wait())], return_when=asyncio.FIRST_COMPLETED)
        ready.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(10)
    engine.stop()


async def test_remote_queue_prompt_api_and_ui(server, image_prompt):
    from comfyui.client.remote import RemoteComfy, RemotePromptError

    async with RemoteComfy(server) as client:
        outputs = await client.queue_prompt(image_prompt)
        image = outputs["2"]["images"][0]
        assert image["subfolder"] == "emb" and image["url"].startswith(server + "/api/view?")
        data = await client.get_file(image)
        assert data.startswith(b"\x89PNG")

        workflow = json.loads((FIXTURES / "builtin_ui_0.4.json").read_text())
        outputs = await client.queue_prompt(workflow)  # converted with the server's /api/object_info
        assert outputs["7"] == {"text": ["Hello, world"]}

        with pytest.raises(RemotePromptError) as rejected:
            await client.queue_prompt({"1": {"class_type": "SlowSteps", "inputs": {"steps": 0, "delay": 0.0}}})
        assert rejected.value.status == 400 and "1" in rejected.value.node_errors


async def test_remote_progress_previews_and_failures(server):
    from comfyui.client.common import ExecutionError
    from comfyui.client.remote import RemoteComfy

    async with RemoteComfy(server) as client:
        events = [ev async for ev in client.queue_with_progress(
            {"1": {"class_type": "SlowSteps", "inputs": {"steps": 3, "delay": 0.0}}})]
        names = [ev.event for ev in events]
        assert names[-1] == "result" and "execution_start" in names
        assert [(e.data["value"], e.data["max"]) for e in events if e.event == "progress"] == [(1, 3), (2, 3), (3, 3)]
        previews = [e.data for e in events if e.event == "preview_image"]
        assert previews and isinstance(previews[0]["image"], Image.Image)
        assert events[-1].data["outputs"] == {"1": {"text": ["did 3"]}}

        with pytest.raises(ExecutionError) as failed:
            await client.queue_prompt({"1": {"class_type": "Explode", "inputs": {"message": "far away"}}})
        assert failed.value.data["node_type"] == "Explode" and "far away" in str(failed.value)


def test_comfyui_command_without_workflows_serves(tmp_path, image_prompt):
    """``comfyui`` with no --workflows runs the server; SIGINT stops it cleanly."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_")}
    proc = subprocess.Popen([sys.executable, "-m", "comfyui", "--base-directory", str(tmp_path), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 40
        info = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/object_info", timeout=2) as resp:
                    info = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.2)
        assert info is not None, proc.stderr.read1().decode(errors="replace")[-3000:] if proc.poll() is not None else "no answer"
        assert "SaveImage" in info and "PreviewAny" in info

        from comfyui.client.remote import RemoteComfy

        async def run():
            async with RemoteComfy(f"http://127.0.0.1:{port}") as client:
                return await client.queue_prompt(image_prompt)

        outputs = asyncio.run(run())
        assert (tmp_path / "output" / "emb" / outputs["2"]["images"][0]["filename"]).is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    assert code == 0
