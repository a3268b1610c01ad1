"""A real cluster: frontends and workers as processes on the local RabbitMQ and a fresh
PostgreSQL database (tests/distributed/_cluster.py); clients on WebSockets."""
from __future__ import annotations

import asyncio
import collections
import json

import aiohttp
import sqlalchemy as sa

from _cluster import AMQP_URI, crash_prompt, step_prompt, wait_ready


async def start(cluster, frontends: int, workers: int):
    servers = [cluster.frontend() for _ in range(frontends)]
    procs = [cluster.worker() for _ in range(workers)]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers),
                         *(asyncio.to_thread(w.start) for w in procs))
    await asyncio.gather(*(asyncio.to_thread(wait_ready, s) for s in servers))
    return servers, procs


class WsClient:
    """A WebSocket client of one frontend that queues prompts and keeps what it is told."""

    def __init__(self, session: aiohttp.ClientSession, port: int, client_id: str):
        self.session, self.port, self.client_id = session, port, client_id
        self.messages: list[dict] = []
        self.finished: collections.Counter = collections.Counter()  # prompt id -> executing None count
        self.changed = asyncio.Event()

    async def connect(self) -> "WsClient":
        self.ws = await self.session.ws_connect(f"http://127.0.0.1:{self.port}/ws?clientId={self.client_id}")
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            self.messages.append(message)
            data = message.get("data") or {}
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id"):
                self.finished[data["prompt_id"]] += 1
                self.changed.set()

    async def submit(self, prompt: dict) -> str:
        async with self.session.post(f"http://127.0.0.1:{self.port}/prompt",
                                     json={"prompt": prompt, "client_id": self.client_id}) as r:
            body = await r.json()
            assert r.status == 200, body
            return body["prompt_id"]

    async def wait_finished(self, prompt_ids, timeout: float) -> None:
        async def done() -> None:
            while not all(self.finished[p] for p in prompt_ids):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(done(), timeout)

    def of(self, prompt_id: str, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m["type"] == kind and (m.get("data") or {}).get("prompt_id") == prompt_id]

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def job_rows(database_url: str) -> dict[str, str]:
    db = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with db.connect() as conn:
            return dict(conn.execute(sa.text("SELECT prompt_id, status FROM jobs")).all())
    finally:
        db.dispose()


async def test_every_acknowledged_prompt_finishes_exactly_once_while_workers_are_killed(cluster):
    """2 frontends, 3 workers, 6 clients x 10 prompts; a worker is killed (-9) in the middle of
    a job twice and replaced. Every prompt ends completed, once: its client hears its end and its
    success exactly once, with its progress, through the frontend it is connected to; the killed
    jobs ran again elsewhere; both frontends answer for every job."""
    c = cluster()
    servers, workers = await start(c, frontends=2, workers=3)
    async with aiohttp.ClientSession() as session:
        clients = [await WsClient(session, servers[i % 2].port, f"client-{i}").connect() for i in range(6)]
        submitted: dict[str, tuple[WsClient, str]] = {}

        async def queue_prompts(client: WsClient) -> None:
            for k in range(10):
                value = f"{client.client_id}-{k}"
                submitted[await client.submit(step_prompt(value, steps=4, seconds=0.05))] = (client, value)

        killed: list[str] = []

        async def kill_mid_job() -> None:
            for _ in range(2):
                while True:  # a worker that is inside a ClusterStep now
                    await asyncio.sleep(0.02)
                    busy = {w.pid: w for w in c.workers if w.alive()}
                    hits = [(value, busy[runs[-1]]) for _pid, (client, value) in list(submitted.items())
                            if (runs := c.runs(value)) and runs[-1] in busy and not client.finished[_pid]]
                    if hits:
                        value, victim = hits[0]
                        victim.kill()
                        killed.append(value)
                        c.worker().start(wait=False)  # a replacement
                        break
                await asyncio.sleep(1.0)

        killer = asyncio.create_task(kill_mid_job())
        await asyncio.gather(*(queue_prompts(client) for client in clients))
        await asyncio.wait_for(killer, 60)
        await asyncio.gather(*(client.wait_finished([p for p, (owner, _v) in submitted.items() if owner is client], 90)
                               for client in clients))
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now

        assert len(submitted) == 60 and len(killed) == 2
        for prompt_id, (client, value) in submitted.items():
            assert client.finished[prompt_id] == 1, (value, client.finished[prompt_id])
            assert len(client.of(prompt_id, "execution_success")) == 1, value
            progress = client.of(prompt_id, "progress")
            assert progress and progress[-1]["value"] == progress[-1]["max"] == 4, (value, progress)
            assert [m for m in client.of(prompt_id, "executed") if m["output"] == {"text": [value]}], value
            for other in clients:  # nobody else hears of it
                assert other is client or not other.of(prompt_id, "executing"), (value, other.client_id)
        for value in killed:  # the killed jobs ran again on another worker
            runs = c.runs(value)
            assert len(runs) >= 2 and len(set(runs)) >= 2, (value, runs)

        rows = job_rows(c.database_url)
        assert rows == {prompt_id: "completed" for prompt_id in submitted}
        some_id, (owner, value) = next(iter(submitted.items()))
        for server in servers:  # any frontend answers for any job
            base = f"http://127.0.0.1:{server.port}"
            async with session.get(f"{base}/api/jobs?status=completed&limit=5") as r:
                assert (await r.json())["pagination"]["total"] == 60
            async with session.get(f"{base}/history/{some_id}") as r:
                assert (await r.json())[some_id]["outputs"]["2"] == {"text": [value]}
            async with session.get(f"{base}/queue") as r:
                assert await r.json() == {"queue_running": [], "queue_pending": []}
            async with session.get(f"{base}/prompt") as r:
                assert (await r.json())["exec_info"]["queue_remaining"] == 0
        for client in clients:
            await client.close()
