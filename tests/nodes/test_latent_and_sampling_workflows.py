"""Workflows chaining the latent-math and custom-sampling nodes the way users wire them, run
by the engine on a tiny random-weight SD1 checkpoint (prompt in API format)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from comfyui import runtime
from comfyui.models import memory

from models import fixtures as fx


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("wf19")
    paths.configure(base_directory=base, create_directories=True)
    fx.make_sd1_checkpoint(os.path.join(base, "models", "checkpoints", "sd1.safetensors"))
    paths.invalidate_cache()
    engine = Engine(NodeRegistry.with_builtins())
    engine.start()
    yield {"base": str(base), "engine": engine}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def _run(env, prompt: dict) -> dict:
    eng = env["engine"]
    sub = eng.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = eng.wait(sub.prompt_id).result(300)
    assert h["status"]["status_str"] == "success", h["status"]
    return h["outputs"]


def _images(env, outputs: dict, node: str) -> list[np.ndarray]:
    out = []
    for im in outputs[node]["images"]:
        with Image.open(os.path.join(env["base"], "output", im["subfolder"], im["filename"])) as f:
            out.append(np.asarray(f.convert("RGB")))
    return out


def _base() -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red house"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
    }


def test_two_pass_custom_sampling_with_latent_math(env):
    """AYS schedule split in two; first half with DPM++ 2M SDE, second with Euler ancestral;
    the result sharpened, interpolated with the first pass's x0, scaled, rebatched to single
    images and saved."""
    p = _base()
    p.update({
        "5": {"class_type": "LatentBatchSeedBehavior", "inputs": {"samples": ["4", 0], "seed_behavior": "fixed"}},
        "6": {"class_type": "AlignYourStepsScheduler", "inputs": {"model_type": "SD1", "steps": 4, "denoise": 1.0}},
        "7": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["6", 0], "step": 2}},
        "8": {"class_type": "SamplerDPMPP_2M_SDE", "inputs": {"solver_type": "heun", "eta": 1.0, "s_noise": 1.0,
                                                              "noise_device": "cpu"}},
        "9": {"class_type": "SamplerCustom", "inputs": {
            "model": ["1", 0], "add_noise": True, "noise_seed": 11, "cfg": 4.0, "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["8", 0], "sigmas": ["7", 0], "latent_image": ["5", 0]}},
        "10": {"class_type": "SamplerEulerAncestral", "inputs": {"eta": 1.0, "s_noise": 1.0}},
        "11": {"class_type": "SamplerCustom", "inputs": {
            "model": ["1", 0], "add_noise": False, "noise_seed": 0, "cfg": 4.0, "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["10", 0], "sigmas": ["7", 1], "latent_image": ["9", 0]}},
        "12": {"class_type": "LatentOperationSharpen", "inputs": {"sharpen_radius": 2, "sigma": 1.0, "alpha": 0.5}},
        "13": {"class_type": "LatentApplyOperation", "inputs": {"samples": ["11", 0], "operation": ["12", 0]}},
        "14": {"class_type": "LatentInterpolate", "inputs": {"samples1": ["13", 0], "samples2": ["9", 1],
                                                             "ratio": 0.7}},
        "15": {"class_type": "LatentMultiply", "inputs": {"samples": ["14", 0], "multiplier": 1.1}},
        "16": {"class_type": "RebatchLatents", "inputs": {"latents": ["15", 0], "batch_size": 1}},
        "17": {"class_type": "VAEDecode", "inputs": {"samples": ["16", 0], "vae": ["1", 2]}},
        "18": {"class_type": "SaveImage", "inputs": {"images": ["17", 0], "filename_prefix": "two_pass"}},
    })
    imgs = _images(env, _run(env, p), "18")
    assert len(imgs) == 2 and all(im.shape == (64, 64, 3) for im in imgs)
    assert all(im.std() > 0 for im in imgs)
    # the latent math changes the picture: without sharpen / interpolate / multiply it differs
    q = dict(p)
    q["16"] = {"class_type": "RebatchLatents", "inputs": {"latents": ["11", 0], "batch_size": 1}}
    q["18"] = {"class_type": "SaveImage", "inputs": {"images": ["17", 0], "filename_prefix": "plain"}}
    plain = _images(env, _run(env, q), "18")
    assert np.abs(plain[0].astype(int) - imgs[0].astype(int)).mean() > 0.5


def test_sigma_edits_add_noise_and_guided_latent_ops(env):
    """GITS schedule with extra intermediate steps and a raised first sigma; an img2img latent
    noised by AddNoise, sampled with SamplerCustomAdvanced (noise disabled) on a model whose
    guidance is tonemapped; LatentAdd/Subtract/Concat/Cut around it."""
    p = _base()
    p.update({
        "5": {"class_type": "GITSScheduler", "inputs": {"coeff": 1.2, "steps": 4, "denoise": 1.0}},
        "6": {"class_type": "ExtendIntermediateSigmas", "inputs": {"sigmas": ["5", 0], "steps": 2,
                                                                   "start_at_sigma": -1.0, "end_at_sigma": 5.0,
                                                                   "spacing": "linear"}},
        "7": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["6", 0], "sigma": 15.0}},
        "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": 3}},
        "9": {"class_type": "LatentOperationTonemapReinhard", "inputs": {"multiplier": 1.0}},
        "10": {"class_type": "LatentApplyOperationCFG", "inputs": {"model": ["1", 0], "operation": ["9", 0]}},
        "11": {"class_type": "CFGGuider", "inputs": {"model": ["10", 0], "positive": ["2", 0],
                                                     "negative": ["3", 0], "cfg": 5.0}},
        "12": {"class_type": "SamplerLMS", "inputs": {"order": 3}},
        "13": {"class_type": "AddNoise", "inputs": {"model": ["10", 0], "noise": ["8", 0], "sigmas": ["7", 0],
                                                    "latent_image": ["4", 0]}},
        "14": {"class_type": "DisableNoise", "inputs": {}},
        "15": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["14", 0], "guider": ["11", 0],
                                                                 "sampler": ["12", 0], "sigmas": ["7", 0],
                                                                 "latent_image": ["13", 0]}},
        "16": {"class_type": "LatentSubtract", "inputs": {"samples1": ["15", 0], "samples2": ["15", 1]}},
        "17": {"class_type": "LatentAdd", "inputs": {"samples1": ["15", 1], "samples2": ["16", 0]}},
        "18": {"class_type": "LatentConcat", "inputs": {"samples1": ["17", 0], "samples2": ["15", 1], "dim": "x"}},
        "19": {"class_type": "LatentCut", "inputs": {"samples": ["18", 0], "dim": "x", "index": 4, "amount": 8}},
        "20": {"class_type": "VAEDecode", "inputs": {"samples": ["19", 0], "vae": ["1", 2]}},
        "21": {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "gits"}},
    })
    imgs = _images(env, _run(env, p), "21")
    assert len(imgs) == 2 and imgs[0].shape == (64, 64, 3)  # 16 latent columns cut back to 8
    assert all(np.isfinite(im).all() and im.std() > 0 for im in imgs)


def test_guidance_patches_chained_on_one_model(env):
    """FreeU_V2 -> PAG -> self-attention multiplier -> continuous EDM schedule -> CFGZeroStar ->
    APG -> TCFG -> FreSca -> Epsilon Scaling -> CFGNorm -> Mahiro on one model,
    sampled through PerpNegGuider with an empty prompt; the same without the patches differs."""
    p = _base()
    p.update({
        "20": {"class_type": "FreeU_V2", "inputs": {"model": ["1", 0], "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        "21": {"class_type": "PerturbedAttentionGuidance", "inputs": {"model": ["20", 0], "scale": 3.0}},
        "22": {"class_type": "UNetSelfAttentionMultiply", "inputs": {"model": ["21", 0], "q": 1.0, "k": 1.1,
                                                                     "v": 1.0, "out": 0.9}},
        "23": {"class_type": "ModelSamplingContinuousEDM", "inputs": {"model": ["22", 0], "sampling": "eps",
                                                                      "sigma_max": 14.6, "sigma_min": 0.03}},
        "5": {"class_type": "CFGZeroStar", "inputs": {"model": ["23", 0]}},
        "6": {"class_type": "APG", "inputs": {"model": ["5", 0], "eta": 0.5, "norm_threshold": 5.0,
                                              "momentum": -0.5}},
        "7": {"class_type": "TCFG", "inputs": {"model": ["6", 0]}},
        "8": {"class_type": "FreSca", "inputs": {"model": ["7", 0], "scale_low": 1.0, "scale_high": 1.25,
                                                 "freq_cutoff": 2}},
        "9": {"class_type": "Epsilon Scaling", "inputs": {"model": ["8", 0], "scaling_factor": 1.005}},
        "10": {"class_type": "CFGNorm", "inputs": {"model": ["9", 0], "strength": 1.0}},
        "11": {"class_type": "Mahiro", "inputs": {"model": ["10", 0]}},
        "12": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "13": {"class_type": "PerpNegGuider", "inputs": {"model": ["11", 0], "positive": ["2", 0],
                                                         "negative": ["3", 0], "empty_conditioning": ["12", 0],
                                                         "cfg": 5.0, "neg_scale": 1.0}},
        "14": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9}},
        "15": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "16": {"class_type": "BasicScheduler", "inputs": {"model": ["11", 0], "scheduler": "normal", "steps": 3,
                                                          "denoise": 1.0}},
        "17": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["14", 0], "guider": ["13", 0],
                                                                 "sampler": ["15", 0], "sigmas": ["16", 0],
                                                                 "latent_image": ["4", 0]}},
        "18": {"class_type": "VAEDecode", "inputs": {"samples": ["17", 0], "vae": ["1", 2]}},
        "19": {"class_type": "SaveImage", "inputs": {"images": ["18", 0], "filename_prefix": "guided"}},
    })
    guided = _images(env, _run(env, p), "19")
    assert len(guided) == 2 and all(im.std() > 0 for im in guided)
    q = dict(p)
    q["13"] = {"class_type": "PerpNegGuider", "inputs": {**p["13"]["inputs"], "model": ["1", 0]}}
    q["19"] = {"class_type": "SaveImage", "inputs": {"images": ["18", 0], "filename_prefix": "unguided"}}
    plain = _images(env, _run(env, q), "19")
    assert np.abs(plain[0].astype(int) - guided[0].astype(int)).mean() > 0.5


def test_freeu_pag_sag_chained_through_ksampler(env):
    """FreeU -> PAG -> Self-Attention Guidance -> Deep Shrink on one model through KSampler;
    each patch changes the image, and the chain runs the way users wire it."""
    p = _base()
    p.update({
        "5": {"class_type": "FreeU", "inputs": {"model": ["1", 0], "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}},
        "6": {"class_type": "PerturbedAttentionGuidance", "inputs": {"model": ["5", 0], "scale": 3.0}},
        "7": {"class_type": "SelfAttentionGuidance", "inputs": {"model": ["6", 0], "scale": 0.5, "blur_sigma": 2.0}},
        "8": {"class_type": "PatchModelAddDownscale", "inputs": {
            "model": ["7", 0], "block_number": 1, "downscale_factor": 2.0, "start_percent": 0.0, "end_percent": 0.35,
            "downscale_after_skip": True, "downscale_method": "bicubic", "upscale_method": "bicubic"}},
        "9": {"class_type": "KSampler", "inputs": {
            "model": ["8", 0], "seed": 4, "steps": 3, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "sag_chain"}},
    })
    chained = _images(env, _run(env, p), "11")
    assert len(chained) == 2 and all(im.std() > 0 for im in chained)
    for dropped, source in (("8", ["7", 0]), ("7", ["6", 0])):  # without Deep Shrink, without SAG
        q = {k: dict(v) for k, v in p.items()}
        q["9"] = {"class_type": "KSampler", "inputs": {**p["9"]["inputs"], "model": source}}
        q["11"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": f"no{dropped}"}}
        if dropped == "7":
            del q["8"]
        other = _images(env, _run(env, q), "11")
        assert np.abs(other[0].astype(int) - chained[0].astype(int)).mean() > 0.2, dropped
