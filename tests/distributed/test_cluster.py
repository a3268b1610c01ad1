"""A real cluster: frontends and workers as processes on the local RabbitMQ and a fresh
PostgreSQL database (tests/distributed/_cluster.py); clients on WebSockets."""
from __future__ import annotations

import asyncio
import collections
import json
import os
import urllib.request

import aiohttp
import sqlalchemy as sa

from _cluster import AMQP_URI, crash_prompt, step_prompt, wait_ready, wait_until


async def start(cluster, frontends: int, workers: int, *worker_args: str):
    servers = [cluster.frontend() for _ in range(frontends)]
    procs = [cluster.worker(*worker_args) for _ in range(workers)]
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
    # CLUSTER_SOAK=1: the full proof (300 prompts from 10 clients, 5 kills; minutes here)
    n_clients, per_client, kills = (10, 30, 5) if os.environ.get("CLUSTER_SOAK") else (6, 10, 2)
    c = cluster()
    servers, workers = await start(c, frontends=2, workers=3)
    async with aiohttp.ClientSession() as session:
        clients = [await WsClient(session, servers[i % 2].port, f"client-{i}").connect() for i in range(n_clients)]
        submitted: dict[str, tuple[WsClient, str]] = {}

        async def queue_prompts(client: WsClient) -> None:
            for k in range(per_client):
                value = f"{client.client_id}-{k}"
                submitted[await client.submit(step_prompt(value, steps=4, seconds=0.05))] = (client, value)

        killed: list[str] = []

        async def kill_mid_job() -> None:
            for _ in range(kills):
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
                await asyncio.sleep(0.3)

        killer = asyncio.create_task(kill_mid_job())
        await asyncio.gather(*(queue_prompts(client) for client in clients))
        await asyncio.wait_for(killer, 120)
        await asyncio.gather(*(client.wait_finished([p for p, (owner, _v) in submitted.items() if owner is client], 90)
                               for client in clients))
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now

        assert len(submitted) == n_clients * per_client and len(killed) == kills
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
                assert (await r.json())["pagination"]["total"] == len(submitted)
            async with session.get(f"{base}/history/{some_id}") as r:
                assert (await r.json())[some_id]["outputs"]["2"] == {"text": [value]}
            async with session.get(f"{base}/queue") as r:
                assert await r.json() == {"queue_running": [], "queue_pending": []}
            async with session.get(f"{base}/prompt") as r:
                assert (await r.json())["exec_info"]["queue_remaining"] == 0
        for client in clients:
            await client.close()


async def publish_raw(queue: str, *bodies: bytes) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URI)
    channel = await connection.channel(publisher_confirms=True)
    for body in bodies:
        await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=queue)
    await connection.close()


async def dead_letters(queue: str) -> list:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URI)
    channel = await connection.channel()
    q = await channel.get_queue(queue, ensure=False)
    found = []
    while (message := await q.get(no_ack=True, fail=False)) is not None:
        found.append((message.body, dict(message.headers or {})))
    await connection.close()
    return found


async def test_poison_messages_are_dead_lettered_and_control_reaches_the_workers(cluster):
    """Malformed messages are dead-lettered with their reason and harm no worker; a prompt that
    kills every worker that runs it is dead-lettered after the delivery limit and reported
    failed to its client; cancel and interrupt reach the workers; SIGTERM lets a worker finish
    its prompt and stop."""
    c = cluster(delivery_limit=1)  # two deliveries, then the dead-letter exchange
    (server,), workers = await start(c, frontends=1, workers=3)
    base = f"http://127.0.0.1:{server.port}"
    from comfyui.client.remote import RemoteComfy

    async with RemoteComfy(base) as comfy:  # the remote client works against a frontend as against a server
        outputs = await comfy.queue_prompt(step_prompt("remote", steps=2, seconds=0.01))
        assert outputs["2"] == {"text": ["remote"]}
    from comfyui import Comfy

    async with Comfy(base_directory=c.base, database_url=c.database_url, distributed_queue_frontend=True,
                     distributed_queue_connection_uri=c.amqp_uri, distributed_queue_name=c.name,
                     distributed_delivery_limit=c.delivery_limit) as comfy:  # the embedded client too
        events = [e.event async for e in comfy.queue_with_progress(step_prompt("embedded", steps=3, seconds=0.01))]
        assert "progress" in events and events[-1] == "result"
        assert c.runs("embedded") and c.runs("embedded")[0] in {w.pid for w in workers}
    async with aiohttp.ClientSession() as session:
        client = await WsClient(session, server.port, "poison-client").connect()
        await publish_raw(f"{c.name}.prompts", b"\x80 not json",
                          json.dumps({"v": 1, "kind": "prompt", "prompt_id": "x", "number": 1,
                                      "prompt": {"1": {"inputs": {}}}}).encode(),
                          json.dumps({"v": 99, "kind": "prompt"}).encode())
        crash = await client.submit(crash_prompt("boom"))
        await client.wait_finished([crash], 60)
        error = client.of(crash, "execution_error")
        assert error and error[0]["exception_type"] == "DeadLettered", client.messages[-5:]
        assert "delivered 2 times" in error[0]["exception_message"]
        survivors = [w for w in workers if w.alive()]
        assert len(survivors) == 1  # the crash prompt took down two of them; the bad messages none
        async with session.get(f"{base}/api/jobs/{crash}") as r:
            job = await r.json()
            assert job["status"] == "failed" and job["execution_error"]["exception_type"] == "DeadLettered"

        dead = await dead_letters(f"{c.name}.dead")
        reasons = sorted(h.get("x-comfyui-reason", "") for _b, h in dead if "x-comfyui-reason" in h)
        assert len(reasons) == 3, dead
        assert reasons[0].startswith("invalid prompt: prompt.prompt.1.class_type")
        assert reasons[1].startswith("not JSON") and reasons[2].startswith("unsupported message version 99")
        assert [h["x-death"][0]["reason"] for b, h in dead if "x-death" in h] == ["delivery_limit"]

        # one worker left: a long prompt runs, a second one waits; cancel the waiting one,
        # interrupt the running one
        running = await client.submit(step_prompt("long", steps=200, seconds=0.05))
        waiting = await client.submit(step_prompt("waiting", steps=1, seconds=0.0))
        await asyncio.to_thread(lambda: wait_until(lambda: c.runs("long"), 30))
        async with session.post(f"{base}/api/jobs/{waiting}/cancel") as r:
            assert (await r.json())["result"] == "cancelled"
        async with session.post(f"{base}/interrupt", json={"prompt_id": running}) as r:
            assert r.status == 200
        await client.wait_finished([running], 30)
        assert client.of(running, "execution_interrupted")
        statuses = job_rows(c.database_url)
        assert statuses[running] == "cancelled" and statuses[waiting] == "cancelled"

        # graceful stop: SIGTERM while a prompt runs -> it finishes, is recorded, the worker exits 0
        last = await client.submit(step_prompt("last", steps=20, seconds=0.05))
        await asyncio.to_thread(lambda: wait_until(lambda: c.runs("last"), 30))
        assert await asyncio.to_thread(survivors[0].terminate) == 0
        await client.wait_finished([last], 10)
        assert job_rows(c.database_url)[last] == "completed"
        assert c.runs("waiting") == [] and len(c.runs("last")) == 1
        async with session.get(f"{base}/health") as r:
            listed = (await r.json())["workers"]  # (killed ones stay listed until silent for 15 s)
            assert not [w for w in listed if f":{survivors[0].pid}:" in w], listed  # it said goodbye
        await client.close()


async def test_prompts_go_to_the_worker_that_holds_their_checkpoint(cluster):
    """Two workers, each holding a different checkpoint: every prompt runs on the one that has
    its checkpoint loaded (random dispatch would miss about half the time). Then ``/free``
    through the frontend reaches both: neither holds a checkpoint afterwards."""
    from models import fixtures as fx

    from _cluster import checkpoint_prompt

    c = cluster()
    checkpoints = os.path.join(c.base, "models", "checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    fx.make_sd1_checkpoint(os.path.join(checkpoints, "a.safetensors"), seed=0)
    fx.make_sd1_checkpoint(os.path.join(checkpoints, "b.safetensors"), seed=1)
    (server,), (first,) = await start(c, frontends=1, workers=1)
    async with aiohttp.ClientSession() as session:
        client = await WsClient(session, server.port, "routing").connect()
        warm_a = await client.submit(checkpoint_prompt("warm-a", "a.safetensors"))
        await client.wait_finished([warm_a], 60)
        hold = await client.submit(step_prompt("hold", steps=1, seconds=60))  # keeps the first worker busy
        await asyncio.to_thread(lambda: wait_until(lambda: c.runs("hold"), 30))
        second = await asyncio.to_thread(c.worker().start)
        warm_b = await client.submit(checkpoint_prompt("warm-b", "b.safetensors"))  # -> the free one
        await client.wait_finished([warm_b], 60)
        async with session.post(f"http://127.0.0.1:{server.port}/interrupt", json={"prompt_id": hold}):
            await client.wait_finished([hold], 30)
        assert c.runs("warm-a") == [first.pid] and c.runs("warm-b") == [second.pid]

        def advertised() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health") as r:
                workers = json.load(r)["workers"]
            held = {w.split(":")[1]: state["checkpoints"] for w, state in workers.items()}
            return held == {str(first.pid): ["a.safetensors"], str(second.pid): ["b.safetensors"]}

        await asyncio.to_thread(lambda: wait_until(advertised, 30, 0.1, "both workers to advertise"))
        for k in range(8):
            name = "ab"[k % 2]
            prompt_id = await client.submit(checkpoint_prompt(f"routed-{k}", f"{name}.safetensors"))
            await client.wait_finished([prompt_id], 30)
            assert c.runs(f"routed-{k}") == [(first if name == "a" else second).pid], k

        async with session.post(f"http://127.0.0.1:{server.port}/free",
                                json={"unload_models": True, "free_memory": True}) as r:
            assert r.status == 200

        def freed() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health") as r:
                workers = json.load(r)["workers"]
            return len(workers) == 2 and all(state["checkpoints"] == [] for state in workers.values())

        await asyncio.to_thread(lambda: wait_until(freed, 20, 0.2, "both workers to free their checkpoints"))
        await client.close()


async def test_acknowledged_prompts_survive_broker_connection_drops(cluster):
    """Every process reaches RabbitMQ through a TCP proxy that cuts all connections twice while
    prompts are submitted and run. Submissions during an outage are refused (503, nothing
    queued) and retried with the same prompt id; every acknowledged prompt completes exactly
    once and its client hears its end once, events sent during the outage included."""
    from _cluster import BrokerProxy

    from _proc import free_port

    proxy = await BrokerProxy().start()
    c = cluster(amqp_uri=proxy.uri)
    health_port = free_port()
    (server,), workers = await start(c, 1, 1)
    workers.append(await asyncio.to_thread(c.worker("--worker-health-port", str(health_port)).start))
    refused = 0
    async with aiohttp.ClientSession() as session:
        health = f"http://127.0.0.1:{health_port}"
        async with session.get(f"{health}/health") as r:
            assert (await r.json())["broker"] == "connected"
        async with session.get(f"{health}/ready") as r:
            assert r.status == 200

        async def not_ready_seen() -> bool:
            for _ in range(200):
                async with session.get(f"{health}/ready") as r:
                    if r.status == 503:
                        return True
                await asyncio.sleep(0.01)
            return False

        client = await WsClient(session, server.port, "through-proxy").connect()
        acknowledged = []
        for k in range(40):
            if k in (10, 25):
                proxy.drop(refuse_for=1.0)
                if k == 10:  # the worker reports the lost broker on /ready
                    assert await not_ready_seen()
            body = {"prompt": step_prompt(f"p{k}", steps=2, seconds=0.05), "client_id": client.client_id,
                    "prompt_id": f"proxy-{k}"}
            while True:  # a client retries a refused submission with the same id
                async with session.post(f"http://127.0.0.1:{server.port}/prompt", json=body) as r:
                    if r.status == 200:
                        acknowledged.append(body["prompt_id"])
                        break
                    assert r.status == 503, await r.text()
                    refused += 1
                await asyncio.sleep(0.1)
        await client.wait_finished(acknowledged, 60)
        await asyncio.sleep(0.5)
        rows = job_rows(c.database_url)
        assert rows == {prompt_id: "completed" for prompt_id in acknowledged}
        for prompt_id in acknowledged:
            assert client.finished[prompt_id] == 1, prompt_id
            assert len(client.of(prompt_id, "execution_success")) == 1, prompt_id
        assert refused > 0  # the outages were seen by the submitters
        assert all(w.alive() for w in workers)
        assert sum("reconnecting" in w.log_tail(100000) for w in workers) >= 1
        async with session.get(f"http://127.0.0.1:{server.port}/ready") as r:
            assert r.status == 200
        async with session.get(f"{health}/ready") as r:
            assert r.status == 200
        await client.close()
    await proxy.close()


async def test_a_job_stored_by_a_frontend_that_died_before_publishing_runs_once(cluster, monkeypatch):
    """A frontend killed between storing a job and publishing it (-9 at that point): another
    frontend publishes it again; it runs exactly once and is marked published."""
    monkeypatch.setenv("COMFYUI_DISTRIBUTED_REPUBLISH_AFTER_S", "2")
    c = cluster()
    monkeypatch.setenv("COMFYUI_TEST_FRONTEND_EXIT_AFTER_STORE", "1")
    dying = c.frontend()
    await asyncio.to_thread(dying.start)
    monkeypatch.delenv("COMFYUI_TEST_FRONTEND_EXIT_AFTER_STORE")
    await asyncio.to_thread(wait_ready, dying)
    (survivor,), (worker,) = await start(c, frontends=1, workers=1)
    async with aiohttp.ClientSession() as session:
        client = await WsClient(session, survivor.port, "orphan").connect()
        lost = "orphan-job"
        try:
            async with session.post(f"http://127.0.0.1:{dying.port}/prompt",
                                    json={"prompt": step_prompt("orphan"), "client_id": "orphan",
                                          "prompt_id": lost}) as r:
                raise AssertionError(f"the frontend answered {r.status}")
        except aiohttp.ClientError:
            pass  # it died before answering
        assert dying.proc.wait(10) == 137
        assert job_rows(c.database_url)[lost] == "pending"
        await client.wait_finished([lost], 30)  # its client hears of it through the other frontend
        await asyncio.sleep(3)  # more rounds of the republisher: nothing runs it again
        assert job_rows(c.database_url)[lost] == "completed"
        assert c.runs("orphan") == [worker.pid]
        db = sa.create_engine(c.database_url.replace("postgresql://", "postgresql+psycopg://"))
        with db.connect() as conn:
            assert conn.execute(sa.text("SELECT published_at FROM jobs WHERE prompt_id = :p"), {"p": lost}).scalar()
        db.dispose()
        normal = await client.submit(step_prompt("normal"))  # the usual path marks the job published at once
        await client.wait_finished([normal], 30)
        await client.close()


async def test_a_front_prompt_runs_before_the_prompts_queued_ahead_of_it(cluster):
    """``front: true`` across the cluster: behind a running prompt and 4 queued ones, a front
    prompt is the next to run (quorum queues have no priorities: it goes through a front queue)."""
    c = cluster()
    (server,), (worker,) = await start(c, frontends=1, workers=1)
    async with aiohttp.ClientSession() as session:
        client = await WsClient(session, server.port, "front").connect()
        hold = await client.submit(step_prompt("hold", steps=40, seconds=0.05))
        await asyncio.to_thread(lambda: wait_until(lambda: c.runs("hold"), 30))
        queued = [await client.submit(step_prompt(f"queued-{k}", steps=1, seconds=0.0)) for k in range(4)]
        async with session.post(f"http://127.0.0.1:{server.port}/prompt",
                                json={"prompt": step_prompt("front", steps=1, seconds=0.0), "client_id": "front",
                                      "front": True}) as r:
            assert r.status == 200
            front = (await r.json())["prompt_id"]
        await client.wait_finished([hold, front, *queued], 60)
        db = sa.create_engine(c.database_url.replace("postgresql://", "postgresql+psycopg://"))
        with db.connect() as conn:
            started = dict(conn.execute(sa.text("SELECT prompt_id, started_at FROM jobs")).all())
        db.dispose()
        order = sorted(started, key=started.get)
        assert order == [hold, front, *queued], order
        assert all(c.runs(v) == [worker.pid] for v in ("hold", "front", "queued-0", "queued-3"))
        await client.close()
