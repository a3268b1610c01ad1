"""The Lumina Image 2.0 / NetaYume examples (examples/lumina2/*.api.json) run end to end through
the engine on tiny random-weight files with the names they ask for
(:func:`lumina2_fixtures.write_lumina2_files`), at test size: 64x48 latents' images, 2 steps."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

from comfyui.models import memory

from . import lumina2_fixtures as lf

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "lumina2")
NAMES = sorted(os.path.basename(p)[:-len(".api.json")] for p in glob.glob(os.path.join(EXAMPLES, "*.api.json")))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui import runtime
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("lumina2")
    paths.configure(base_directory=base, create_directories=True)
    lf.write_lumina2_files(os.path.join(base, "models"))
    paths.invalidate_cache()
    registry = NodeRegistry.with_builtins()
    engine = Engine(registry)
    engine.start()
    yield {"base": str(base), "engine": engine, "object_info": registry.object_info()}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def test_the_examples_are_there():
    assert NAMES == ["lumina2_checkpoint", "lumina2_text_to_image", "netayume_lumina"]


def test_netayume_example_is_the_official_template_converted(env):
    from comfyui.workflows.convert import convert_ui_to_api
    with open(os.path.join(EXAMPLES, "netayume_lumina.workflow.json"), encoding="utf-8") as f:
        workflow = json.load(f)
    with open(os.path.join(EXAMPLES, "netayume_lumina.api.json"), encoding="utf-8") as f:
        api = json.load(f)
    assert convert_ui_to_api(workflow, env["object_info"]) == api
    import importlib.resources
    package = pytest.importorskip("comfyui_workflow_templates_json")
    shipped = importlib.resources.files(package) / "templates" / "image_netayume_lumina_t2i.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == workflow

@pytest.mark.parametrize("name", NAMES)
def test_example_runs_end_to_end(env, name):
    with open(os.path.join(EXAMPLES, f"{name}.api.json"), encoding="utf-8") as f:
        prompt = json.load(f)
    for node in prompt.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"]["width"], node["inputs"]["height"] = 64, 48
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 2
    engine = env["engine"]
    submitted = engine.submit(prompt)
    assert submitted.node_errors == {}, submitted.node_errors
    history = engine.wait(submitted.prompt_id).result(300)
    assert history["status"]["status_str"] == "success", history["status"]
    (save,) = [k for k, v in prompt.items() if v["class_type"] == "SaveImage"]
    (image,) = history["outputs"][save]["images"]
    with Image.open(os.path.join(env["base"], "output", image["subfolder"], image["filename"])) as f:
        pixels = np.asarray(f.convert("RGB"))
    assert pixels.shape == (48, 64, 3) and pixels.std() > 0


def test_system_prompt_choice_changes_the_image(env):
    """CLIPTextEncodeLumina2's system prompt reaches the model: "superior" and "alignment"
    give different images from the same seed."""
    with open(os.path.join(EXAMPLES, "lumina2_text_to_image.api.json"), encoding="utf-8") as f:
        base = json.load(f)
    images = []
    for choice in ("superior", "alignment"):
        p = json.loads(json.dumps(base))
        p["5"]["inputs"]["system_prompt"] = choice
        p["7"]["inputs"].update(width=64, height=48)
        p["8"]["inputs"]["steps"] = 2
        p["10"]["inputs"]["filename_prefix"] = f"system_{choice}"
        sub = env["engine"].submit(p)
        h = env["engine"].wait(sub.prompt_id).result(300)
        (image,) = h["outputs"]["10"]["images"]
        with Image.open(os.path.join(env["base"], "output", image["subfolder"], image["filename"])) as f:
            images.append(np.asarray(f.convert("RGB")).astype(int))
    assert np.abs(images[0] - images[1]).max() > 0
