"""Every basic and ControlNet tutorial example (examples/tutorials) runs end to end on tiny
random-weight files placed under the names the tutorials tell users to download, with the
same nodes and wiring; the UI workflow converts to the same prompt as the API file."""
from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui import runtime
from comfyui.models import memory

from models import fixtures as fx
from controlnet.cn_fixtures import sd15_shaped_state_dict, write_controlnet, write_t2i_adapter
from upscale.esrgan_fixtures import write_esrgan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "tutorials")
NAMES = sorted(os.path.basename(p)[:-len(".api.json")] for p in glob.glob(os.path.join(EXAMPLES, "*.api.json")))

SD1_TINY = ["v1-5-pruned-emaonly-fp16.safetensors", "dreamshaper_8.safetensors"]
SD15_SHAPED = ["dreamCreationVirtual3DECommerce_v10.safetensors", "architecturerealmix_v11.safetensors",
               "interiordesignsuperm_v2.safetensors", "awpainting_v14.safetensors", "majicmixRealistic_v7.safetensors",
               "japaneseStyleRealistic_v20.safetensors"]

# input images (W, H) of the tests; 1/8 of the tutorials' sizes
INPUTS = {"example.png": (64, 48), "yosemite_inpaint_example.png": (64, 64), "yosemite_outpaint_example.png": (64, 48),
          "upscale_input.png": (24, 20), "scribble_input.png": (40, 64), "depth_input.png": (96, 64),
          "t2i_depth_input.png": (96, 64), "mixing_pose_input.png": (96, 64), "mixing_scribble_input.png": (96, 64),
          "pose_input.png": (64, 96)}


def sd2_inpaint_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from comfyui.models.convert import hf_to_open_clip
    sd = fx._prefixed(fx.unet_sd(dict(fx.SD2_UNET, in_channels=9), seed), "model.diffusion_model.")
    sd.update(fx._prefixed(fx.vae_sd(fx.TINY_VAE, seed + 1), "first_stage_model."))
    te = fx.hf_text_model(64, 2, 64, "gelu", seed + 2)
    sd.update(hf_to_open_clip(fx.hf_text_sd(te), "", "cond_stage_model.model."))
    return sd


def _image(path: str, size: tuple[int, int], seed: int, alpha_hole: bool = False) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    if alpha_hole:
        a = np.full((h, w, 1), 255, np.uint8)
        a[h // 4: h // 2, w // 4: w // 2] = 0  # the part to repaint (what the mask editor erases)
        Image.fromarray(np.concatenate([arr, a], axis=2), "RGBA").save(path)
    else:
        Image.fromarray(arr, "RGB").save(path)


@pytest.fixture(scope="module")
def tut(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.models import sd as sdm
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("tutorials")
    paths.configure(base_directory=base, create_directories=True)
    m = os.path.join(base, "models")
    ck = os.path.join(m, "checkpoints")
    first = fx.make_sd1_checkpoint(os.path.join(ck, SD1_TINY[0]))
    for n in SD1_TINY[1:]:
        shutil.copy(first, os.path.join(ck, n))
    first = fx._save(sd15_shaped_state_dict(), os.path.join(ck, SD15_SHAPED[0]))
    for i, n in enumerate(SD15_SHAPED[1:]):
        shutil.copy(first, os.path.join(ck, n))
    fx._save(sd2_inpaint_state_dict(), os.path.join(ck, "512-inpainting-ema.safetensors"))
    fx._save(fx.vae_sd(fx.TINY_VAE, 11), os.path.join(m, "vae", "vae-ft-mse-840000-ema-pruned.safetensors"))
    fx.make_lora(os.path.join(m, "loras", "blindbox_V1Mix.safetensors"), form="kohya", seed=5)
    fx.make_lora(os.path.join(m, "loras", "MoXinV1.safetensors"), form="kohya", seed=6)
    cn = os.path.join(m, "controlnet")
    write_controlnet(os.path.join(cn, "control_v11p_sd15_scribble_fp16.safetensors"), seed=1)
    write_controlnet(os.path.join(cn, "control_v11p_sd15_openpose_fp16.safetensors"), seed=2)
    write_controlnet(os.path.join(cn, "control_v11f1p_sd15_depth_fp16.safetensors"), seed=3)
    write_t2i_adapter(os.path.join(cn, "t2iadapter_depth_sd15v2.pth"), seed=4)
    write_esrgan(os.path.join(m, "upscale_models", "4x-ESRGAN.pth"), layout="old")
    for i, (name, size) in enumerate(INPUTS.items()):
        _image(os.path.join(base, "input", name), size, i, alpha_hole="inpaint" in name)
    paths.invalidate_cache()
    registry = NodeRegistry.with_builtins()
    engine = Engine(registry)
    engine.start()
    yield {"base": str(base), "engine": engine, "object_info": registry.object_info()}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def load(name: str) -> tuple[dict, dict]:
    with open(os.path.join(EXAMPLES, f"{name}.api.json")) as f:
        api = json.load(f)
    with open(os.path.join(EXAMPLES, f"{name}.workflow.json")) as f:
        ui = json.load(f)
    return api, ui


def shrink(prompt: dict, prefix: str) -> dict:
    """Test-sized run of a tutorial prompt: 1/8 of the sizes, 2 steps; the wiring is untouched."""
    p = json.loads(json.dumps(prompt))
    for node in p.values():
        i = node["inputs"]
        if node["class_type"] in ("EmptyLatentImage", "LatentUpscale"):
            i["width"] //= 8
            i["height"] //= 8
        if node["class_type"] == "ImagePadForOutpaint":
            for k in ("left", "top", "right", "bottom"):
                i[k] //= 8
        if node["class_type"] == "KSampler":
            i["steps"] = 2
        if node["class_type"] == "SaveImage":
            i["filename_prefix"] = prefix
    return p


def run(tut, prompt: dict) -> dict:
    eng = tut["engine"]
    sub = eng.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = eng.wait(sub.prompt_id).result(300)
    assert h["status"]["status_str"] == "success", h["status"]
    return h["outputs"]


def saved(tut, outputs: dict, node: str) -> list[np.ndarray]:
    out = []
    for im in outputs[node]["images"]:
        d = {"output": "output", "temp": "temp"}[im["type"]]
        with Image.open(os.path.join(tut["base"], d, im["subfolder"], im["filename"])) as f:
            out.append(np.asarray(f.convert("RGB")))
    return out


# (save node, expected (W, H) of each saved image, batch)
EXPECT = {
    "text_to_image": ("9", (64, 64), 1),
    "image_to_image": ("9", INPUTS["example.png"], 1),
    "inpaint": ("9", INPUTS["yosemite_inpaint_example.png"], 1),
    "outpaint": ("9", (64, 48 + 16 + 16), 1),
    "upscale": ("4", (24 * 4, 20 * 4), 1),
    "upscale_txt2img": ("9", (256, 256), 1),
    "lora": ("9", (64, 96), 1),
    "multiple_loras": ("9", (64, 96), 1),
    "controlnet": ("9", (64, 96), 1),
    "depth_controlnet": ("9", (96, 64), 1),
    "depth_t2i_adapter": ("9", (96, 64), 1),
    "mixing_controlnets": ("9", (96, 64), 1),
    "pose_controlnet_2_pass": ("9", (96, 144), 1),
}


def test_every_tutorial_has_an_example():
    assert set(NAMES) == set(EXPECT)
    docs = "/work/shared/seeds/docs/tutorials"
    with open(os.path.join(EXAMPLES, "index.json")) as f:
        index = {e["name"]: e for e in json.load(f)}
    tutorials = {e["tutorial"] for e in index.values()}
    if os.path.isdir(docs):
        on_disk = {f"{g}/{os.path.basename(p)}" for g in ("basic", "controlnet")
                   for p in glob.glob(os.path.join(docs, g, "*.md"))}
        assert on_disk <= tutorials, on_disk - tutorials


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_converts_to_the_api_prompt(tut, name):
    from comfyui.workflows.convert import convert_ui_to_api
    api, ui = load(name)
    conv = convert_ui_to_api(ui, tut["object_info"])
    assert {k: (v["class_type"], v["inputs"]) for k, v in conv.items()} == \
        {k: (v["class_type"], v["inputs"]) for k, v in api.items()}


@pytest.mark.parametrize("name", NAMES)
def test_tutorial_runs_end_to_end(tut, name):
    api, _ = load(name)
    outputs = run(tut, shrink(api, name))
    node, (w, h), batch = EXPECT[name]
    images = saved(tut, outputs, node)
    assert len(images) == batch
    for im in images:
        assert im.shape == (h, w, 3)
        assert im.std() > 0  # not a blank image
    if name == "pose_controlnet_2_pass":  # the first pass is previewed at the pass-1 size
        (prev,) = saved(tut, outputs, "10")
        assert prev.shape == (96, 64, 3)


@pytest.mark.parametrize("name,apply_nodes", [("controlnet", ["13"]), ("depth_t2i_adapter", ["13"]),
                                              ("mixing_controlnets", ["13", "16"])])
def test_control_reaches_the_unet(tut, name, apply_nodes):
    """Same seed, with and without the ControlNets (strength 0 returns the conditioning as is)."""
    api, _ = load(name)
    with_cn = saved(tut, run(tut, shrink(api, name + "_on")), "9")[0]
    off = shrink(api, name + "_off")
    for n in apply_nodes:
        off[n]["inputs"]["strength"] = 0.0
    without = saved(tut, run(tut, off), "9")[0]
    assert np.abs(with_cn.astype(int) - without.astype(int)).mean() > 0.5
    if len(apply_nodes) == 2:  # each ControlNet of the chain contributes
        one = shrink(api, name + "_one")
        one[apply_nodes[1]]["inputs"]["strength"] = 0.0
        only_first = saved(tut, run(tut, one), "9")[0]
        assert np.abs(with_cn.astype(int) - only_first.astype(int)).mean() > 0.5
