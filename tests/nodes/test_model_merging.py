"""Model merging and saving nodes on tiny random SD1 checkpoints: merged weights follow
upstream's formulas per tensor, merges stay lazy patches, and the save nodes write files that
load back through our loaders with the merged weights (and the same image)."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from comfyui import runtime
from comfyui.models import memory
from comfyui.models.loading import load_torch_file
from comfyui.nodes.builtin import loaders as L
from comfyui.nodes.builtin import model_merging as MM

from models import fixtures as fx

UNET = "diffusion_model."


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


@pytest.fixture
def ws(workspace):
    from comfyui import paths
    m = os.path.join(workspace, "models", "checkpoints")
    fx.make_sd1_checkpoint(os.path.join(m, "a.safetensors"), seed=41)
    fx.make_sd1_checkpoint(os.path.join(m, "b.safetensors"), seed=42)
    paths.invalidate_cache()
    return workspace


def _load(name):
    return L.CheckpointLoaderSimple().load_checkpoint(name)


def _unet_keys(model):
    return [k for k in model.model.state_dict() if k.startswith(UNET)]


def _orig(model, k):
    return model.model_state_dict()[k].detach().float()


def test_node_specs_match_upstream():
    r = MM.ModelMergeSimple.INPUT_TYPES()["required"]
    assert list(r) == ["model1", "model2", "ratio"]
    assert r["ratio"] == ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
    assert MM.ModelSubtract.INPUT_TYPES()["required"]["multiplier"][1] == \
        {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}
    assert list(MM.ModelMergeBlocks.INPUT_TYPES()["required"]) == ["model1", "model2", "input", "middle", "out"]
    sd1 = list(MM.ModelMergeSD1.INPUT_TYPES()["required"])
    assert len(sd1) == 2 + 2 + 12 + 3 + 12 + 1 and sd1[4] == "input_blocks.0." and sd1[-1] == "out."
    xl = list(MM.ModelMergeSDXL.INPUT_TYPES()["required"])
    assert len(xl) == 2 + 2 + 9 + 3 + 9 + 1 and xl[4] == "input_blocks.0"
    assert MM.ModelMergeSD1.CATEGORY == "advanced/model_merging/model_specific"
    assert MM.CLIPSave.INPUT_TYPES()["required"]["filename_prefix"][1]["default"] == "clip/ComfyUI"
    assert MM.VAESave.INPUT_TYPES()["required"]["filename_prefix"][1]["default"] == "vae/ComfyUI_vae"
    assert MM.ModelSave.INPUT_TYPES()["required"]["filename_prefix"][1]["default"] == "diffusion_models/ComfyUI"
    assert MM.NODE_CLASS_MAPPINGS["ModelMergeSD2"] is MM.ModelMergeSD1


def test_simple_merge_is_lazy_and_follows_formula(ws):
    a, ca, _ = _load("a.safetensors")
    b, cb, _ = _load("b.safetensors")
    (m,) = MM.ModelMergeSimple().merge(a, b, 0.3)
    assert not a.patches and m.model is a.model
    keys = _unet_keys(a)
    assert set(m.patches) == set(keys)
    # the patch holds model2's own tensor: nothing copied before patching
    k0 = keys[0]
    assert m.patches[k0][0][1][0][0].data_ptr() == b.model.state_dict()[k0].data_ptr()
    for k in keys:
        want = _orig(a, k) * 0.3 + (1.0 - 0.3) * _orig(b, k)
        assert torch.equal(m.patched_weight(k).float(), want), k
    (ends,) = MM.ModelMergeSimple().merge(a, b, 0.0)
    assert all(torch.equal(ends.patched_weight(k), b.model_state_dict()[k]) for k in keys)


def test_block_merges_pick_longest_prefix(ws):
    a, _, _ = _load("a.safetensors")
    b, _, _ = _load("b.safetensors")
    (m,) = MM.ModelMergeBlocks().merge(a, b, input=0.2, middle=0.5, out=0.9)

    def ratio(k):
        u = k[len(UNET):]
        # "out" also matches output_blocks (upstream's prefix rule); others take the first input's
        return 0.5 if u.startswith("middle") else 0.9 if u.startswith("out") else 0.2

    for k in _unet_keys(a):
        r = ratio(k)
        assert torch.equal(m.patched_weight(k).float(), _orig(a, k) * r + (1.0 - r) * _orig(b, k)), k
    args = {n: 1.0 for n in MM.ModelMergeSD1.INPUT_TYPES()["required"] if n not in ("model1", "model2")}
    args["input_blocks.1."] = 0.0
    args["out."] = 0.25
    (m1,) = MM.ModelMergeSD1().merge(a, b, **args)
    seen = set()
    for k in _unet_keys(a):
        u = k[len(UNET):]
        if u.startswith("input_blocks.1."):
            assert torch.equal(m1.patched_weight(k), b.model_state_dict()[k])
            seen.add(1)
        elif u.startswith("out."):
            assert torch.equal(m1.patched_weight(k).float(), _orig(a, k) * 0.25 + 0.75 * _orig(b, k))
            seen.add(2)
        elif u.startswith("input_blocks.10") or u.startswith("output_blocks"):
            assert torch.equal(m1.patched_weight(k), a.model_state_dict()[k])
            seen.add(3)
    assert seen == {1, 2, 3}


def test_subtract_add_round_trip(ws):
    a, ca, _ = _load("a.safetensors")
    b, cb, _ = _load("b.safetensors")
    (d,) = MM.ModelSubtract().merge(a, b, 1.0)
    (back,) = MM.ModelAdd().merge(d, b)
    (back2,) = MM.ModelAdd().merge(b, d)  # model2 carries patches: evaluated inside the patch
    (half,) = MM.ModelSubtract().merge(a, b, 0.5)
    for k in _unet_keys(a):
        wa, wb = _orig(a, k), _orig(b, k)
        assert torch.equal(d.patched_weight(k).float(), wa * 1.0 - 1.0 * wb)
        assert torch.equal(half.patched_weight(k).float(), wa * 0.5 - 0.5 * wb)
        torch.testing.assert_close(back.patched_weight(k).float(), wa, atol=1e-6, rtol=0)
        torch.testing.assert_close(back2.patched_weight(k).float(), wa, atol=1e-6, rtol=0)
    (cd,) = MM.CLIPSubtract().merge(ca, cb, 1.0)
    (cback,) = MM.CLIPAdd().merge(cd, cb)
    ck = [k for k in ca.patcher.model.state_dict() if k.endswith(".weight")]
    for k in ck:
        torch.testing.assert_close(cback.patcher.patched_weight(k).float(), _orig(ca.patcher, k), atol=1e-6, rtol=0)


def test_clip_merge_formula_and_skipped_keys(ws):
    _, ca, _ = _load("a.safetensors")
    _, cb, _ = _load("b.safetensors")
    (c,) = MM.CLIPMergeSimple().merge(ca, cb, 0.25)
    sd = ca.patcher.model.state_dict()
    assert not any(k.endswith((".position_ids", ".logit_scale")) for k in c.patcher.patches)
    n = 0
    for k in sd:
        if k in c.patcher.patches:
            want = _orig(ca.patcher, k) * 0.25 + 0.75 * _orig(cb.patcher, k)
            assert torch.equal(c.patcher.patched_weight(k).float(), want), k
            n += 1
    assert n > 10
    toks = ca.tokenize("a merged prompt")
    e = c.encode_from_tokens(toks)
    assert not torch.allclose(e, ca.encode_from_tokens(toks))


def test_save_nodes_reload_bit_exact(ws):
    from comfyui import paths
    a, ca, va = _load("a.safetensors")
    b, cb, _ = _load("b.safetensors")
    (m,) = MM.ModelMergeSimple().merge(a, b, 0.4)
    (c,) = MM.CLIPMergeSimple().merge(ca, cb, 0.6)
    merged_unet = {k[len(UNET):]: m.patched_weight(k) for k in _unet_keys(a)}
    merged_clip = {k: c.patcher.patched_weight(k) for k in c.patcher.patches}
    prompt = {"1": {"class_type": "ModelMergeSimple"}}
    out = os.path.join(ws, "output")

    L.CheckpointSave().save(m, c, va, "checkpoints/merged", prompt=prompt, extra_pnginfo={"workflow": {"n": 1}})
    ck = os.path.join(out, "checkpoints", "merged_00001_.safetensors")
    with safe_open(ck, "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["prompt"]) == prompt and json.loads(meta["workflow"]) == {"n": 1}
    shutil.copy(ck, os.path.join(ws, "models", "checkpoints", "merged.safetensors"))
    paths.invalidate_cache()
    m2, c2, v2 = _load("merged.safetensors")
    sd2 = m2.model.diffusion_model.state_dict()
    assert all(torch.equal(sd2[k], v) for k, v in merged_unet.items())
    csd2 = c2.patcher.model.state_dict()
    assert all(torch.equal(csd2[k], v) for k, v in merged_clip.items())

    MM.ModelSave().save(m, "diffusion_models/unet", prompt=prompt)
    f = os.path.join(out, "diffusion_models", "unet_00001_.safetensors")
    sd = load_torch_file(f)
    assert sd and all(k.startswith("model.diffusion_model.") for k in sd)
    with safe_open(f, "pt") as fh:
        assert json.loads(fh.metadata()["prompt"]) == prompt
    shutil.copy(f, os.path.join(ws, "models", "diffusion_models", "unet.safetensors"))
    paths.invalidate_cache()
    (u,) = L.UNETLoader().load_unet("unet.safetensors")
    usd = u.model.diffusion_model.state_dict()
    assert all(torch.equal(usd[k], v) for k, v in merged_unet.items())

    MM.CLIPSave().save(c, "clip/merged", prompt=prompt)
    f = os.path.join(out, "clip", "merged_clip_l_00001_.safetensors")
    sd = load_torch_file(f)
    assert any(k.startswith("text_model.encoder.layers.0.") for k in sd)
    with safe_open(f, "pt") as fh:
        assert fh.metadata()["format"] == "pt"
    shutil.copy(f, os.path.join(ws, "models", "text_encoders", "merged_l.safetensors"))
    paths.invalidate_cache()
    (cl,) = L.CLIPLoader().load_clip("merged_l.safetensors", "stable_diffusion")
    lsd = cl.patcher.model.state_dict()
    assert all(torch.equal(lsd[k], v) for k, v in merged_clip.items())
    toks = c.tokenize("saved clip")
    torch.testing.assert_close(cl.encode_from_tokens(toks), c.encode_from_tokens(toks), atol=0, rtol=0)

    MM.VAESave().save(va, "vae/merged", prompt=prompt)
    f = os.path.join(out, "vae", "merged_00001_.safetensors")
    shutil.copy(f, os.path.join(ws, "models", "vae", "merged_vae.safetensors"))
    paths.invalidate_cache()
    (v3,) = L.VAELoader().load_vae("merged_vae.safetensors")
    want = va.get_sd()
    got = v3.get_sd()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def _run(engine, prompt):
    sub = engine.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = engine.wait(sub.prompt_id).result(300)
    assert h["status"]["status_str"] == "success", h["status"]
    return h["outputs"]


def _sample(ckpt_node: list, clip_node: list, vae_node: list, prefix: str) -> dict:
    return {
        "20": {"class_type": "CLIPTextEncode", "inputs": {"clip": clip_node, "text": "a red house"}},
        "21": {"class_type": "CLIPTextEncode", "inputs": {"clip": clip_node, "text": "blurry"}},
        "22": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "23": {"class_type": "KSampler", "inputs": {
            "model": ckpt_node, "seed": 7, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["20", 0], "negative": ["21", 0], "latent_image": ["22", 0], "denoise": 1.0}},
        "24": {"class_type": "VAEDecode", "inputs": {"samples": ["23", 0], "vae": vae_node}},
        "25": {"class_type": "SaveImage", "inputs": {"images": ["24", 0], "filename_prefix": prefix}},
    }


def test_workflow_merge_save_reload_same_image(ws):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        p = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
            "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}},
            "3": {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["2", 0], "ratio": 0.35}},
            "4": {"class_type": "CLIPMergeSimple", "inputs": {"clip1": ["1", 1], "clip2": ["2", 1], "ratio": 0.7}},
            "5": {"class_type": "CheckpointSave", "inputs": {"model": ["3", 0], "clip": ["4", 0], "vae": ["1", 2],
                                                             "filename_prefix": "checkpoints/wf"}},
        }
        p.update(_sample(["3", 0], ["4", 0], ["1", 2], "merged"))
        out1 = _run(eng, p)
        ck = os.path.join(ws, "output", "checkpoints", "wf_00001_.safetensors")
        shutil.copy(ck, os.path.join(ws, "models", "checkpoints", "wf.safetensors"))
        paths.invalidate_cache()
        p2 = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "wf.safetensors"}}}
        p2.update(_sample(["1", 0], ["1", 1], ["1", 2], "reloaded"))
        out2 = _run(eng, p2)
        p3 = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}}
        p3.update(_sample(["1", 0], ["1", 1], ["1", 2], "plain"))
        out3 = _run(eng, p3)
    finally:
        eng.stop()

    def img(outs):
        im = outs["25"]["images"][0]
        with Image.open(os.path.join(ws, "output", im["subfolder"], im["filename"])) as f:
            return np.asarray(f.convert("RGB")).astype(np.int16)

    merged, reloaded, plain = img(out1), img(out2), img(out3)
    assert np.array_equal(merged, reloaded)
    assert np.abs(merged - plain).max() > 0  # the merge changed the image


def test_sdxl_block_merge_and_model_save(workspace):
    from comfyui.models import sd as sdm
    m = os.path.join(workspace, "models", "checkpoints")
    a, ca, _ = sdm.load_checkpoint_guess_config(fx.make_sdxl_checkpoint(os.path.join(m, "x1.safetensors"), seed=51))[:3]
    b = sdm.load_checkpoint_guess_config(fx.make_sdxl_checkpoint(os.path.join(m, "x2.safetensors"), seed=52))[0]
    args = {n: 1.0 for n in MM.ModelMergeSDXL.INPUT_TYPES()["required"] if n not in ("model1", "model2")}
    args["label_emb."] = 0.0
    args["middle_block.1"] = 0.5
    (mx,) = MM.ModelMergeSDXL().merge(a, b, **args)
    hit = set()
    for k in _unet_keys(a):
        u = k[len(UNET):]
        r = 0.0 if u.startswith("label_emb.") else 0.5 if u.startswith("middle_block.1") else 1.0
        hit.add(r)
        assert torch.equal(mx.patched_weight(k).float(), _orig(a, k) * r + (1.0 - r) * _orig(b, k)), k
    assert hit == {0.0, 0.5, 1.0}
    MM.ModelSave().save(mx, "diffusion_models/xl", prompt={"9": {}})
    f = os.path.join(workspace, "output", "diffusion_models", "xl_00001_.safetensors")
    with safe_open(f, "pt") as fh:
        meta = fh.metadata()
        keys = list(fh.keys())
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base" and meta["prompt"] == '{"9": {}}'
    assert keys and all(k.startswith("model.diffusion_model.") for k in keys)
    u = sdm.load_diffusion_model(f)
    usd = u.model.diffusion_model.state_dict()
    assert all(torch.equal(usd[k[len(UNET):]], mx.patched_weight(k)) for k in _unet_keys(a))
