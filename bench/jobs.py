"""Durable jobs benchmark: what the job store costs in throughput, and what the frontend's
polling of the Jobs API costs while jobs are submitted.

    .venv/bin/python bench/jobs.py [--prompts 2000] [--clients 10] [--stores memory,sqlite,postgres]
                                   [--phases submit,e2e,v1a,v1,frontend] [--frontend-seconds 10]
                                   [--history 10000]
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
* v1 sync rate: POST /api/v1/prompts that wait for each result (one request = one job);
* frontend (on a history of ``--history`` jobs, filled first): ``--clients`` clients submit
  while ``--clients`` others behave like frontend 1.58.1: after every ``status`` WebSocket
  message each calls ``GET /api/jobs?limit=64`` and the history panel's
  ``GET /api/jobs?status=completed,failed,cancelled&limit=64&offset=0`` (messages that arrive
  during a call are answered by one more round, as the frontend's refresh coalesces them).
  Reported: the latency of those calls (p50, p99, max; and of the same calls made one at a
  time with nothing else running, what one costs), and how late the server's event loop
  answers a WebSocket ping sent every 10 ms by one more client (every WebSocket event waits
  for the loop the same way), during the phase and during a submit-only baseline of the same
  length.

A round runs each phase on every server in turn (so the stores compared ran seconds apart:
this machine's speed drifts by 10-40 % over a minute), then checks that every id acknowledged
in the round has its history entry. The servers live through all rounds, so later rounds run
with a full history (10,000 jobs) being pruned, as a long-running server does. Reported: each
store's median rate per phase, and its cost, one minus the median over rounds of its rate
divided by the in-memory rate of the same round and phase.

Floors (issue #20): >= 1,000 durable submits/s with 10 clients, 0 jobs lost. Goal of the
frontend phase: p99 <= 20 ms for /api/jobs, and no WebSocket event delayed more than 20 ms by
a read.
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

import aiohttp

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
JOBS_CALLS = ("/api/jobs?limit=64", "/api/jobs?status=completed,failed,cancelled&limit=64&offset=0")


async def submit_until(port: int, stop: asyncio.Event, counts: dict, idx: int) -> None:
    http = RawHTTP(port)
    try:
        while not stop.is_set():
            status, body = await http.request("POST", "/api/prompt", {"prompt": prompt(f"fe-{idx}-{uuid.uuid4()}")})
            assert status == 200, body
            counts["submits"] += 1
    finally:
        await http.close()


async def frontend_reader(port: int, session: aiohttp.ClientSession, stop: asyncio.Event, idx: int,
                          latencies: list[float], counts: dict) -> None:
    """After every status message: the Jobs API calls frontend 1.58.1 makes."""
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws?clientId=bench-frontend-{idx}")
    due = asyncio.Event()

    async def listen() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "status":
                counts["status"] += 1
                due.set()

    listener = asyncio.create_task(listen())
    http = RawHTTP(port)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(due.wait(), 0.2)
            except asyncio.TimeoutError:
                continue
            due.clear()
            for path in JOBS_CALLS:
                t = time.perf_counter()
                status, body = await http.request("GET", path)
                latencies.append(time.perf_counter() - t)
                assert status == 200, body
    finally:
        listener.cancel()
        await ws.close()
        await http.close()


async def ping_probe(port: int, session: aiohttp.ClientSession, stop: asyncio.Event, delays: list[float]) -> None:
    """A WebSocket ping every 10 ms; the server's loop answers it as it sends any event."""
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws?clientId=bench-probe", autoping=False)
    try:
        while not stop.is_set():
            t = time.perf_counter()
            await ws.ping(b"probe")
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.PONG:
                    break
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
            delays.append(time.perf_counter() - t)
            await asyncio.sleep(0.01)
    finally:
        await ws.close()


async def frontend_phase(port: int, clients: int, seconds: float, readers: bool) -> dict:
    """``clients`` submitters (and, with ``readers``, as many frontend-like readers) and a ping
    probe for ``seconds``; then the queue drains."""
    stop = asyncio.Event()
    latencies: list[float] = []
    delays: list[float] = []
    counts = {"submits": 0, "status": 0}
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(submit_until(port, stop, counts, i)) for i in range(clients)]
        if readers:
            tasks += [asyncio.create_task(frontend_reader(port, session, stop, i, latencies, counts))
                      for i in range(clients)]
        tasks.append(asyncio.create_task(ping_probe(port, session, stop, delays)))
        t = time.perf_counter()
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t
    await drained(port)
    return {"latencies": latencies, "delays": delays, "submit_rate": counts["submits"] / elapsed,
            "status": counts["status"]}


async def idle_latency(port: int, calls: int = 200) -> list[float]:
    """The Jobs API calls one after another with nothing else running: what one costs."""
    http = RawHTTP(port)
    latencies = []
    try:
        for i in range(calls):
            t = time.perf_counter()
            status, body = await http.request("GET", JOBS_CALLS[i % 2])
            latencies.append(time.perf_counter() - t)
            assert status == 200, body
    finally:
        await http.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def fill_history(port: int, jobs: int, clients: int) -> None:
    while jobs > 0:
        batch = min(jobs, 2000)
        await submit_all(port, batch, clients, "history")
        await drained(port)
        jobs -= batch


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
    phases = [p.strip() for p in args.phases.split(",")]
    rate_phases = [p for p in PHASES if p in phases]
    servers, drops = {}, []
    frontend: dict[str, list[dict]] = {store: [] for store in stores}
    try:
        for store in stores:
            url, drop = database_for(store, args)
            drops.append(drop)
            servers[store] = Server(store, url).start()
        for store, server in servers.items():
            await server.ready()
            await submit_all(server.port, args.clients * 5, args.clients, "warm")  # caches, connections
            await drained(server.port)
            if "frontend" in phases:
                await fill_history(server.port, args.history, args.clients)
        rates = {store: {phase: [] for phase in rate_phases} for store in stores}
        lost = dict.fromkeys(stores, 0)
        for round_ in range(args.rounds):
            # each phase runs on every server in turn, so that the machine's speed, which drifts
            # by 10-40 % over seconds on a shared 2-core machine, is alike for the rates compared
            ids = {store: [] for store in stores}
            for phase in rate_phases:
                for store, server in servers.items():
                    rate, acked = await run_phase(server.port, phase, args.prompts, args.clients)
                    rates[store][phase].append(rate)
                    ids[store] += acked
            for store, server in servers.items():  # checked now, before history is pruned
                lost[store] += await lost_ids(server.port, ids[store])
                if rate_phases:
                    r = {phase: rates[store][phase][-1] for phase in rate_phases}
                    print(f"  round {round_ + 1} {store:<22} " + "  ".join(f"{p} {v:7.0f}/s" for p, v in r.items())
                          + f"  lost {lost[store]}", file=sys.stderr, flush=True)
            if "frontend" in phases:
                for store, server in servers.items():
                    idle = await idle_latency(server.port)
                    base = await frontend_phase(server.port, args.clients, args.frontend_seconds, readers=False)
                    mixed = await frontend_phase(server.port, args.clients, args.frontend_seconds, readers=True)
                    frontend[store].append({"base": base, "mixed": mixed, "idle": idle})
                    print(f"  round {round_ + 1} {store:<22} frontend: /api/jobs p99 "
                          f"{percentile(mixed['latencies'], 0.99) * 1e3:.1f} ms over {len(mixed['latencies'])} calls; "
                          f"ping p99 {percentile(mixed['delays'], 0.99) * 1e3:.1f} ms (baseline "
                          f"{percentile(base['delays'], 0.99) * 1e3:.1f} ms)", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
        for drop in drops:
            drop()
    if rate_phases:
        report(rates, lost, args, rate_phases)
    if "frontend" in phases:
        report_frontend(frontend, args)


def report_frontend(results: dict, args) -> None:
    print(f"\nfrontend phase: {args.clients} submitting clients + {args.clients} frontend-like readers, "
          f"{args.frontend_seconds:g} s per round, history {args.history} jobs, all rounds pooled")
    print(f"{'store':<22} {'calls':>6} {'/api/jobs p50':>14} {'p99':>8} {'max':>8}   {'ping p50':>9} {'p99':>7} "
          f"{'max':>7}   {'baseline ping p99':>17} {'max':>7}   {'submits/s':>9} {'base':>6}   "
          f"{'one at a time p50':>17} {'p99':>6}")
    for store, rounds in results.items():
        lat = [x for r in rounds for x in r["mixed"]["latencies"]]
        ping = [x for r in rounds for x in r["mixed"]["delays"]]
        base = [x for r in rounds for x in r["base"]["delays"]]
        ms = lambda v: f"{v * 1e3:.1f}"  # noqa: E731
        rate = statistics.median(r["mixed"]["submit_rate"] for r in rounds)
        base_rate = statistics.median(r["base"]["submit_rate"] for r in rounds)
        idle = [x for r in rounds for x in r["idle"]]
        print(f"{store:<22} {len(lat):>6} {ms(percentile(lat, 0.5)):>14} {ms(percentile(lat, 0.99)):>8} "
              f"{ms(max(lat, default=0)):>8}   {ms(percentile(ping, 0.5)):>9} {ms(percentile(ping, 0.99)):>7} "
              f"{ms(max(ping, default=0)):>7}   {ms(percentile(base, 0.99)):>17} {ms(max(base, default=0)):>7}   "
              f"{rate:>9.0f} {base_rate:>6.0f}   {ms(percentile(idle, 0.5)):>17} {ms(percentile(idle, 0.99)):>6}")


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


def report(rates: dict, lost: dict, args, phases) -> None:
    """The median rate of each store and phase; the cost of a store is one minus the median,
    over rounds, of its rate divided by the in-memory rate of the same phase and round."""
    base = rates.get("memory")
    print(f"\n{args.prompts} trivial prompts, {args.clients} HTTP clients, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} round(s)")
    names = {"submit": "submit/s", "e2e": "end-to-end/s", "v1a": "v1 async/s", "v1": "v1 sync/s"}
    print(f"{'store':<22} " + " ".join(f"{names[p]:>13}" for p in phases) + f" {'lost':>5}   cost vs memory")
    for store, r in rates.items():
        cost = ""
        if base and store != "memory":
            cost = "   " + ", ".join(
                f"{(1 - statistics.median(a / b for a, b in zip(r[p], base[p]))) * 100:+.0f} %" for p in phases)
        print(f"{store:<22} " + " ".join(f"{statistics.median(r[p]):>13.0f}" for p in phases)
              + f" {lost[store]:>5}{cost}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every phase on every store; medians are reported")
    ap.add_argument("--stores", default="memory,sqlite,postgres")
    ap.add_argument("--phases", default=",".join(PHASES + ("frontend",)))
    ap.add_argument("--frontend-seconds", type=float, default=10.0)
    ap.add_argument("--history", type=int, default=10000, help="jobs of history before the frontend phase")
    ap.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
