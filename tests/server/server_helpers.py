"""Helpers shared by the server tests (imported as ``server_helpers``)."""
from __future__ import annotations

import asyncio
import json
import struct
from typing import Any, Callable

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient


class Srv:
    """One running server: ``client`` (aiohttp TestClient), ``engine``, ``app``, ``ctx``."""

    def __init__(self, client: TestClient, engine: Any):
        self.client = client
        self.engine = engine
        self.app = client.server.app
        self.ctx = self.app["ctx"]

    async def post_json(self, path: str, body: Any, **kw):
        return await self.client.post(path, data=json.dumps(body),
                                      headers={"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)

    async def submit(self, prompt: dict, **body) -> dict:
        resp = await self.post_json("/api/prompt", {"prompt": prompt, **body})
        data = await resp.json()
        assert resp.status == 200, data
        return data

    async def wait_history(self, prompt_id: str, timeout: float = 20) -> dict:
        loop = asyncio.get_running_loop()
        fut = asyncio.wrap_future(self.engine.wait(prompt_id), loop=loop)
        await asyncio.wait_for(fut, timeout)
        resp = await self.client.get(f"/api/history/{prompt_id}")
        return (await resp.json())[prompt_id]

    async def ws(self, client_id: str | None = None, flags: dict | None = None, **kw):
        """Connect /ws, read the first ``status``; send feature flags when given and wait for
        the reply. Returns (ws, sid)."""
        url = "/ws" + (f"?clientId={client_id}" if client_id else "")
        ws = await self.client.ws_connect(url, **kw)
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "status", first
        sid = first["data"]["sid"]
        if flags is not None:
            await ws.send_json({"type": "feature_flags", "data": flags})
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type == WSMsgType.TEXT and json.loads(msg.data)["type"] == "feature_flags":
                    break
        return ws, sid


def text_prompt(text: str = "hello") -> dict:
    """PrimitiveString -> PreviewAny (two real built-in nodes)."""
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": text}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def sleep_prompt(seconds: float = 5.0, text: str = "slow") -> dict:
    return {"1": {"class_type": "ServerTestSleep", "inputs": {"value": text, "seconds": seconds}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def preview_prompt(fmt: str = "JPEG", text: str = "p") -> dict:
    return {"1": {"class_type": "ServerTestPreview", "inputs": {"value": text, "format": fmt}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


async def collect(ws, until: Callable[[Any], bool], timeout: float = 10.0) -> list:
    """Messages (dicts for text, bytes for binary) up to and including the first that
    satisfies ``until``."""
    out: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out; got {[m if isinstance(m, dict) else m[:8] for m in out]}")
        msg = await ws.receive(timeout=remaining)
        if msg.type == WSMsgType.TEXT:
            item = json.loads(msg.data)
        elif msg.type == WSMsgType.BINARY:
            item = msg.data
        else:
            raise AssertionError(f"socket closed: {msg}")
        out.append(item)
        if until(item):
            return out


def is_done(prompt_id: str) -> Callable[[Any], bool]:
    """``executing`` with node null for prompt_id (the last message of a run)."""
    return lambda m: (isinstance(m, dict) and m["type"] == "executing"
                      and m["data"].get("node") is None and m["data"].get("prompt_id") == prompt_id)


def frame_type(b: bytes) -> int:
    return struct.unpack(">I", b[:4])[0]
