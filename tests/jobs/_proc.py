"""Real server processes for the durable-jobs tests and bench: ``python -m comfyui`` in a
subprocess with its own base directory, a tiny custom node pack and a database URL."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
from typing import Any

NODE_PACK = textwrap.dedent('''
    import time

    from comfyui.engine.progress import throw_if_interrupted


    class DurableSleep:
        """Sleeps ``seconds`` (checking for interrupts) and passes ``value`` through."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("STRING", {"default": ""}),
                                 "seconds": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 600.0})}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"
        CATEGORY = "testing"

        def run(self, value, seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                throw_if_interrupted()
                time.sleep(0.005)
            return (value,)


    NODE_CLASS_MAPPINGS = {"DurableSleep": DurableSleep}
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(base: str) -> str:
    pack = os.path.join(base, "custom_nodes", "durable_test_pack")
    os.makedirs(pack, exist_ok=True)
    with open(os.path.join(pack, "__init__.py"), "w") as f:
        f.write(NODE_PACK)
    for sub in ("input", "output", "temp", "user", "models"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    return base


def sleep_prompt(value: str, seconds: float = 0.1) -> dict:
    return {"1": {"class_type": "DurableSleep", "inputs": {"value": value, "seconds": seconds}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def trivial_prompt(value: str) -> dict:
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": value}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def image_prompt(color: int = 255, prefix: str = "v1test", size: int = 8) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                          "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


class Response:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


class Client:
    """A minimal keep-alive HTTP client (one connection; not thread-safe: one per thread)."""

    def __init__(self, port: int, timeout: float = 60):
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                raw: bytes | None = None) -> Response:
        headers = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Response:
        return self.request("DELETE", path, **kw)

    def submit(self, prompt: dict, **extra) -> str:
        r = self.post("/api/prompt", {"prompt": prompt, **extra})
        assert r.status == 200, r
        return r.json()["prompt_id"]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class ServerProcess:
    """``python -m comfyui`` on a free port. ``start()`` waits until it answers."""

    def __init__(self, base: str, database_url: str | None, *args: str, port: int | None = None,
                 in_memory: bool = False):
        self.base = make_workspace(base)
        self.database_url = database_url
        self.args = list(args)
        self.port = port or free_port()
        self.in_memory = in_memory
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(base, f"server-{self.port}.log")

    def command(self) -> list[str]:
        flags = ["--base-directory", self.base, "--port", str(self.port), "--dont-print-server",
                 "--logging-level", "WARNING"]
        if self.database_url:
            flags += ["--database-url", self.database_url]
        if self.in_memory:  # the plain in-memory queue (what the server issue benchmarked)
            return [sys.executable, "-c", _IN_MEMORY_MAIN, *flags, *self.args]
        return [sys.executable, "-m", "comfyui", *flags, *self.args]

    def start(self, timeout: float = 90) -> "ServerProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("COMFYUI_DATABASE_URL", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        client = Client(self.port, timeout=5)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/api/prompt").status == 200:
                        return self
                except OSError:
                    pass
                client.close()
                time.sleep(0.1)
        finally:
            client.close()
        self.kill()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def client(self, timeout: float = 60) -> Client:
        return Client(self.port, timeout)

    def kill(self) -> None:
        """kill -9 (the crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


# The server with the engine's plain in-memory PromptQueue (no database at all).
_IN_MEMORY_MAIN = textwrap.dedent('''
    import asyncio, sys
    from comfyui.config import load_config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import serve
    config = load_config(sys.argv[1:])
    config.database_url = None
    config.apply_paths()
    engine = Engine.from_config(config, durable=False)
    engine.start()
    raise SystemExit(asyncio.run(serve(config, engine)))
''')


def wait_until(fn, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")
