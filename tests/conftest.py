"""Shared fixtures: every test runs against its own temporary workspace."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

# Known models (comfyui.known_models) download on demand: no test may reach huggingface.co, so a
# prompt naming a known file that a test did not write fails at once (connection refused); the
# download tests point HF_ENDPOINT at their own local Hub (tests/fake_hub.py).
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")

@pytest.fixture
def workspace(tmp_path):
    """A fresh ComfyUI workspace (models/, input/, output/, temp/, user/, custom_nodes/)."""
    from comfyui import paths

    paths.configure(base_directory=tmp_path, create_directories=True)
    yield tmp_path
    paths.configure(base_directory=None)


@pytest.fixture
def frontend_server(tmp_path):
    """``start(*args, ready="/api/object_info", models=None) -> (url, base, log_path)``: a
    ``comfyui`` process on a free port over a fresh workspace (``tmp_path/ws``) whose first-run
    templates dialog is marked done, so nothing covers the canvas; ``models(models_dir)`` writes
    model files before it starts. Ready once ``ready`` answers 200; stopped after the test."""
    procs = []

    def start(*args: str, ready: str = "/api/object_info", models=None):
        base = tmp_path / "ws"
        (base / "user" / "default").mkdir(parents=True)
        (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
        if models is not None:
            models(str(base / "models"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = tmp_path / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "comfyui", "--listen", "127.0.0.1", "--port", str(port), *args,
                 "--base-directory", str(base), "--create-directories", "--disable-all-custom-nodes"],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + ready, timeout=5) as r:
                    if r.status == 200:
                        return url, base, log_path
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in 30 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
