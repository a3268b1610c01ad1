"""GLIGEN: fusers and position net against diffusers' modules for the same weights; the
text-box conditioning reaches the UNet through the sampler's middle_patch."""
from __future__ import annotations

import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import gligen as gl
from comfyui.models import memory
from comfyui.nodes.builtin import vision as nodes

# transformer blocks of the tiny SD1 UNet (tests/models/fixtures.SD1_UNET) and their widths
BLOCKS = [("input_blocks.1.1", 32), ("input_blocks.3.1", 64), ("middle_block.1", 64), ("output_blocks.0.1", 64),
          ("output_blocks.1.1", 64), ("output_blocks.2.1", 32), ("output_blocks.3.1", 32)]


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _diffusers_parts(alpha=0.7, seed=0):
    from diffusers.models.attention import GatedSelfAttentionDense
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection
    torch.manual_seed(seed)
    fusers = []
    for _, dim in BLOCKS:
        heads, d_head = (8, dim // 8) if dim % 64 else (dim // 64, 64)
        m = GatedSelfAttentionDense(dim, 32, heads, d_head).eval()
        with torch.no_grad():
            m.alpha_attn.fill_(alpha)
            m.alpha_dense.fill_(-alpha)
        fusers.append(m)
    pn = GLIGENTextBoundingboxProjection(positive_len=32, out_dim=32, feature_type="text-only", fourier_freqs=8).eval()
    with torch.no_grad():
        pn.null_positive_feature.normal_()
        pn.null_position_feature.normal_()
    return fusers, pn


def _write(path, fusers, pn):
    from safetensors.torch import save_file
    sd = {}
    for (blk, _), m in zip(BLOCKS, fusers):
        for k, v in m.state_dict().items():
            sd[f"{blk}.transformer_blocks.0.fuser.{k}"] = v.contiguous()
    for k, v in pn.state_dict().items():
        sd["position_net." + k] = v.contiguous()
    save_file(sd, path)


def test_modules_match_diffusers(tmp_path):
    fusers, pn = _diffusers_parts()
    _write(str(tmp_path / "g.safetensors"), fusers, pn)
    g = gl.load_gligen(str(tmp_path / "g.safetensors")).model
    assert len(g.module_list) == len(BLOCKS)
    gen = torch.Generator().manual_seed(1)
    boxes = torch.rand(2, 30, 4, generator=gen)
    masks = (torch.rand(2, 30, generator=gen) > 0.5).float()
    emb = torch.randn(2, 30, 32, generator=gen)
    with torch.no_grad():
        objs = g.position_net(boxes, masks, emb)
        torch.testing.assert_close(objs, pn(boxes, masks, positive_embeddings=emb), rtol=1e-5, atol=1e-5)
        for ours, ref, (_, dim) in zip(g.module_list, fusers, BLOCKS):
            x = torch.randn(2, 16, dim, generator=gen)
            torch.testing.assert_close(ours(x, objs), ref(x, objs), rtol=1e-5, atol=1e-5)


def test_text_box_changes_sampling_and_zero_gates_do_not(workspace):
    from models import fixtures as fx
    from comfyui.models import sd as sdm
    from comfyui.sampling.samplers import common_ksampler
    from comfyui.nodes.builtin.text import CLIPTextEncode
    ck = fx.make_sd1_checkpoint(os.path.join(workspace, "models", "checkpoints", "sd1.safetensors"))
    model, clip, _ = sdm.load_checkpoint_guess_config(ck)
    for name, alpha in (("gligen_sd14_textbox_pruned.safetensors", 0.7), ("zero.safetensors", 0.0)):
        _write(os.path.join(workspace, "models", "gligen", name), *_diffusers_parts(alpha))
    (g,) = nodes.GLIGENLoader().load_gligen("gligen_sd14_textbox_pruned.safetensors")
    (g0,) = nodes.GLIGENLoader().load_gligen("zero.safetensors")
    pos = CLIPTextEncode().encode(clip, "a cat and a dog")[0]
    neg = CLIPTextEncode().encode(clip, "")[0]
    (boxed,) = nodes.GLIGENTextBoxApply().append(pos, clip, g, "a cat", 32, 32, 0, 16)
    (boxed2,) = nodes.GLIGENTextBoxApply().append(boxed, clip, g, "a dog", 32, 32, 32, 16)
    kind, patcher, params = boxed2[0][1]["gligen"]
    assert kind == "position" and patcher is g and [p[1:] for p in params] == [(4, 4, 2, 0), (4, 4, 2, 4)]
    assert "gligen" not in pos[0][1]
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    run = lambda p: common_ksampler(model, 2, 2, 4.0, "euler", "normal", p, neg, lat)[0]["samples"]  # noqa: E731
    base = run(pos)
    effect = (run(boxed2) - base).abs().mean()
    assert effect > 1e-3
    assert (run(boxed2) - run(boxed)).abs().mean() > 1e-5  # the second box counts
    (zero,) = nodes.GLIGENTextBoxApply().append(pos, clip, g0, "a cat", 32, 32, 0, 16)
    # tanh(0) gates leave the UNet output untouched; what remains is float noise from running
    # cond and uncond as two batches of 1 (entries with GLIGEN patches are not batched together)
    noise = (run(zero) - base).abs().mean()
    assert noise < 1e-3 and noise < effect / 20, (noise, effect)
    runtime.current().model_files.clear()
