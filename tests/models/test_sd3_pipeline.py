"""SD3.5 end to end on tiny fixture files: an all-in-one checkpoint (CheckpointLoaderSimple)
and separate files (TripleCLIPLoader + UNETLoader + VAELoader) through the engine, and the
``sd3`` text-encoder combination rule (context and pooled layout, missing encoders)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.models.text_encoders.recipes import CLIP_TYPES

from . import sd3_fixtures as fx

pytest.importorskip("diffusers")


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


def _run(prompt: dict, workspace) -> dict:
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        sub = eng.submit(prompt)
        assert sub.node_errors == {}
        hist = eng.wait(sub.prompt_id).result(300)
        assert hist["status"]["status_str"] == "success", hist["status"]
        return hist
    finally:
        eng.stop()


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sd3"


def _example(name: str) -> dict:
    """An example prompt made small: 64x48, 3 steps."""
    prompt = json.loads((EXAMPLES / name).read_text())
    for node in prompt.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"].update(width=64, height=48)
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 3
    return prompt


def test_checkpoint_example_text_encode_sample_decode_save(workspace):
    prompt = _example("sd3.5_checkpoint.api.json")
    ckpt = prompt["4"]["inputs"]["ckpt_name"]
    path = fx.write_checkpoint(os.path.join(workspace, "models", "checkpoints", ckpt))
    model, clip, vae = sdm.load_checkpoint_guess_config(path)
    assert model.model.model_config.name == "sd3.5-medium"
    assert clip.clip_type.name == "sd3"
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red fox"))
    w = fx.CKPT_WIDTHS
    # 77 CLIP tokens (L ++ G features zero-padded to the T5 width) then 77 T5 tokens
    assert cond[0][0].shape == (1, 154, w["t5"])
    assert torch.all(cond[0][0][:, :77, w["clip_l"] + w["clip_g"]:] == 0)
    assert cond[0][1]["pooled_output"].shape == (1, w["clip_l"] + w["clip_g"])
    runtime.current().model_files.clear()

    # the negative through CLIPTextEncodeSD3 with empty prompts left unpadded
    prompt["7"] = {"class_type": "CLIPTextEncodeSD3", "inputs": {"clip": ["4", 1], "clip_l": "", "clip_g": "blurry",
                                                                 "t5xxl": "", "empty_padding": "none"}}
    hist = _run(prompt, workspace)
    name = hist["outputs"]["9"]["images"][0]["filename"]
    from PIL import Image
    with Image.open(os.path.join(workspace, "output", name)) as im:
        assert im.size == (64, 48)


def test_triple_clip_example_unet_loader_vae_loader(workspace):
    prompt = _example("sd3.5_triple_clip.api.json")
    names = fx.write_separate_files(os.path.join(workspace, "models"))
    models = os.path.join(workspace, "models")
    for folder, ours, theirs in (("diffusion_models", names["unet"], prompt["2"]["inputs"]["unet_name"]),
                                 ("vae", names["vae"], prompt["10"]["inputs"]["vae_name"])):
        os.replace(os.path.join(models, folder, ours), os.path.join(models, folder, theirs))
    # the text encoders in another order than the example's: roles come from the files
    prompt["1"]["inputs"] = {"clip_name1": names["t5"], "clip_name2": names["clip_l"], "clip_name3": names["clip_g"]}
    hist = _run(prompt, workspace)
    assert hist["outputs"]["9"]["images"][0]["filename"].startswith("sd3.5_")


# ------------------------------------------------------------------------ combination rule
def _outputs(l_width=32, g_width=64, t5_width=128, tokens=77, t5_tokens=80):
    g = torch.Generator().manual_seed(0)
    return {"clip_l": (torch.randn(1, tokens, l_width, generator=g), torch.randn(1, l_width, generator=g), {}),
            "clip_g": (torch.randn(1, tokens, g_width, generator=g), torch.randn(1, g_width, generator=g), {}),
            "t5xxl": (torch.randn(1, t5_tokens, t5_width, generator=g), None, {})}


def test_sd3_context_and_pooled_layout():
    out = _outputs()
    cond, pooled, _ = CLIP_TYPES["sd3"].combine(out)
    assert cond.shape == (1, 77 + 80, 128)
    torch.testing.assert_close(cond[:, :77, :32], out["clip_l"][0])
    torch.testing.assert_close(cond[:, :77, 32:96], out["clip_g"][0])
    assert torch.all(cond[:, :77, 96:] == 0)
    torch.testing.assert_close(cond[:, 77:], out["t5xxl"][0])
    torch.testing.assert_close(pooled, torch.cat([out["clip_l"][1], out["clip_g"][1]], dim=-1))


def test_sd3_missing_encoders_give_zeros_of_their_width():
    out = _outputs(l_width=768, g_width=1280, t5_width=4096)
    no_t5 = {k: v for k, v in out.items() if k != "t5xxl"}
    cond, pooled, _ = CLIP_TYPES["sd3"].combine(no_t5)
    assert cond.shape == (1, 77, 4096) and pooled.shape == (1, 2048)
    only_g = {"clip_g": out["clip_g"], "t5xxl": out["t5xxl"]}
    cond, pooled, _ = CLIP_TYPES["sd3"].combine(only_g)
    assert torch.all(cond[:, :77, :768] == 0)
    torch.testing.assert_close(cond[:, :77, 768:2048], out["clip_g"][0])
    assert torch.all(pooled[:, :768] == 0)
    cond, pooled, _ = CLIP_TYPES["sd3"].combine({"t5xxl": out["t5xxl"]})
    torch.testing.assert_close(cond, out["t5xxl"][0])
    assert pooled.shape == (1, 2048) and torch.all(pooled == 0)


def test_skip_layer_guidance_sd3(workspace):
    """Skipping joint block 1 (of 2) in the extra positive pass changes the result inside the
    percent range and nothing outside it; no layers = the model unchanged."""
    from comfyui.nodes.builtin.sampling import KSampler
    from comfyui.nodes.builtin.sd3 import SkipLayerGuidanceSD3
    path = fx.write_checkpoint(os.path.join(workspace, "models", "checkpoints", "tiny.safetensors"), medium=False)
    model, clip, _ = sdm.load_checkpoint_guess_config(path)
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a fox"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    latent = {"samples": torch.zeros(1, 16, 6, 8)}

    def sample(m):
        return KSampler().sample(m, 7, 2, 4.5, "euler", "sgm_uniform", pos, neg, latent)[0]["samples"]

    slg = SkipLayerGuidanceSD3()
    assert slg.skip_guidance_sd3(model, "", 3.0, 0.0, 1.0)[0] is model
    base = sample(model)
    inside = sample(slg.skip_guidance_sd3(model, "1", 3.0, 0.0, 1.0)[0])
    outside = sample(slg.skip_guidance_sd3(model, "1", 3.0, 0.999, 1.0)[0])
    assert not torch.allclose(inside, base, atol=1e-4)
    torch.testing.assert_close(outside, base)


def test_checkpoint_without_t5_is_sd3_with_clip_context_only(workspace):
    """An SD3 checkpoint carrying CLIP-L/G only (like sd3_medium_incl_clips) gets the sd3 text
    encoders, not SDXL's: CLIP features padded to 4096 (upstream's width without T5), no T5
    tokens, pooled L ++ G."""
    sd = {k: v for k, v in fx.checkpoint_sd(seed=1).items() if not k.startswith("text_encoders.t5xxl.")}
    _, clip, _ = sdm.load_state_dict_guess_config(sd)
    assert clip.clip_type.name == "sd3" and "t5xxl" not in clip.tokenize("x")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red fox"))
    w = fx.CKPT_WIDTHS
    assert cond[0][0].shape == (1, 77, 4096)
    assert torch.all(cond[0][0][..., w["clip_l"] + w["clip_g"]:] == 0)
    assert cond[0][1]["pooled_output"].shape == (1, w["clip_l"] + w["clip_g"])
