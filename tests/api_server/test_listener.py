"""--enable-api: the production API is a second listener of the same server process."""
from __future__ import annotations

import asyncio
import socket

import aiohttp

from api_helpers import image_prompt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_starts_the_api_listener_next_to_the_main_one(workspace, node_registry):
    from comfyui import runtime
    from comfyui.config import Config, load_config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import serve

    assert load_config(["--enable-api", "--api-port", "3100"], env={}).api_port == 3100
    assert load_config([], env={"COMFYUI_ENABLE_API": "1"}).enable_api is True
    assert load_config([], env={}).enable_api is False

    port, api_port = _free_port(), _free_port()
    config = Config(base_directory=str(workspace), create_directories=True, port=port, enable_api=True,
                    api_port=api_port, dont_print_server=True)
    rt = runtime.Runtime(config)
    engine = Engine.from_config(config, registry=node_registry, runtime=rt)
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(config, engine, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with aiohttp.ClientSession() as http:
            api = f"http://127.0.0.1:{api_port}"
            for _ in range(100):
                async with http.get(api + "/ready") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert r.status == 200
            async with http.post(api + "/prompt", json={"id": "both", "prompt": image_prompt()}) as r:
                assert r.status == 200
                body = await r.json()
            async with http.get(f"http://127.0.0.1:{port}/history") as r:
                history = await r.json()
            assert [h["prompt"][3]["api_request_id"] for h in history.values()] == ["both"]
            assert body["filenames"][0].startswith("both_")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        engine.stop(timeout=5)


async def test_api_port_in_use_fails_the_start(workspace, node_registry):
    from comfyui import runtime
    from comfyui.config import Config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = Config(base_directory=str(workspace), create_directories=True, port=_free_port(), enable_api=True,
                        api_port=taken.getsockname()[1], dont_print_server=True)
        engine = Engine.from_config(config, registry=node_registry, runtime=runtime.Runtime(config))
        assert await asyncio.wait_for(serve(config, engine), 30) == 1
