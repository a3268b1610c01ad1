"""LTX-Video text-to-video and image-to-video (the ltxv templates' node graph in API form) end to
end through the engine on tiny random-weight files in the real layouts: an all-in-one
checkpoint (DiT under ``model.diffusion_model.``, VAE under ``vae.`` with its block config in
the safetensors metadata, no text encoder) and a T5-XXL file loaded with CLIPLoader type ltxv;
and the examples (examples/ltxv/*.api.json, the official ltxv templates in API form) at
96x64, 17 frames and 2 steps."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui import runtime
from comfyui.models import memory

from . import ltxv_fixtures as fx
from .flux_fixtures import hf_t5, t5_sd
from .test_ltxv_vae import TINY_090, _tiny

pytest.importorskip("diffusers")
pytest.importorskip("av")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import safetensors.torch
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("ltxv")
    paths.configure(base_directory=base, create_directories=True)
    ckpt = fx.to_native(fx.diffusers_ltxv(seed=11).state_dict(), "model.diffusion_model.")
    ckpt.update({"vae." + k: v for k, v in _tiny(seed=12).state_dict().items()})
    os.makedirs(os.path.join(base, "models", "checkpoints"), exist_ok=True)
    for name in ("ltx-video-2b-v0.9.safetensors", "ltx-video-2b-v0.9.5.safetensors"):   # t2v / i2v examples
        safetensors.torch.save_file({k: v.contiguous() for k, v in ckpt.items()},
                                    os.path.join(base, "models", "checkpoints", name),
                                    metadata={"config": json.dumps({"vae": TINY_090})})
    os.makedirs(os.path.join(base, "models", "text_encoders"), exist_ok=True)
    safetensors.torch.save_file(t5_sd(hf_t5(seed=13)), os.path.join(base, "models", "text_encoders",
                                                                   "t5xxl_fp16.safetensors"))
    rng = np.random.default_rng(0)
    for name in ("start.png", "ltxv_image_to_video_input_image.jpg"):
        Image.fromarray((rng.random((48, 80, 3)) * 255).astype(np.uint8)).save(os.path.join(base, "input", name))
    paths.invalidate_cache()
    engine = Engine(NodeRegistry.with_builtins())
    engine.start()
    yield {"base": str(base), "engine": engine}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def _prompt(image_to_video: bool = False, seed: int = 1) -> dict:
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ltx-video-2b-v0.9.safetensors"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5xxl_fp16.safetensors", "type": "ltxv",
                                                     "device": "default"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a red fox running in snow"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "low quality, blurry"}},
        "5": {"class_type": "LTXVConditioning", "inputs": {"positive": ["3", 0], "negative": ["4", 0],
                                                           "frame_rate": 25.0}},
        "6": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 96, "height": 64, "length": 17,
                                                               "batch_size": 1}},
        "7": {"class_type": "LTXVScheduler", "inputs": {"steps": 3, "max_shift": 2.05, "base_shift": 0.95,
                                                        "stretch": True, "terminal": 0.1, "latent": ["6", 0]}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "SamplerCustom", "inputs": {"model": ["1", 0], "add_noise": True, "noise_seed": seed,
                                                        "cfg": 3.0, "positive": ["5", 0], "negative": ["5", 1],
                                                        "sampler": ["8", 0], "sigmas": ["7", 0],
                                                        "latent_image": ["6", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "CreateVideo", "inputs": {"images": ["10", 0], "fps": 24.0}},
        "12": {"class_type": "SaveVideo", "inputs": {"video": ["11", 0], "filename_prefix": f"video/ltxv_{seed}",
                                                     "format": "auto", "codec": "auto"}},
        "13": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["10", 0], "filename_prefix": f"ltxv_{seed}",
                                                            "fps": 24.0, "lossless": False, "quality": 80,
                                                            "method": "default"}},
    }
    if image_to_video:
        p["14"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
        p["15"] = {"class_type": "LTXVImgToVideo", "inputs": {"positive": ["3", 0], "negative": ["4", 0],
                                                              "vae": ["1", 2], "image": ["14", 0], "width": 96,
                                                              "height": 64, "length": 17, "batch_size": 1,
                                                              "strength": 1.0}}
        p["5"]["inputs"].update(positive=["15", 0], negative=["15", 1])
        p["7"]["inputs"]["latent"] = ["15", 2]
        p["9"]["inputs"]["latent_image"] = ["15", 2]
    return p


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples", "ltxv")


@pytest.mark.parametrize("name", ["ltxv_t2v", "ltxv_i2v"])
def test_example_runs_to_a_video(env, name):
    import av
    prompt = json.load(open(os.path.join(EXAMPLES, name + ".api.json")))
    for node in prompt.values():
        i = node["inputs"]
        if "width" in i and "length" in i:
            i.update(width=96, height=64, length=17)
        if node["class_type"] == "LTXVScheduler":
            i["steps"] = 2
    h = _run(env, prompt)
    (video,) = [item for node_id, out in h["outputs"].items() for item in out.get("images", [])
                if prompt[node_id]["class_type"] == "SaveVideo"]
    with av.open(os.path.join(env["base"], "output", video["subfolder"], video["filename"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 17 and frames[0].shape == (64, 96, 3)


def _run(env, prompt):
    eng = env["engine"]
    sub = eng.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = eng.wait(sub.prompt_id).result(300)
    assert h["status"]["status_str"] == "success", h["status"]
    return h


def _frames(env, h):
    import av
    (video,) = h["outputs"]["12"]["images"]
    with av.open(os.path.join(env["base"], "output", video["subfolder"], video["filename"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack(frames)


def test_text_to_video_end_to_end(env):
    h = _run(env, _prompt())
    frames = _frames(env, h)
    assert frames.shape == (17, 64, 96, 3) and frames.std() > 0
    (webp,) = h["outputs"]["13"]["images"]
    with Image.open(os.path.join(env["base"], "output", webp["subfolder"], webp["filename"])) as im:
        assert im.n_frames == 17 and im.size == (96, 64)
    # the same prompt gives the same video (the decode noise is seeded), another seed another one
    again = _frames(env, _run(env, {**_prompt(), "12": {**_prompt()["12"], "inputs": {
        **_prompt()["12"]["inputs"], "filename_prefix": "video/again"}}}))
    assert np.array_equal(frames, again)
    other = _frames(env, _run(env, _prompt(seed=2)))
    assert not np.array_equal(frames, other)


def _latent(env, h, node):
    import safetensors.torch
    (f,) = h["outputs"][node]["latents"]
    return safetensors.torch.load_file(os.path.join(env["base"], "output", f["subfolder"], f["filename"]))["latent_tensor"]


def test_image_to_video_keeps_the_image_latent(env):
    """strength 1: the first latent frame (the encoded image, noise mask 0) comes out of the
    sampler unchanged while the others are generated; the video decodes to 17 frames."""
    p = _prompt(image_to_video=True, seed=3)
    p["16"] = {"class_type": "SaveLatent", "inputs": {"samples": ["15", 2], "filename_prefix": "latents/i2v_in"}}
    p["17"] = {"class_type": "SaveLatent", "inputs": {"samples": ["9", 0], "filename_prefix": "latents/i2v_out"}}
    h = _run(env, p)
    assert _frames(env, h).shape == (17, 64, 96, 3)
    before, after = _latent(env, h, "16"), _latent(env, h, "17")
    assert before.shape == after.shape == (1, 128, 3, 2, 3)
    assert before[:, :, 0].abs().mean() > 0.1 and not before[:, :, 1:].any()
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0])
    assert after[:, :, 1:].abs().mean() > 0.1
