"""Durable jobs benchmark: what the job store costs in throughput.

    .venv/bin/python bench/jobs.py [--prompts 2000] [--clients 10] [--stores memory,sqlite,postgres]
                                   [--postgres-admin postgresql://postgres@127.0.0.1:5432/postgres]

It starts a real server (``python -m comfyui``) for each store, on a free port in a temporary
workspace, all side by side: ``memory`` is the engine's plain in-memory queue (what bench/server.py measured in
the server issue), ``sqlite`` the default durable store (an SQLite file, WAL), ``postgres`` a
fresh PostgreSQL database (dropped afterwards), ``postgres-async-commit`` the same with
``synchronous_commit=off`` set through the URL (commits survive a crash of ComfyUI, as SQLite's
WAL/NORMAL ones do, but not one of the PostgreSQL server; opt-in, not the default). Then, with ``--clients`` keep-alive HTTP
clients and trivial prompts (PrimitiveString -> PreviewAny, a unique string each so nothing is
cached):

* submit rate: POST /api/prompt only (every acknowledged submit is committed first);
* end-to-end rate: prompts submitted and run to completion, first submit to empty queue;
* v1 async rate: POST /api/v1/prompts with ``Prefer: respond-async`` (202 once committed);
* v1 sync rate: POST /api/v1/prompts that wait for each result (one request = one job).

A round runs each phase on every server in turn (so the stores compared ran seconds apart:
this machine's speed drifts by 10-40 % over a minute), then checks that every id acknowledged
in the round has its history entry. The servers live through all rounds, so later rounds run
with a full history (10,000 jobs) being pruned, as a long-running server does. Reported: each
store's median rate per phase, and its cost, one minus the median over rounds of its rate
divided by the in-memory rate of the same round and phase.

Goal (issue #6): the durable stores cost under 20 % of the in-memory throughput.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable

IN_MEMORY_MAIN = """
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
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt(text: str) -> dict:
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": text}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


class RawHTTP:
    """A minimal keep-alive HTTP/1.1 client (cheap per request, so the numbers are the
    server's rather than the client's on a small machine)."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: dict | None = None,
                      headers: dict | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode() if body is not None else b""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{extra}"
                          f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Server:
    def __init__(self, store: str, database_url: str | None):
        self.store, self.database_url = store, database_url
        self.port = free_port()
        self.work = tempfile.mkdtemp(prefix=f"comfyui-bench-jobs-{store}-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        flags = ["--base-directory", self.work, "--create-directories", "--port", str(self.port),
                 "--dont-print-server", "--logging-level", "WARNING"]
        if self.database_url:
            flags += ["--database-url", self.database_url]
        cmd = [sys.executable, "-c", IN_MEMORY_MAIN] if self.store == "memory" else [sys.executable, "-m", "comfyui"]
        self.proc = subprocess.Popen(cmd + flags, stdout=subprocess.DEVNULL)
        return self

    async def ready(self, timeout: float = 120) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.store} server exited with {self.proc.returncode}")
            http = RawHTTP(self.port)
            try:
                status, _ = await http.request("GET", "/api/prompt")
                if status == 200:
                    return
            except OSError:
                pass
            finally:
                await http.close()
            await asyncio.sleep(0.05)
        raise SystemExit(f"{self.store} server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.work, ignore_errors=True)


async def queue_remaining(port: int) -> int:
    http = RawHTTP(port)
    try:
        _, body = await http.request("GET", "/api/prompt")
        return json.loads(body)["exec_info"]["queue_remaining"]
    finally:
        await http.close()


async def drained(port: int, timeout: float = 600) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await queue_remaining(port) == 0:
            return
        await asyncio.sleep(0.01)
    raise SystemExit("the queue did not drain")


async def submit_all(port: int, total: int, clients: int, tag: str) -> list[str]:
    ids: list[str] = []
    per = total // clients

    async def one(idx: int) -> None:
        http = RawHTTP(port)
        try:
            for i in range(per):
                status, body = await http.request("POST", "/api/prompt", {"prompt": prompt(f"{tag}-{idx}-{i}-{uuid.uuid4()}")})
                assert status == 200, body
                ids.append(json.loads(body)["prompt_id"])
        finally:
            await http.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return ids


async def v1_async_submit(port: int, total: int, clients: int) -> list[str]:
    ids: list[str] = []
    per = total // clients

    async def one(idx: int) -> None:
        http = RawHTTP(port)
        try:
            for i in range(per):
                status, body = await http.request("POST", "/api/v1/prompts", prompt(f"v1a-{idx}-{i}-{uuid.uuid4()}"),
                                                  headers={"Prefer": "respond-async"})
                assert status == 202, (status, body)
                ids.append(json.loads(body)["prompt_id"])
        finally:
            await http.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return ids


async def v1_sync(port: int, total: int, clients: int) -> int:
    per = total // clients
    done = 0

    async def one(idx: int) -> None:
        nonlocal done
        http = RawHTTP(port)
        try:
            for i in range(per):
                status, body = await http.request("POST", "/api/v1/prompts", prompt(f"v1-{idx}-{i}-{uuid.uuid4()}"))
                assert status == 204, (status, body)  # text output only: LTS answers 204
                done += 1
        finally:
            await http.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return done


PHASES = ("submit", "e2e", "v1a", "v1")


async def run_phase(port: int, phase: str, prompts: int, clients: int) -> tuple[float, list[str]]:
    """One phase on one server: its rate, and the ids it had acknowledged."""
    t = time.perf_counter()
    if phase == "submit":  # submits only; the engine keeps running them, as in production
        ids = await submit_all(port, prompts, clients, "submit")
        rate = len(ids) / (time.perf_counter() - t)
    elif phase == "e2e":  # submit and run everything, first submit to empty queue
        ids = await submit_all(port, prompts, clients, "e2e")
        await drained(port)
        rate = len(ids) / (time.perf_counter() - t)
    elif phase == "v1a":  # v1 async submits (the handler submits on the loop, so commits are grouped)
        ids = await v1_async_submit(port, prompts, clients)
        rate = len(ids) / (time.perf_counter() - t)
    else:  # v1 sync: each request waits for its job
        ids = []
        rate = await v1_sync(port, prompts, clients) / (time.perf_counter() - t)
    await drained(port)
    return rate, ids


async def lost_ids(port: int, ids: list[str]) -> int:
    """How many acknowledged ids have no history entry."""
    http = RawHTTP(port)
    lost = 0
    try:
        for pid in ids:
            status, body = await http.request("GET", f"/api/history/{pid}")
            if status != 200 or pid not in json.loads(body):
                lost += 1
    finally:
        await http.close()
    return lost


def create_pg_database(admin_url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"comfyui_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


async def main_async(args) -> None:
    stores = [s.strip() for s in args.stores.split(",")]
    servers, drops = {}, []
    try:
        for store in stores:
            url, drop = database_for(store, args)
            drops.append(drop)
            servers[store] = Server(store, url).start()
        for store, server in servers.items():
            await server.ready()
            await submit_all(server.port, args.clients * 5, args.clients, "warm")  # caches, connections
            await drained(server.port)
        rates = {store: {phase: [] for phase in PHASES} for store in stores}
        lost = dict.fromkeys(stores, 0)
        for round_ in range(args.rounds):
            # each phase runs on every server in turn, so that the machine's speed, which drifts
            # by 10-40 % over seconds on a shared 2-core machine, is alike for the rates compared
            ids = {store: [] for store in stores}
            for phase in PHASES:
                for store, server in servers.items():
                    rate, acked = await run_phase(server.port, phase, args.prompts, args.clients)
                    rates[store][phase].append(rate)
                    ids[store] += acked
            for store, server in servers.items():  # checked now, before history is pruned
                lost[store] += await lost_ids(server.port, ids[store])
                r = {phase: rates[store][phase][-1] for phase in PHASES}
                print(f"  round {round_ + 1} {store:<22} submit {r['submit']:7.0f}/s  end-to-end {r['e2e']:7.0f}/s  "
                      f"v1 async submit {r['v1a']:6.0f}/s  v1 sync {r['v1']:6.0f}/s  lost {lost[store]}",
                      file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
        for drop in drops:
            drop()
    report(rates, lost, args)


def database_for(store: str, args) -> tuple[str | None, Callable[[], None]]:
    """A store's database URL and what removes that database afterwards."""
    if store == "memory":
        return None, lambda: None
    if store == "sqlite":
        folder = tempfile.mkdtemp(prefix="comfyui-bench-db-")
        return "sqlite:///" + os.path.join(folder, "jobs.db"), lambda: shutil.rmtree(folder, ignore_errors=True)
    if store in ("postgres", "postgres-async-commit"):
        name, url = create_pg_database(args.postgres_admin)
        if store == "postgres-async-commit":  # opt-in: ?options=-csynchronous_commit%3Doff
            url += "?options=-csynchronous_commit%3Doff"
        return url, lambda: drop_pg_database(args.postgres_admin, name)
    raise SystemExit(f"unknown store {store!r}")


def report(rates: dict, lost: dict, args) -> None:
    """The median rate of each store and phase; the cost of a store is one minus the median,
    over rounds, of its rate divided by the in-memory rate of the same phase and round."""
    base = rates.get("memory")
    print(f"\n{args.prompts} trivial prompts, {args.clients} HTTP clients, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} round(s)")
    print(f"{'store':<22} {'submit/s':>9} {'end-to-end/s':>13} {'v1 async/s':>11} {'v1 sync/s':>10} {'lost':>5}"
          f"   cost vs memory (submit, e2e, v1 async, v1 sync)")
    for store, r in rates.items():
        cost = ""
        if base and store != "memory":
            cost = "   " + ", ".join(
                f"{(1 - statistics.median(a / b for a, b in zip(r[p], base[p]))) * 100:+.0f} %" for p in PHASES)
        medians = [statistics.median(r[p]) for p in PHASES]
        print(f"{store:<22} {medians[0]:>9.0f} {medians[1]:>13.0f} {medians[2]:>11.0f} {medians[3]:>10.0f} "
              f"{lost[store]:>5}{cost}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every phase on every store; medians are reported")
    ap.add_argument("--stores", default="memory,sqlite,postgres")
    ap.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
