"""The embedded client: ``from comfyui import Comfy`` runs the real engine in-process."""
import asyncio
import json
import pathlib
import threading

import pytest
from PIL import Image

FIXTURES = pathlib.Path(__file__).parent.parent / "workflows" / "fixtures"

def engine_threads():
    return [t for t in threading.enumerate() if t.name == "comfyui-engine" and t.is_alive()]


async def test_queue_prompt_returns_absolute_paths_and_stops_on_exit(ws, image_prompt):
    from comfyui import Comfy

    before = len(engine_threads())
    async with Comfy(base_directory=str(ws)) as client:
        assert len(engine_threads()) == before + 1
        outputs = await client.queue_prompt(image_prompt)
        engine = client.engine
    image = outputs["2"]["images"][0]
    path = pathlib.Path(image["abs_path"])
    assert path.is_absolute() and path == ws / "output" / "emb" / image["filename"] and path.is_file()
    with Image.open(path) as im:
        assert im.convert("RGB").getpixel((0, 0)) == (0, 255, 0)
        assert json.loads(im.text["prompt"]) == image_prompt
    # the engine thread is gone and the client refuses to work outside the context
    assert len(engine_threads()) == before
    assert engine._thread is None
    with pytest.raises(RuntimeError):
        client.engine


async def test_ui_workflows_and_request_bodies_are_accepted(ws, image_prompt):
    from comfyui import Comfy

    workflow = json.loads((FIXTURES / "builtin_ui_0.4.json").read_text())
    async with Comfy(base_directory=str(ws)) as client:
        outputs = await client.queue_prompt(workflow)
        assert outputs["7"] == {"text": ["Hello, world"]}
        with Image.open(outputs["3"]["images"][0]["abs_path"]) as im:
            assert json.loads(im.text["workflow"]) == workflow  # extra_pnginfo.workflow is set for UI input
        body = {"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "via body"}},
                           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}},
                "extra_data": {"extra_pnginfo": {"note": 1}}}
        assert (await client.queue_prompt(body))["2"]["text"] == ["via body"]
        assert (await client.queue_prompt(json.dumps(body)))["2"]["text"] == ["via body"]


async def test_queue_with_progress_streams_progress_previews_then_result(ws, image_prompt):
    from comfyui import Comfy

    prompt = {"1": {"class_type": "SlowSteps", "inputs": {"steps": 3, "delay": 0.0}}}
    async with Comfy(base_directory=str(ws)) as client:
        events = [ev async for ev in client.queue_with_progress(prompt)]
        names = [ev.event for ev in events]
        assert names[0] == "execution_start"
        assert names[-1] == "result" and names.count("result") == 1
        assert names.index("execution_start") < names.index("progress") < names.index("execution_success")
        progress = [ev.data for ev in events if ev.event == "progress"]
        assert [(p["value"], p["max"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
        assert all(p["node"] == "1" for p in progress)
        previews = [ev.data for ev in events if ev.event == "preview_image"]
        assert len(previews) == 3 and isinstance(previews[0]["image"], Image.Image)
        assert previews[0]["metadata"]["node_id"] == "1"
        assert events[-1].data["outputs"] == {"1": {"text": ["did 3"]}}
        executing = [ev.data["node"] for ev in events if ev.event == "executing"]
        assert executing[0] == "1"

        # the same task can be awaited instead of iterated
        task = client.queue_with_progress({"1": {"class_type": "SlowSteps", "inputs": {"steps": 2, "delay": 0.0}}})
        assert await task == {"1": {"text": ["did 2"]}}


async def test_errors(ws, image_prompt):
    from comfyui import Comfy
    from comfyui.client.common import ExecutionError, PromptInterrupted
    from comfyui.engine.engine import PromptError

    async with Comfy(base_directory=str(ws)) as client:
        with pytest.raises(PromptError) as invalid:
            await client.queue_prompt({"1": {"class_type": "SlowSteps", "inputs": {"steps": 0, "delay": 0.0}}})
        assert "1" in invalid.value.node_errors

        with pytest.raises(ExecutionError) as failed:
            await client.queue_prompt({"1": {"class_type": "Explode", "inputs": {"message": "kaput"}}})
        assert failed.value.data["node_id"] == "1" and failed.value.data["node_type"] == "Explode"
        assert "kaput" in str(failed.value)

        seen = []
        with pytest.raises(ExecutionError):
            async for ev in client.queue_with_progress({"1": {"class_type": "Explode", "inputs": {"message": "again"}}}):
                seen.append(ev.event)
        assert "execution_error" in seen and "result" not in seen

        # interrupt while it runs: the stream ends with PromptInterrupted
        slow = {"1": {"class_type": "SlowSteps", "inputs": {"steps": 500, "delay": 0.01}}}
        with pytest.raises(PromptInterrupted):
            async for ev in client.queue_with_progress(slow):
                if ev.event == "progress":
                    client.interrupt()
        # the engine still works afterwards
        assert (await client.queue_prompt(image_prompt))["2"]["images"]


async def test_config_overrides(ws, image_prompt):
    from comfyui import Comfy

    with pytest.raises(TypeError):
        async with Comfy(base_directory=str(ws), no_such_option=1):
            pass
    async with Comfy(base_directory=str(ws), output_directory=str(ws / "elsewhere")) as client:
        assert client.config.output_directory == str(ws / "elsewhere")
        outputs = await client.queue_prompt(image_prompt)
        assert pathlib.Path(outputs["2"]["images"][0]["abs_path"]).is_relative_to(ws / "elsewhere")


async def test_settings_reach_the_nodes(ws, image_prompt):
    """--disable-metadata (a setting nodes read through comfy.cli_args) reaches this client's
    nodes and nobody else: the embedding process's own settings do not change."""
    from comfyui import Comfy, config

    async with Comfy(base_directory=str(ws), disable_metadata=True) as client:
        assert client.engine.runtime.config.disable_metadata is True
        assert config.current().disable_metadata is False
        outputs = await client.queue_prompt(image_prompt)
    assert config.current().disable_metadata is False
    with Image.open(outputs["2"]["images"][0]["abs_path"]) as im:
        assert "prompt" not in im.info


async def test_concurrent_prompts_on_one_client(ws, image_prompt):
    from comfyui import Comfy

    async with Comfy(base_directory=str(ws)) as client:
        prompts = [{"1": {"class_type": "PrimitiveString", "inputs": {"value": f"v{i}"}},
                    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}} for i in range(5)]
        results = await asyncio.gather(*(client.queue_prompt(p) for p in prompts))
        assert [r["2"]["text"] for r in results] == [[f"v{i}"] for i in range(5)]


async def test_an_engine_handed_in_stays_running(ws, image_prompt):
    from comfyui import Comfy
    from comfyui.client.embedded import build_config, build_engine

    engine = build_engine(build_config(base_directory=str(ws)))
    try:
        async with Comfy(engine=engine) as client:
            assert (await client.queue_prompt(image_prompt))["2"]["images"][0]["abs_path"].startswith(str(ws))
        assert engine._thread is not None and engine._thread.is_alive()
        async with Comfy(engine=engine) as client:  # and can be driven again
            assert (await client.queue_prompt(image_prompt))["2"]["images"]
    finally:
        engine.stop()
