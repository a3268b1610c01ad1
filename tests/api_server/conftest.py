"""Fixtures for the production API tests: a real Engine (built-in nodes + _apinodes.py)
behind the production API app on a free loopback port."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api_helpers import Api


def _load_testnodes():
    name = "api_server_test_nodes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), "_apinodes.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def node_registry():
    from comfyui.nodes.registry import NodeRegistry

    registry = NodeRegistry.with_builtins()
    registry.register_module(_load_testnodes(), "custom_nodes.apitest")
    return registry


@pytest.fixture
async def make_api(workspace, node_registry):
    """``await make_api(settings=ApiSettings(...), start_engine=True, **config)`` -> :class:`Api`."""
    from comfyui import runtime
    from comfyui.api_server.app import create_api_app
    from comfyui.api_server.settings import ApiSettings
    from comfyui.config import Config
    from comfyui.engine.engine import Engine

    made = []
    previous = runtime.make_default(None)

    async def make(settings: ApiSettings | None = None, start_engine: bool = True, **overrides) -> Api:
        overrides.setdefault("base_directory", str(workspace))
        overrides.setdefault("create_directories", True)
        config = Config(**overrides)
        rt = runtime.Runtime(config)
        runtime.make_default(rt)
        engine = Engine.from_config(config, registry=node_registry, runtime=rt)
        if start_engine:
            engine.start()
        app = create_api_app(engine, config, settings or ApiSettings())
        client = TestClient(TestServer(app))
        await client.start_server()
        made.append((client, engine))
        return Api(client, engine, workspace, app)

    yield make
    for client, engine in made:
        await client.close()
        engine.stop(timeout=5)
    runtime.make_default(previous)


@pytest.fixture
async def api(make_api) -> Api:
    return await make_api()
