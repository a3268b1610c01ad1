"""The Flux examples (examples/flux/*.api.json, the Flux templates and tutorials in API form)
run end to end through the engine on tiny random-weight files with the names they ask for,
written in the real layouts by :func:`flux_fixtures.write_flux_files`."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui import runtime
from comfyui.models import memory

from . import flux_fixtures as fx

pytest.importorskip("diffusers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "flux")
NAMES = sorted(os.path.basename(p)[:-len(".api.json")] for p in glob.glob(os.path.join(EXAMPLES, "*.api.json")))
INPUTS = {"yosemite_inpaint_example.png": (64, 48), "robot.png": (48, 64)}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.models import sd as sdm
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("flux")
    paths.configure(base_directory=base, create_directories=True)
    fx.write_flux_files(os.path.join(base, "models"))
    rng = np.random.default_rng(0)
    for name, (w, h) in INPUTS.items():
        rgba = (rng.random((h, w, 4)) * 255).astype(np.uint8)
        rgba[..., 3] = 255
        rgba[h // 4:h // 2, w // 4:w // 2, 3] = 0  # the hole to fill (mask = 1 - alpha)
        Image.fromarray(rgba, "RGBA").save(os.path.join(base, "input", name))
    paths.invalidate_cache()
    engine = Engine(NodeRegistry.with_builtins())
    engine.start()
    yield {"base": str(base), "engine": engine}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def shrink(prompt: dict) -> dict:
    """Test size: 1/8 of the image sizes, 2 steps; FluxKontextImageScale's ~1 megapixel result
    is scaled down by 8 after it (the only added node)."""
    p = json.loads(json.dumps(prompt))
    for node_id, node in list(p.items()):
        i = node["inputs"]
        if node["class_type"] == "EmptySD3LatentImage":
            i["width"] //= 8
            i["height"] //= 8
        if node["class_type"] in ("KSampler", "BasicScheduler"):
            i["steps"] = 2
        if node["class_type"] == "FluxKontextImageScale":
            small = f"{node_id}_small"
            p[small] = {"class_type": "ImageScaleBy", "inputs": {"image": [node_id, 0], "upscale_method": "bilinear",
                                                                  "scale_by": 0.125}}
            for other in p.values():
                for k, v in other["inputs"].items():
                    if v == [node_id, 0] and other is not p[small]:
                        other["inputs"][k] = [small, 0]
    return p


def run(env, prompt: dict) -> list[np.ndarray]:
    eng = env["engine"]
    sub = eng.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = eng.wait(sub.prompt_id).result(300)
    assert h["status"]["status_str"] == "success", h["status"]
    (save,) = [n for n, v in prompt.items() if v["class_type"] == "SaveImage"]
    out = []
    for im in h["outputs"][save]["images"]:
        with Image.open(os.path.join(env["base"], "output", im["subfolder"], im["filename"])) as f:
            out.append(np.asarray(f.convert("RGB")))
    return out


EXPECT = {  # (W, H) of the saved image at test size
    "flux_dev_text_to_image": (128, 128), "flux_dev_checkpoint": (128, 128), "flux_schnell": (128, 128),
    "flux_dev_custom_sampler": (128, 128), "flux_fill_inpaint": INPUTS["yosemite_inpaint_example.png"],
    "flux_canny": INPUTS["robot.png"], "flux_depth_lora": INPUTS["robot.png"], "flux_kontext": (104, 144),  # 880x1184 scaled by 1/8, cropped to multiples of 8
}


def test_every_example_is_covered():
    assert set(NAMES) == set(EXPECT)


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_end_to_end(env, name):
    with open(os.path.join(EXAMPLES, f"{name}.api.json")) as f:
        prompt = shrink(json.load(f))
    (image,) = run(env, prompt)
    w, h = EXPECT[name]
    assert image.shape == (h, w, 3) and image.std() > 0


def test_guidance_reaches_the_model(env):
    """FluxGuidance's value changes a dev image (the guidance embedding is used) and leaves a
    schnell one as it is (no guidance embedding)."""
    with open(os.path.join(EXAMPLES, "flux_dev_text_to_image.api.json")) as f:
        base = shrink(json.load(f))
    images = []
    for guidance in (1.0, 8.0):
        p = json.loads(json.dumps(base))
        p["5"]["inputs"]["guidance"] = guidance
        p["10"]["inputs"]["filename_prefix"] = f"guidance_{guidance}"
        images.append(run(env, p)[0].astype(int))
    assert np.abs(images[0] - images[1]).max() > 0
    with open(os.path.join(EXAMPLES, "flux_schnell.api.json")) as f:
        schnell = shrink(json.load(f))
    outs = []
    for guidance in (1.0, 8.0):
        p = json.loads(json.dumps(schnell))
        p["8"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["2", 0], "guidance": guidance}}
        p["5"]["inputs"]["positive"] = ["8", 0]
        p["7"]["inputs"]["filename_prefix"] = f"schnell_{guidance}"
        outs.append(run(env, p)[0])
    assert np.array_equal(outs[0], outs[1])


def test_depth_lora_example_reads_the_depth_image(env):
    """With the depth LoRA the model takes the depth latent as 16 more channels: another depth
    image gives another picture (without it, InstructPixToPix's image would not reach a
    16-channel model and the two would be equal)."""
    with open(os.path.join(EXAMPLES, "flux_depth_lora.api.json")) as f:
        base = shrink(json.load(f))
    with Image.open(os.path.join(env["base"], "input", "robot.png")) as im:
        im.transpose(Image.FLIP_LEFT_RIGHT).save(os.path.join(env["base"], "input", "robot_flipped.png"))
    images = []
    for name in ("robot.png", "robot_flipped.png"):
        p = json.loads(json.dumps(base))
        p["5"]["inputs"]["image"] = name
        p["12"]["inputs"]["filename_prefix"] = f"depth_{name[:-4]}"
        images.append(run(env, p)[0].astype(int))
    assert np.abs(images[0] - images[1]).max() > 0


def test_checkpoint_parts_match_the_split_files(env):
    """The all-in-one fp8 checkpoint gives the same text encoders and VAE as the split files,
    and its diffusion model is the dev file's rounded to fp8."""
    from comfyui import paths
    from comfyui.models import sd as sdm
    model, clip, vae = sdm.load_checkpoint_guess_config(paths.get_full_path("checkpoints", "flux1-dev-fp8.safetensors"))
    assert model.model.family.name == "flux" and clip.clip_type.name == "flux" and vae.latent_channels == 16
    unet = sdm.load_diffusion_model(paths.get_full_path("diffusion_models", "flux1-dev.safetensors"))
    w_ckpt = model.model.diffusion_model.img_in.weight.float()
    w_file = unet.model.diffusion_model.img_in.weight.float()
    torch.testing.assert_close(w_ckpt, w_file.to(torch.float8_e4m3fn).float())
