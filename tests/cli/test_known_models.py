"""Known models: the shipped table is what scripts/build_known_models.py builds from the installed
templates and the tutorials; a prompt that names a known model that is missing downloads it
(from a local Hugging Face Hub, tests/fake_hub.py) before its loader runs and then runs;
``--disable-known-models`` refuses the same prompt with a validation error naming the file; the
loaders list known-but-missing files unless that flag is given."""
from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from fake_hub import Blob, FakeHub

ROOT = Path(__file__).resolve().parents[2]
SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
SD15_REPO = "Comfy-Org/stable-diffusion-v1-5-archive"


def decode_prompt(ckpt: str) -> dict:
    return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 16, "height": 16, "batch_size": 1}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "known"}}}


def test_shipped_table_is_the_generators_output():
    pytest.importorskip("comfyui_workflow_templates_json", reason="pip install comfyui-workflow-templates-json (a dependency)")
    spec = importlib.util.spec_from_file_location("build_known_models", ROOT / "scripts" / "build_known_models.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    table = builder.build()
    assert builder.render(table) == (ROOT / "src" / "comfyui" / "data" / "known_models.json").read_text("utf-8")
    by_name = {(row["directory"], row["name"]): row for row in table}
    # the tutorials' and the Flux templates' files are in it, with their sources
    assert by_name[("checkpoints", SD15)]["url"] == f"https://huggingface.co/{SD15_REPO}/resolve/main/{SD15}"
    assert by_name[("vae", "ae.safetensors")]["url"].startswith("https://huggingface.co/")
    assert by_name[("checkpoints", "dreamshaper_8.safetensors")]["url"].startswith("https://civitai.com/api/download/")
    assert len(table) > 300


def ckpt_choices(client) -> list[str]:
    with client.engine.runtime.active():  # as the server's handlers see it
        return client.engine.registry.object_info()["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield server
    server.close()


def test_prompt_downloads_a_missing_known_model_then_runs(tmp_path, hub):
    from models import fixtures as fx

    from comfyui import Comfy
    from comfyui.config import Config

    ckpt = fx.make_sd1_checkpoint(str(tmp_path / "served.safetensors"))
    data = Path(ckpt).read_bytes()
    hub.repos[SD15_REPO] = {SD15: Blob(data)}

    async def go():
        async with Comfy(Config(base_directory=str(tmp_path / "ws"))) as client:
            choices = ckpt_choices(client)
            events = [ev async for ev in client.queue_with_progress(decode_prompt(SD15))]
            return choices, events

    choices, events = asyncio.run(go())
    assert SD15 in choices  # offered before it is on disk
    outputs = events[-1].data["outputs"]
    # the download is the loader node's progress in the UI, up to the file's size
    progress = [(ev.data["value"], ev.data["max"]) for ev in events if ev.event == "progress" and ev.data["node"] == "1"]
    assert progress and progress[-1] == (len(data), len(data))
    target = tmp_path / "ws" / "models" / "checkpoints" / SD15
    assert target.read_bytes() == data
    assert Path(outputs["4"]["images"][0]["abs_path"]).is_file()
    assert ("HEAD", f"/{SD15_REPO}/resolve/main/{SD15}", None) in hub.requests


def test_disable_known_models_refuses_the_prompt_naming_the_file(tmp_path, hub):
    from comfyui import Comfy
    from comfyui.config import Config
    from comfyui.engine.validation import PromptError

    hub.repos[SD15_REPO] = {SD15: Blob(b"never fetched")}

    async def go():
        async with Comfy(Config(base_directory=str(tmp_path / "ws"), disable_known_models=True)) as client:
            choices = ckpt_choices(client)
            with pytest.raises(PromptError) as info:
                await client.queue_prompt(decode_prompt(SD15))
            return choices, info.value

    choices, error = asyncio.run(go())
    assert SD15 not in choices
    errors = error.node_errors["1"]["errors"]
    assert errors[0]["type"] == "value_not_in_list"
    assert SD15 in errors[0]["details"] and "ckpt_name" in errors[0]["details"]
    assert hub.requests == []
    assert not (tmp_path / "ws" / "models" / "checkpoints" / SD15).exists()
    json.dumps(error.node_errors)  # the server's 400 body
