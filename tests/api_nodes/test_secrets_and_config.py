"""The login never lands anywhere (database, logs, history, WebSocket); API nodes over plain
HTTP from another machine are refused; --disable-api-nodes; price badges in /object_info."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from unittest import mock

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from apinode_helpers import TOKEN, with_preview

PROMPT = with_preview({"class_type": "FluxProImageNode",
                       "inputs": {"prompt": "a cat", "prompt_upsampling": False, "width": 512, "height": 512, "seed": 3}})
API_NODE_COUNT = 22


@pytest.fixture
async def http_server(workspace, contract, tmp_path):
    """The real server (durable SQLite job store) whose API nodes call the contract server."""
    from comfyui import runtime
    from comfyui.config import Config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import create_app, runner_options

    config = Config(base_directory=str(workspace), create_directories=True, comfy_api_base=contract.url,
                    database_url=f"sqlite:///{tmp_path / 'jobs.db'}")
    previous = runtime.make_default(None)
    rt = runtime.Runtime(config)
    runtime.make_default(rt)
    engine = Engine.from_config(config, custom_nodes=False, runtime=rt)
    engine.start()
    server = TestServer(create_app(engine, config))
    await server.start_server(**runner_options(config))
    client = TestClient(server)
    await client.start_server()
    yield client, engine
    await client.close()
    engine.stop(timeout=5)
    runtime.make_default(previous)


async def test_token_is_stored_and_shown_nowhere(http_server, contract, tmp_path, workspace, caplog):
    client, engine = http_server
    caplog.set_level(logging.DEBUG)
    ws = await client.ws_connect("/ws?clientId=secret-test")
    body = {"prompt": PROMPT, "client_id": "secret-test",
            "extra_data": {"auth_token_comfy_org": TOKEN, "extra_pnginfo": {"workflow": {}}}}
    resp = await client.post("/api/prompt", json=body)
    assert resp.status == 200, await resp.text()
    prompt_id = (await resp.json())["prompt_id"]
    ws_traffic = []
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type != WSMsgType.TEXT:
            continue
        ws_traffic.append(msg.data)
        data = json.loads(msg.data)
        if data["type"] == "executing" and data["data"]["node"] is None and data["data"].get("prompt_id") == prompt_id:
            break
    await ws.close()
    # the token did its job: the proxy received it
    assert contract.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert any('"progress"' in m for m in ws_traffic)

    seen = {"websocket": "\n".join(ws_traffic), "logs": caplog.text}
    for path in ("/api/history", f"/api/history/{prompt_id}", "/api/queue", f"/api/jobs/{prompt_id}", "/api/jobs"):
        seen[path] = await (await client.get(path)).text()
    assert prompt_id in seen[f"/api/history/{prompt_id}"]
    for root, _, files in os.walk(tmp_path):  # the job database and every file the server wrote
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                seen[os.path.join(root, name)] = f.read().decode("latin-1")
    assert any(p.endswith("jobs.db") for p in seen)
    leaks = [where for where, text in seen.items() if TOKEN in text]
    assert leaks == []


def _request_from(peer: str):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (peer, 50000) if key == "peername" else default
    return make_mocked_request("POST", "/prompt", transport=transport)


async def test_api_nodes_need_loopback_or_https(http_server):
    """The rule POST /prompt and POST /api/v1/prompts apply (the clients here are all on loopback,
    so the remote address is set on a mocked request; the loopback case runs for real above)."""
    client, engine = http_server
    from comfyui.server.routes_prompt import api_nodes_refusal

    registry = engine.registry
    refusal = api_nodes_refusal(_request_from("192.168.1.20"), PROMPT, registry)
    assert refusal is not None and refusal.status == 400
    assert refusal.error["type"] == "api_nodes_need_secure_context"
    assert refusal.node_errors["1"]["class_type"] == "FluxProImageNode" and "2" not in refusal.node_errors
    text_only = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}
    assert api_nodes_refusal(_request_from("192.168.1.20"), text_only, registry) is None
    assert api_nodes_refusal(_request_from("127.0.0.1"), PROMPT, registry) is None
    assert api_nodes_refusal(_request_from("::1"), PROMPT, registry) is None


async def test_price_badges_in_object_info(http_server):
    client, _ = http_server
    info = await (await client.get("/api/object_info")).json()
    api = {name: node for name, node in info.items() if node.get("api_node")}
    assert len(api) == API_NODE_COUNT - 1  # LumaReferenceNode is a helper of the group, not a paid call
    for name, node in api.items():
        assert node["category"].startswith("api node/image/"), name
        assert node["price_badge"]["engine"] == "jsonata" and node["price_badge"]["expr"], name
        assert node["input"]["hidden"]["auth_token_comfy_org"] == ["AUTH_TOKEN_COMFY_ORG"]
        assert node["input"]["hidden"]["api_key_comfy_org"] == ["API_KEY_COMFY_ORG"]
    badge = api["OpenAIDalle3"]["price_badge"]
    assert badge["depends_on"]["widgets"] == [{"name": "size", "type": "COMBO"}, {"name": "quality", "type": "COMBO"}]
    assert json.loads(api["FluxProUltraImageNode"]["price_badge"]["expr"]) == {"type": "usd", "usd": 0.06}


def test_disable_api_nodes_removes_them(workspace):
    from comfyui import runtime
    from comfyui.config import load_config
    from comfyui.engine.engine import Engine

    config = load_config(["--disable-api-nodes", "--base-directory", str(workspace)], env={})
    assert config.disable_api_nodes
    engine = Engine.from_config(config, custom_nodes=False, runtime=runtime.Runtime(config))
    assert not [n for n in engine.registry.nodes.values() if n.api_node]
    assert "LumaReferenceNode" not in engine.registry
    assert "PreviewImage" in engine.registry
    config = load_config(["--comfy-api-base", "http://127.0.0.1:9/", "--api-node-keys", "/k.json"], env={})
    assert (config.comfy_api_base, config.api_node_keys) == ("http://127.0.0.1:9/", "/k.json")


def test_api_nodes_load_without_torch():
    code = ("import json, sys\nfrom comfyui.nodes.registry import NodeRegistry\nr = NodeRegistry()\n"
            "r.load_api_nodes()\nr.object_info()\nprint(json.dumps([len(r.nodes), 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [API_NODE_COUNT, False]
