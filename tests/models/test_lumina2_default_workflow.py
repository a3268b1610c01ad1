"""The workflow the official frontend opens for every new user (Z-Image Turbo: UNETLoader,
CLIPLoader type ``lumina2``, VAELoader, ModelSamplingAuraFlow, EmptySD3LatentImage, KSampler
with ``res_multistep``) runs end to end on tiny random-weight files written under the names it
asks for. The graph is read from the installed frontend package itself and converted to API
format with our converter, so a frontend update that changes it is noticed here."""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from comfyui import runtime
from comfyui.models import memory

from . import lumina2_fixtures as lf

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

_TOKEN = re.compile(r'`[^`]*`|"(?:[^"\\]|\\.)*"|!0|!1|-?\d*\.?\d+(?:e[-+]?\d+)?|[A-Za-z_$][\w$]*|[{}\[\]:,]')


def js_literal_to_json(src: str, start: int):
    """The JavaScript object literal at ``src[start:]`` (as a minifier writes it: bare keys,
    backtick strings, ``!0``/``!1``) read as JSON."""
    out, depth, pos = [], 0, start
    while True:
        m = _TOKEN.match(src, pos)
        if m is None:
            raise ValueError(f"unexpected JavaScript at {src[pos:pos + 40]!r}")
        tok, pos = m.group(), m.end()
        if tok[0] == "`":
            tok = json.dumps(tok[1:-1])
        elif tok in ("!0", "!1"):
            tok = "true" if tok == "!0" else "false"
        elif tok[0] in "-.0123456789" and ("." in tok or "e" in tok):
            tok = json.dumps(float(tok))
        elif tok[0].isalpha() or tok[0] in "_$":
            if src[pos] == ":":
                tok = json.dumps(tok)
            elif tok not in ("true", "false", "null"):
                raise ValueError(f"not a literal: {tok}")
        out.append(tok)
        if tok in ("{", "["):
            depth += 1
        elif tok in ("}", "]"):
            depth -= 1
            if depth == 0:
                return json.loads("".join(out))


def frontend_default_graph() -> dict:
    """``window.comfyAPI.defaultGraph.defaultGraph`` of the installed comfyui-frontend-package."""
    import comfyui_frontend_package
    assets = os.path.join(os.path.dirname(comfyui_frontend_package.__file__), "static", "assets")
    for path in sorted(glob.glob(os.path.join(assets, "*.js"))):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        m = re.search(r"defaultGraph\.defaultGraph=(\w+)", src)
        if m:
            return js_literal_to_json(src, src.index(f"var {m.group(1)}={{") + len(f"var {m.group(1)}="))
    raise LookupError("the frontend package has no default graph")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.models import sd as sdm
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("zimage")
    paths.configure(base_directory=base, create_directories=True)
    files = lf.write_default_workflow_models(os.path.join(base, "models"))
    paths.invalidate_cache()
    registry = NodeRegistry.with_builtins()
    engine = Engine(registry)
    engine.start()
    yield {"base": str(base), "engine": engine, "object_info": registry.object_info(), "files": files}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def test_default_graph_is_z_image_turbo_with_the_fixture_names(default_run):
    graph = frontend_default_graph()
    widgets = {n["type"]: n["widgets_values"] for n in graph["nodes"]}
    names = {folder: os.path.basename(p) for folder, p in default_run["files"].items()}
    assert widgets["UNETLoader"][0] == names["diffusion_models"] == "z_image_turbo_bf16.safetensors"
    assert widgets["CLIPLoader"][:2] == [names["text_encoders"], "lumina2"]
    assert widgets["VAELoader"] == [names["vae"]]
    assert widgets["KSampler"][4] == "res_multistep" and widgets["ModelSamplingAuraFlow"] == [3]


def test_default_workflow_runs_end_to_end(default_run):
    from comfyui.workflows.convert import convert_ui_to_api
    prompt = convert_ui_to_api(frontend_default_graph(), default_run["object_info"])
    by_type = {node["class_type"]: node for node in prompt.values()}
    latent = by_type["EmptySD3LatentImage"]["inputs"]
    assert (latent["width"], latent["height"]) == (1024, 1024)
    latent["width"], latent["height"] = 256, 192  # test-sized; wiring and every other value as shipped
    engine = default_run["engine"]
    submitted = engine.submit(prompt)
    assert submitted.node_errors == {}, submitted.node_errors
    history = engine.wait(submitted.prompt_id).result(300)
    assert history["status"]["status_str"] == "success", history["status"]
    save_id = next(k for k, v in prompt.items() if v["class_type"] == "SaveImage")
    (saved,) = history["outputs"][save_id]["images"]
    with Image.open(os.path.join(default_run["base"], "output", saved["subfolder"], saved["filename"])) as f:
        image = np.asarray(f.convert("RGB"))
    assert image.shape == (192, 256, 3)
    assert image.std() > 0


def test_example_files_are_the_frontends_default_workflow(default_run):
    from comfyui.workflows.convert import convert_ui_to_api
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "zimage_turbo")
    with open(os.path.join(folder, "zimage_turbo.workflow.json"), encoding="utf-8") as f:
        assert json.load(f) == frontend_default_graph()
    with open(os.path.join(folder, "zimage_turbo.api.json"), encoding="utf-8") as f:
        api = json.load(f)
    converted = convert_ui_to_api(frontend_default_graph(), default_run["object_info"])
    assert {k: (v["class_type"], v["inputs"]) for k, v in api.items()} == \
        {k: (v["class_type"], v["inputs"]) for k, v in converted.items()}
