"""Fixtures for the server tests: a real Engine (built-in nodes + a small test pack) behind a
real aiohttp server on a free port, plus WebSocket helpers."""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

_HERE = os.path.dirname(__file__)


def _load_testnodes():
    name = "servertest_nodes"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(_HERE, "_testnodes.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def node_registry():
    from comfyui.nodes.registry import NodeRegistry

    registry = NodeRegistry.with_builtins()
    registry.register_module(_load_testnodes(), "custom_nodes.servertest")
    return registry


from server_helpers import Srv  # noqa: E402


@pytest.fixture
async def make_server(workspace, node_registry):
    """``await make_server(start_engine=True, **config)`` -> :class:`Srv`."""
    from comfyui import runtime
    from comfyui.config import Config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import create_app, runner_options

    made: list[tuple[TestClient, Any]] = []
    previous = runtime.make_default(None)

    async def make(start_engine: bool = True, **overrides) -> Srv:
        overrides.setdefault("base_directory", str(workspace))
        overrides.setdefault("create_directories", True)
        config = Config(**overrides)
        # as the comfyui command does: the engine's runtime is the process default, so the
        # test's own paths/config calls see the server's folders
        rt = runtime.Runtime(config)
        runtime.make_default(rt)
        engine = Engine.from_config(config, registry=node_registry, runtime=rt)
        if start_engine:
            engine.start()
        app = create_app(engine, config)
        test_server = TestServer(app)
        await test_server.start_server(**runner_options(config))  # the real server's settings
        client = TestClient(test_server)
        await client.start_server()
        made.append((client, engine))
        return Srv(client, engine)

    yield make
    for client, engine in made:
        await client.close()
        engine.stop(timeout=5)
    runtime.make_default(previous)


@pytest.fixture
async def server(make_server) -> Srv:
    return await make_server()
