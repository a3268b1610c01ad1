"""Server benchmark: start-to-ready, idle RSS, /object_info latency, submit and end-to-end rates.

    .venv/bin/python bench/server.py [--prompts 3000] [--clients 10] [--model-files 500] [--lean] [--quiet]

Starts ``python -m comfyui`` (the real command) on a free port in a temporary
workspace, then drives it over HTTP/WebSocket like the frontend does. Trivial prompts are
PrimitiveString -> PreviewAny with a unique string each (so nothing is cached).

Goals (issue #3): start <= 2 s, idle RSS <= 300 MB, /object_info <= 10 ms (issue #20: <= 1 ms, fresh file lists),
>= 1,000 done/s with 10 clients, 0 lost. Submits: issue #20 keeps a floor of >= 1,000 durable
submits/s with 10 clients (issue #3's 2,000/s for trivial prompts is no longer a goal).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def populate_workspace(work: str, files: int) -> None:
    """Empty model and input files spread like a used install's: most in loras/ and
    checkpoints/ (some in sub-folders), a few in every other common folder."""
    share = {"models/checkpoints": 0.2, "models/loras": 0.4, "models/vae": 0.05, "models/controlnet": 0.1,
             "models/upscale_models": 0.05, "models/embeddings": 0.1, "input": 0.1}
    for folder, fraction in share.items():
        for i in range(int(files * fraction)):
            sub = f"set{i % 4}/" if folder.endswith(("loras", "checkpoints")) and i % 3 else ""
            ext = ".png" if folder == "input" else ".safetensors"
            path = os.path.join(work, folder, f"{sub}file{i:04d}{ext}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()


def prompt(text: str) -> dict:
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": text}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


# --lean: the same server with only the torch-free built-in node modules, to show what the
# server itself costs (the full built-in set no longer imports torch at start-up either).
LEAN_SERVER = """
import asyncio, sys
from comfyui.config import load_config
from comfyui.engine.engine import Engine
from comfyui.nodes.registry import NodeRegistry
from comfyui.nodes.builtin import preview, primitives, strings
from comfyui.server.app import serve
config = load_config(sys.argv[1:])
registry = NodeRegistry()
for module in (preview, primitives, strings):
    registry.register_module(module, "nodes")
engine = Engine.from_config(config, registry=registry, custom_nodes=False)
engine.start()
try:
    sys.exit(asyncio.run(serve(config, engine)))
finally:
    engine.stop()
"""


class RawHTTP:
    """A minimal keep-alive HTTP/1.1 JSON client (much cheaper per request than aiohttp's, so
    the benchmark measures the server rather than the client on a 2-core machine)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post_json(self, path: str, body: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        payload = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(payload) if payload else {})

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> float:
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                async with s.get(base + "/api/features") as r:
                    if r.status == 200:
                        return time.perf_counter()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)
    raise SystemExit("server did not become ready")


async def object_info_latency(base: str, n: int = 100) -> tuple[float, float, int]:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/api/object_info") as r:
            size = len(await r.read())
        times = []
        for _ in range(n):
            t = time.perf_counter()
            async with s.get(base + "/api/object_info") as r:
                await r.read()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times), size


async def submit_rate(base: str, total: int, clients: int) -> tuple[float, list[str]]:
    """Only submissions (no WebSocket): prompts/s accepted by POST /api/prompt."""
    per = total // clients
    ids: list[str] = []

    host, port = base.split("//", 1)[1].split(":")

    async def one(idx: int):
        http = RawHTTP(host, int(port))
        for i in range(per):
            status, body = await http.post_json("/api/prompt", {"prompt": prompt(f"s{idx}-{i}-{time.time()}"),
                                                                "client_id": f"bench-{idx}"})
            assert status == 200, body
            ids.append(body["prompt_id"])
        await http.close()

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    return len(ids) / (time.perf_counter() - t), ids


async def wait_drained(base: str, timeout: float = 120) -> None:
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            async with s.get(base + "/api/prompt") as r:
                if (await r.json())["exec_info"]["queue_remaining"] == 0:
                    return
            await asyncio.sleep(0.05)
    raise SystemExit("queue did not drain")


async def end_to_end(base: str, total: int, clients: int) -> tuple[float, int, int]:
    """10 frontend-like clients: WebSocket + submit; done when every client has seen
    ``executing: null`` for all of its prompts. Returns (done/s, finished, errors)."""
    per = total // clients
    finished_total = 0
    errors = 0

    async def one(idx: int):
        nonlocal finished_total, errors
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(base + f"/ws?clientId=e2e-{idx}")
            sid = (await ws.receive_json())["data"]["sid"]
            await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            mine: set[str] = set()
            done: set[str] = set()
            submitted = asyncio.Event()

            async def reader():
                nonlocal errors
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    m = json.loads(msg.data)
                    if m["type"] == "executing" and m["data"].get("node") is None:
                        done.add(m["data"].get("prompt_id"))
                    elif m["type"] in ("execution_error", "execution_interrupted"):
                        errors += 1
                    if submitted.is_set() and mine <= done:
                        return

            task = asyncio.create_task(reader())
            host, port = base.split("//", 1)[1].split(":")
            http = RawHTTP(host, int(port))
            for i in range(per):
                status, body = await http.post_json("/api/prompt", {"prompt": prompt(f"e{idx}-{i}-{time.time()}"),
                                                                    "client_id": sid})
                assert status == 200, body
                mine.add(body["prompt_id"])
            await http.close()
            submitted.set()
            if mine <= done:
                task.cancel()
            else:
                await asyncio.wait_for(task, 300)
            finished_total += len(mine & done)
            await ws.close()

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    return finished_total / (time.perf_counter() - t), finished_total, errors


async def main_async(args) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    work = tempfile.mkdtemp(prefix="comfyui-bench-")
    populate_workspace(work, args.model_files)
    flags = ["--port", str(port), "--dont-print-server", "--base-directory", work, "--create-directories",
             "--logging-level", "WARNING"]
    cmd = [sys.executable, "-c", LEAN_SERVER, *flags] if args.lean else [sys.executable, "-m", "comfyui", *flags]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if args.quiet else None)
    try:
        ready = await wait_ready(base, proc)
        start = ready - t0
        await asyncio.sleep(1.0)
        p = psutil.Process(proc.pid)
        rss = p.memory_info().rss / 2**20
        med, worst, size = await object_info_latency(base)
        cpu0 = p.cpu_times()
        rate, ids = await submit_rate(base, args.prompts, args.clients)
        await wait_drained(base)
        cpu1 = p.cpu_times()
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/api/history") as r:
                hist = await r.json()
        lost_submit = len([i for i in ids if i not in hist])
        e2e, finished, errors = await end_to_end(base, args.prompts, args.clients)
        cpu2 = p.cpu_times()
        cpu_submit = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / max(len(ids), 1) * 1000
        cpu_e2e = (cpu2.user + cpu2.system - cpu1.user - cpu1.system) / max(finished, 1) * 1000
        lost_e2e = args.prompts // args.clients * args.clients - finished
        print(f"server                {'lean (torch-free nodes only)' if args.lean else 'comfyui (all built-in nodes)'}")
        print(f"start-to-ready        {start:8.2f} s      (goal <= 2 s)")
        print(f"idle RSS              {rss:8.1f} MB     (goal <= 300 MB)")
        print(f"/object_info          {med:8.2f} ms     median of 100, max {worst:.2f} ms, {size / 1024:.0f} KiB, "
              f"{args.model_files} model/input files (goal <= 1 ms)")
        print(f"submit rate           {rate:8.0f} /s     {len(ids)} prompts, {args.clients} clients (floor >= 1000/s)")
        print(f"end-to-end rate       {e2e:8.0f} /s     {finished} prompts, {args.clients} WS clients (goal >= 1000/s)")
        print(f"server CPU per prompt {cpu_submit:8.3f} ms     submit phase (incl. execution), "
              f"{cpu_e2e:.3f} ms with 10 WS clients")
        print(f"lost                  {lost_submit + lost_e2e:8d}        errors {errors}")
        print(f"load average          {os.getloadavg()[0]:8.2f}        (other processes share this machine)")
        print(f"cpu count             {os.cpu_count():8d}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--model-files", type=int, default=500,
                    help="empty model and input files in the workspace, listed by /object_info")
    ap.add_argument("--quiet", action="store_true", help="hide the server's stderr")
    ap.add_argument("--lean", action="store_true",
                    help="serve only the torch-free built-in nodes (the server's own cost)")
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
