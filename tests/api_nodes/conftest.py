"""Fixtures: the contract server on loopback and engines (or full servers) whose API nodes call it."""
from __future__ import annotations

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from contract_server import ContractServer  # noqa: E402

TOKEN = "comfy-login-token-7f3a9c1e5b"


@pytest.fixture(autouse=True)
def fast_client(monkeypatch):
    """Retries and polls every few milliseconds (the behaviour is the same, the waits shorter)."""
    from comfyui.api_nodes.client import ApiClient

    monkeypatch.setattr(ApiClient, "retry_delay", 0.01)
    monkeypatch.setattr(ApiClient, "poll_interval", 0.02)
    for name in ("OPENAI_API_KEY", "STABILITY_API_KEY", "OPENAI_BASE_URL", "STABILITY_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def contract():
    server = await ContractServer(token=TOKEN).start()
    yield server
    await server.close()


@pytest.fixture
def make_engine(workspace, contract):
    """``make_engine(**config)``: a started Engine with built-in and API nodes calling ``contract``."""
    from comfyui import runtime
    from comfyui.config import Config
    from comfyui.engine.engine import Engine

    engines = []
    previous = runtime.make_default(None)

    def make(**overrides):
        overrides.setdefault("base_directory", str(workspace))
        overrides.setdefault("comfy_api_base", contract.url)
        config = Config(**overrides)
        rt = runtime.Runtime(config)
        runtime.make_default(rt)
        engine = Engine.from_config(config, custom_nodes=False, runtime=rt)
        engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(timeout=5)
    runtime.make_default(previous)


async def run_prompt(engine, prompt: dict, extra_data: dict | None = None, timeout: float = 30) -> dict:
    """Queue ``prompt`` and wait for its history entry."""
    result = engine.submit(prompt, extra_data={"auth_token_comfy_org": TOKEN} if extra_data is None else extra_data)
    assert not result.node_errors, result.node_errors
    return await asyncio.wait_for(asyncio.wrap_future(engine.wait(result.prompt_id)), timeout)


def with_preview(node: dict) -> dict:
    """The API node as node "1", its IMAGE shown by PreviewImage "2"."""
    return {"1": node, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def error_of(entry: dict) -> dict | None:
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return data
    return None
