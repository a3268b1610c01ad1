"""LoraSave (Extract and Save Lora): the SVD extraction against reference values recorded by
running upstream's extract_lora (tests/sampling/data/upstream_patch_refs.json), and the round
trip on tiny random SD1 checkpoints: a - b through ModelMergeSubtract / CLIPMergeSubtract,
saved as a LoRA, loaded onto b with LoraLoader gives about a (closer as the rank grows; a
full_diff LoRA gives a exactly, up to fp16)."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from comfyui import runtime
from comfyui.models import memory
from comfyui.nodes.builtin import loaders as L
from comfyui.nodes.builtin import lora_extract as LE
from comfyui.nodes.builtin import model_merging as MM

from models import fixtures as fx

REFS = json.loads((Path(__file__).parents[1] / "sampling" / "data" / "upstream_patch_refs.json").read_text())


def full_rank_pattern(*shape):  # a quadratic phase: no low-rank structure
    n = math.prod(shape)
    return torch.sin(torch.arange(n, dtype=torch.float32) ** 2 * 0.37 + 0.1).reshape(shape)


def pattern(*shape, k=0.37):  # the record script's inputs
    n = math.prod(shape)
    return torch.sin(torch.arange(n, dtype=torch.float32) * k + 0.1).reshape(shape)


@pytest.mark.parametrize("name,shape,rank", [("linear", (12, 10), 4), ("conv3x3", (6, 4, 3, 3), 3),
                                             ("conv1x1", (8, 6, 1, 1), 8)])
def test_extract_matches_upstream(name, shape, rank):
    ref = REFS[f"lora_extract_{name}"]
    up, down = LE.extract_lora(full_rank_pattern(*shape), rank)
    assert list(up.shape) == ref["up_shape"] and list(down.shape) == ref["down_shape"]
    want_up = torch.tensor(ref["up"]).reshape(up.shape)
    want_down = torch.tensor(ref["down"]).reshape(down.shape)
    # singular vectors are defined up to sign: align each rank component before comparing
    sign = torch.sign((up.flatten(1) * want_up.flatten(1)).sum(0) if up.ndim == 2 else
                      (up[:, :, 0, 0] * want_up[:, :, 0, 0]).sum(0))
    view = (1, -1) if up.ndim == 2 else (1, -1, 1, 1)
    torch.testing.assert_close(up * sign.view(view), want_up, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(down * sign.view((-1,) + (1,) * (down.ndim - 1)), want_down, atol=1e-5, rtol=1e-4)


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


def _extract(ws, prefix, rank, lora_type, model_diff=None, clip_diff=None):
    from comfyui import paths
    LE.LoraSave().save(prefix, rank, lora_type, True, model_diff, clip_diff)
    out_dir = os.path.join(ws, "output", os.path.dirname(prefix))
    (name,) = [f for f in os.listdir(out_dir) if f.startswith(os.path.basename(prefix))]
    loras = os.path.join(ws, "models", "loras")
    os.makedirs(loras, exist_ok=True)
    shutil.copy(os.path.join(out_dir, name), os.path.join(loras, name))
    paths.invalidate_cache()
    return name


def _patched(patcher, key):
    return patcher.patched_weight(key).float()


def test_extracted_lora_loads_back_onto_the_base(ws):
    a_model, a_clip, _ = L.CheckpointLoaderSimple().load_checkpoint("a.safetensors")
    b_model, b_clip, _ = L.CheckpointLoaderSimple().load_checkpoint("b.safetensors")
    (model_diff,) = MM.ModelSubtract().merge(a_model, b_model, 1.0)
    (clip_diff,) = MM.CLIPSubtract().merge(a_clip, b_clip, 1.0)
    # the linear layers: a 3x3 convolution's rank is capped at its input channels, and the
    # clamp over up and down together bites where their scales differ (a 4-channel output, an
    # embedding table), both as upstream
    unet_2d = [k for k, v in a_model.model_state_dict("diffusion_model.").items()
               if v.ndim == 2 and "transformer_blocks" in k]
    te_2d = [k for k, v in a_clip.patcher.model_state_dict().items() if v.ndim == 2 and k.endswith("proj.weight")]

    errors = {}
    for rank in (2, 4096):
        name = _extract(ws, f"loras/rank{rank}", rank, "standard", model_diff, clip_diff)
        sd = load_file(os.path.join(ws, "models", "loras", name))
        assert all(v.dtype == torch.float16 for v in sd.values())
        k = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q"
        assert sd[k + ".lora_up.weight"].shape[1] == min(rank, 32)
        assert any(n.startswith("text_encoders.") and n.endswith(".lora_down.weight") for n in sd)
        assert "diffusion_model.input_blocks.1.1.norm.diff_b" in sd and "diffusion_model.out.0.diff" in sd
        model, clip = L.LoraLoader().load_lora(b_model, b_clip, name, 1.0, 1.0)
        err = []
        for key in unet_2d:
            want = _patched(a_model, key)
            err.append(((_patched(model, key) - want).norm() / want.norm()).item())
        for key in te_2d[:6]:
            want = _patched(a_clip.patcher, key)
            err.append(((_patched(clip.patcher, key) - want).norm() / want.norm()).item())
        errors[rank] = max(err)
        # 1-D weights and biases travel as exact (fp16) differences
        key = "diffusion_model.out.2.bias"
        torch.testing.assert_close(_patched(model, key), _patched(a_model, key), atol=2e-3, rtol=0)
    # rank 2 of a random full-rank difference: about nothing; full rank: close, short of exact by
    # upstream's clamp of up and down at the 99th percentile of their values (kohya's recipe)
    assert errors[2] > 1.0 > 0.5 > errors[4096], errors

    name = _extract(ws, "loras/full", 8, "full_diff", model_diff, None)
    model, _ = L.LoraLoader().load_lora(b_model, b_clip, name, 1.0, 0.0)
    for key in unet_2d[:10]:
        torch.testing.assert_close(_patched(model, key), _patched(a_model, key), atol=2e-3, rtol=0)


def test_nothing_to_save_writes_nothing(ws):
    assert LE.LoraSave().save("loras/none", 8, "standard", True) == {}
    assert not os.path.exists(os.path.join(ws, "output", "loras"))
