"""Load: 300 prompts from 10 concurrent clients (each with its own WebSocket), while one more
client never reads its socket. Every prompt ends in history, every client sees all of its own
prompts finish, nothing is lost and nothing fails."""
from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import WSMsgType

from server_helpers import text_prompt

CLIENTS = 10
PER_CLIENT = 30


async def _client(base: str, n: int, idx: int) -> tuple[list[str], set[str], list[str]]:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{base}/ws?clientId=load-{idx}")
        first = await ws.receive_json(timeout=10)
        sid = first["data"]["sid"]
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        finished: set[str] = set()
        errors: list[str] = []
        started: list[str] = []
        ids: list[str] = []

        async def reader():
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                d = m.get("data") or {}
                if m["type"] in ("execution_error", "execution_interrupted"):
                    errors.append(json.dumps(m))
                if m["type"] == "executing" and d.get("node") is None and d.get("prompt_id"):
                    finished.add(d["prompt_id"])
                if m["type"] == "execution_start":  # checked once this client knows all its ids
                    started.append(d["prompt_id"])
                if len(finished) >= n and len(ids) == n:
                    return

        ids_set: set[str] = set()
        task = asyncio.create_task(reader())
        for i in range(n):
            body = {"prompt": text_prompt(f"c{idx}-{i}"), "client_id": sid}
            async with session.post(f"{base}/api/prompt", json=body) as resp:
                data = await resp.json()
                assert resp.status == 200, data
                ids.append(data["prompt_id"])
                ids_set.add(data["prompt_id"])
        await asyncio.wait_for(task, 60)
        await ws.close()
        foreign = [pid for pid in started if pid not in ids_set]
        assert not foreign, f"client {idx} received another client's execution_start"
        return ids, finished, errors


async def test_300_prompts_10_clients_none_lost_with_a_stalled_client(server):
    base = f"http://127.0.0.1:{server.client.port}"
    stalled = await server.client.ws_connect("/ws?clientId=never-reads")
    await stalled.receive_json(timeout=5)  # and never again
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    results = await asyncio.gather(*(_client(base, PER_CLIENT, i) for i in range(CLIENTS)))
    elapsed = loop.time() - t0
    all_ids = [pid for ids, _, _ in results for pid in ids]
    assert len(all_ids) == CLIENTS * PER_CLIENT == len(set(all_ids))
    for ids, finished, errors in results:
        assert set(ids) <= finished
        assert errors == []
    history = await (await server.client.get("/api/history")).json()
    assert set(all_ids) <= set(history)
    assert all(history[pid]["status"]["status_str"] == "success" for pid in all_ids)
    jobs = await (await server.client.get("/api/jobs?status=completed&limit=1000")).json()
    assert jobs["pagination"]["total"] == CLIENTS * PER_CLIENT
    assert server.engine.queue_remaining() == 0
    assert elapsed < 30, elapsed
    await stalled.close()
