"""Fixtures: the contract server on loopback and engines (or full servers) whose API nodes call it."""
from __future__ import annotations

import pytest

from apinode_helpers import TOKEN
from contract_server import ContractServer


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
