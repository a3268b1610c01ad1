"""Typed workflow endpoints (POST /workflow/<path>) and `comfyui api generate-workflow`."""
from __future__ import annotations

import importlib.util
import json
import os

from api_helpers import decode_image

from comfyui.api_server.settings import ApiSettings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCALE_WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 6, "batch_size": 1, "color": 0x00FF00},
          "_meta": {"title": "Canvas"}},
    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 16,
                                                 "height": 12, "crop": "disabled"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ComfyUI"}},
}


def _generate(tmp_path, prompt, relpath, *extra) -> str:
    """Run the real command; -> the module's path."""
    from comfyui.cli.main import main

    source = tmp_path / "wf.api.json"
    source.write_text(json.dumps(prompt))
    out = tmp_path / "workflows" / relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    assert main(["api", "generate-workflow", str(source), "-o", str(out), "--base-directory",
                 str(tmp_path / "ws"), *extra]) == 0
    return str(out)


def _import(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_module_types_every_widget_and_reproduces_the_workflow(tmp_path):
    with open(os.path.join(REPO, "examples/tutorials/text_to_image.api.json")) as f:
        workflow = json.load(f)
    module = _import(_generate(tmp_path, workflow, "t2i.py", "--summary", "Text to image"), "gen_t2i")
    fields = module.RequestSchema.model_fields
    # the two CLIPTextEncode texts are told apart by node id; links and filename_prefix are not fields
    assert set(fields) == {"ckpt_name", "text_6", "text_7", "width", "height", "batch_size", "seed", "steps",
                           "cfg", "sampler_name", "scheduler", "denoise"}
    schema = module.RequestSchema.model_json_schema()["properties"]
    assert schema["steps"] == {"default": 20, "description": schema["steps"]["description"], "maximum": 10000,
                               "minimum": 1, "title": "Steps", "type": "integer"}
    assert "KSampler.steps" in schema["steps"]["description"] and "denoising" in schema["steps"]["description"]
    assert schema["cfg"]["type"] == "number" and schema["cfg"]["maximum"] == 100.0
    assert "euler" in schema["sampler_name"]["enum"] and "karras" in schema["scheduler"]["enum"]
    assert schema["ckpt_name"]["type"] == "string" and "enum" not in schema["ckpt_name"]  # file names vary
    assert module.summary == "Text to image"
    # with every default the generated function gives back the exported workflow
    assert module.generate_workflow(module.RequestSchema()) == workflow
    changed = module.generate_workflow(module.RequestSchema(text_6="a cat", steps=3))
    assert changed["6"]["inputs"]["text"] == "a cat" and changed["3"]["inputs"]["steps"] == 3


def test_generate_refuses_a_ui_workflow_and_an_existing_file(tmp_path):
    from comfyui.cli.main import main

    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    assert main(["api", "generate-workflow", str(ui), "-o", str(tmp_path / "x.py")]) == 2
    existing = tmp_path / "y.py"
    existing.write_text("keep")
    src = tmp_path / "wf.api.json"
    src.write_text(json.dumps(SCALE_WORKFLOW))
    assert main(["api", "generate-workflow", str(src), "-o", str(existing)]) == 2
    assert existing.read_text() == "keep"


async def test_generated_endpoint_is_mounted_called_and_documented(tmp_path, make_api):
    from openapi_spec_validator import validate

    _generate(tmp_path, SCALE_WORKFLOW, "demo/scale.py")
    (tmp_path / "workflows" / "broken.py").write_text("raise RuntimeError('nope')\n")
    api = await make_api(settings=ApiSettings(workflow_dir=str(tmp_path / "workflows")))

    resp = await api.client.post("/workflow/demo/scale", json={"id": "req-1", "input": {"width_2": 20, "height_2": 10,
                                                                                         "upscale_method": "area"}})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["id"] == "req-1" and decode_image(body["images"][0]).size == (20, 10)
    assert body["filenames"][0].startswith("req-1_")
    # the input as it ran, defaults filled in; the prompt built from it
    assert body["input"] == {"width_1": 8, "height_1": 6, "batch_size": 1, "color": 0x00FF00,
                             "upscale_method": "area", "width_2": 20, "height_2": 10, "crop": "disabled"}
    assert body["prompt"]["2"]["inputs"]["upscale_method"] == "area"

    bad = await api.client.post("/workflow/demo/scale", json={"id": "req-2", "input": {
        "width_2": "wide", "upscale_method": "sharpest", "color": -1, "typo": 1}})
    error = await bad.json()
    assert bad.status == 400 and error["id"] == "req-2"
    assert error["error"]["type"] == "invalid_input"
    locs = {tuple(e["loc"]) for e in error["error"]["extra_info"]["errors"]}
    assert locs == {("input", "width_2"), ("input", "upscale_method"), ("input", "color"), ("input", "typo")}
    assert "input.upscale_method" in error["error"]["details"]
    assert (await api.client.post("/workflow/demo/scale", data=b"[1]")).status == 400
    assert (await api.client.post("/workflow/broken", json={"input": {}})).status == 404  # not mounted

    doc = await (await api.client.get("/openapi.json")).json()
    validate(doc)
    operation = doc["paths"]["/workflow/demo/scale"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "prompt" not in body_schema["properties"] and "webhook" in body_schema["properties"]
    component = doc["components"]["schemas"][body_schema["properties"]["input"]["$ref"].rsplit("/", 1)[1]]
    assert component["properties"]["upscale_method"]["enum"] == ["nearest-exact", "bilinear", "area", "bicubic",
                                                                 "lanczos"]
    assert component["properties"]["color"]["maximum"] == 16777215
    assert component["additionalProperties"] is False


async def test_warmup_checkpoint_is_the_default_model(tmp_path, make_api):
    workflow = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "exported.safetensors"}},
                "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}}}
    _generate(tmp_path, workflow, "ckpt.py")
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps({"1": {"class_type": "CheckpointLoaderSimple",
                                        "inputs": {"ckpt_name": "warm.safetensors"}}}))
    api = await make_api(settings=ApiSettings(workflow_dir=str(tmp_path / "workflows"),
                                              warmup_prompt_file=str(warmup)))
    doc = await (await api.client.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["Workflow_ckpt_Input"]["properties"]["ckpt_name"]["default"] == \
        "warm.safetensors"


def test_workflow_dir_from_the_flag_or_the_seed_variable(tmp_path):
    from comfyui.config import load_config

    assert ApiSettings.from_env(None, {"WORKFLOW_DIR": "/srv/wf"}).workflow_dir == "/srv/wf"
    assert ApiSettings.from_env(None, {}).workflow_dir is None
    config = load_config(["--workflow-dir", str(tmp_path), "--base-directory", str(tmp_path)])
    assert ApiSettings.from_env(config, {"WORKFLOW_DIR": "/srv/wf"}).workflow_dir == str(tmp_path)
