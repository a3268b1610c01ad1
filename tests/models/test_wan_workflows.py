"""The Wan examples (examples/wan/*.api.json: the Wan 2.1 tutorials' templates -- text to video,
image to video, first-last frame, Fun-Control, Fun-InP -- and Wan 2.2's 5B ti2v and 14B
two-expert first-last frame, in API form) run end to end through the engine on tiny
random-weight files with the names they ask for, at 32x32 pixels, 5 frames and 2 steps."""
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

from . import wan_fixtures as fx

pytest.importorskip("diffusers")
pytest.importorskip("sentencepiece")
av = pytest.importorskip("av")

_threads = pytest.fixture(scope="module", autouse=True)(fx.one_thread)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "wan")
NAMES = sorted(os.path.basename(p)[:-len(".api.json")] for p in glob.glob(os.path.join(EXAMPLES, "*.api.json")))
TEXT_DIM, VISION_DIM = 32, 64
# the diffusion-model files the examples load, as tiny fixtures of their variant
DIFFUSION = {
    "wan2.1_t2v_1.3B_fp16.safetensors": dict(),
    "wan2.1_i2v_480p_14B_fp16.safetensors": dict(i2v=True, in_channels=36),
    "wan2.1_flf2v_720p_14B_fp16.safetensors": dict(i2v=True, flf=True, in_channels=36),
    "wan2.1_fun_control_1.3B_bf16.safetensors": dict(i2v=True, in_channels=48),
    "wan2.1_fun_inp_1.3B_bf16.safetensors": dict(i2v=True, in_channels=36),
    "wan2.2_ti2v_5B_fp16.safetensors": dict(in_channels=48, out_channels=48),
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
}


def write_models(models: str) -> None:
    from safetensors.torch import save_file
    import sentencepiece as spm
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    for seed, (name, opts) in enumerate(DIFFUSION.items()):
        dm = fx.diffusers_wan(seed=seed, text_dim=TEXT_DIM, image_dim=VISION_DIM, **opts)
        save_file(fx.native_sd(dm), os.path.join(models, "diffusion_models", name))
    proto = fx.spiece_model()
    umt5 = fx.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(), d_model=TEXT_DIM)
    save_file(fx.umt5_file_sd(umt5, proto), os.path.join(models, "text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"))
    save_file(fx.wan_vae_sd(seed=2), os.path.join(models, "vae", "wan_2.1_vae.safetensors"))
    save_file(fx.wan22_vae_sd(seed=3, z_dim=48), os.path.join(models, "vae", "wan2.2_vae.safetensors"))
    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=VISION_DIM, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=32, hidden_act="gelu")).eval()
    save_file({k: v.detach().clone().contiguous() for k, v in vision.state_dict().items()},
              os.path.join(models, "clip_vision", "clip_vision_h.safetensors"))


def write_inputs(folder: str, prompts: list[dict]) -> None:
    rng = np.random.default_rng(0)
    for prompt in prompts:
        for node in prompt.values():
            if node["class_type"] == "LoadImage":
                Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(
                    os.path.join(folder, node["inputs"]["image"]))
            if node["class_type"] == "LoadVideo":
                with av.open(os.path.join(folder, node["inputs"]["file"]), "w") as out:
                    stream = out.add_stream("libx264", rate=16)
                    stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p"
                    for _ in range(9):
                        frame = av.VideoFrame.from_ndarray((rng.random((40, 48, 3)) * 255).astype(np.uint8), "rgb24")
                        out.mux(stream.encode(frame))
                    out.mux(stream.encode(None))


def shrink(prompt: dict) -> dict:
    """Test size: 32x32 pixels, 5 frames, 2 sampling steps (the two-expert split kept: the
    first KSamplerAdvanced runs step 0-1 of 2, the second from step 1)."""
    p = json.loads(json.dumps(prompt))
    for node in p.values():
        i = node["inputs"]
        if "width" in i and "length" in i:
            i.update(width=32, height=32, length=5)
        if node["class_type"] == "KSampler":
            i["steps"] = 2
        if node["class_type"] == "KSamplerAdvanced":
            i["steps"] = 2
            if i["start_at_step"] == 0:
                i["end_at_step"] = 1
            else:
                i["start_at_step"] = 1
    return p


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("wan")
    paths.configure(base_directory=base, create_directories=True)
    write_models(os.path.join(base, "models"))
    write_inputs(os.path.join(base, "input"), [json.load(open(os.path.join(EXAMPLES, n + ".api.json"))) for n in NAMES])
    paths.invalidate_cache()
    engine = Engine(NodeRegistry.with_builtins())
    engine.start()
    yield {"base": str(base), "engine": engine}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def test_the_examples_are_there():
    assert NAMES == ["wan2.1_flf2v", "wan2.1_fun_control", "wan2.1_fun_inp", "wan2.1_i2v", "wan2.1_t2v",
                     "wan2.2_14b_flf2v", "wan2.2_5b_ti2v"]


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_to_a_video(env, name):
    prompt = shrink(json.load(open(os.path.join(EXAMPLES, name + ".api.json"))))
    engine = env["engine"]
    sub = engine.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    hist = engine.wait(sub.prompt_id).result(600)
    assert hist["status"]["status_str"] == "success", hist["status"]
    videos = [item for node_id, out in hist["outputs"].items() for item in out.get("images", [])
              if item["filename"].endswith(".mp4") and prompt[node_id]["class_type"] == "SaveVideo"]
    assert videos
    for item in videos:
        with av.open(os.path.join(env["base"], "output", item["subfolder"], item["filename"])) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 5 and (frames[0].width, frames[0].height) == (32, 32)
