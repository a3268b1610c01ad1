"""ControlNet nodes on a real (tiny) model: control-LoRA and difference ControlNets equal the
full ControlNet they encode; the old Apply ControlNet also controls the negative pass;
start/end percent; several ControlNets chained."""
from __future__ import annotations

import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import controlnet as cn
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.nodes.builtin import controlnet as nodes

from .cn_fixtures import (SD15_SHAPED_UNET, _save, control_lora_from, diffusers_controlnet, ldm_from_diffusers,
                          sd15_shaped_state_dict)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    memory.configure(None, cpu=True)
    d = tmp_path_factory.mktemp("cn")
    ck = sd15_shaped_state_dict(0)
    unet = {k[len("model.diffusion_model."):]: v for k, v in ck.items() if k.startswith("model.diffusion_model.")}
    _save(ck, str(d / "ck.safetensors"))
    ldm = ldm_from_diffusers(diffusers_controlnet(SD15_SHAPED_UNET, seed=3))
    lora, full = control_lora_from(ldm, unet)
    _save(lora, str(d / "control-lora-canny-rank4.safetensors"))
    _save({"control_model." + k: v for k, v in full.items()}, str(d / "full_of_lora.safetensors"))
    _save(ldm, str(d / "control_v11p_sd15_scribble.safetensors"))
    diff = {k: (v - unet[k[len("control_model."):]] if k[len("control_model."):] in unet else v) for k, v in ldm.items()}
    diff["difference"] = torch.tensor([])
    _save(diff, str(d / "diff_control_sd15_scribble.safetensors"))
    yield d
    memory.configure(None)
    runtime.current().model_files.clear()


@pytest.fixture
def model(files):
    memory.configure(None, cpu=True)
    return sdm.load_checkpoint_guess_config(str(files / "ck.safetensors"))


def _residuals(net, bm, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    hint = torch.rand(1, 3, 64, 64, generator=g)
    c = net.copy().set_cond_hint(hint, 0.8)
    c.pre_run(bm, bm.model_sampling.percent_to_sigma)
    out = c.get_control(x, torch.tensor([3.0, 3.0]), {"c_crossattn": torch.randn(2, 7, 32, generator=g)}, 2)
    c.cleanup()
    return out


def test_control_lora_equals_the_full_controlnet(files, model):
    m, _, _ = model
    lora_net = cn.load_controlnet(str(files / "control-lora-canny-rank4.safetensors"))
    assert isinstance(lora_net, cn.ControlLora)
    full_net = cn.load_controlnet(str(files / "full_of_lora.safetensors"))
    a, b = _residuals(lora_net, m.model), _residuals(full_net, m.model)
    for x, y in zip(a["output"] + a["middle"], b["output"] + b["middle"]):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_diff_controlnet_loader_adds_the_model_weights(files, model, workspace):
    m, _, _ = model
    os.makedirs(workspace / "models" / "controlnet", exist_ok=True)
    for n in ("diff_control_sd15_scribble.safetensors", "control_v11p_sd15_scribble.safetensors"):
        os.link(files / n, workspace / "models" / "controlnet" / n)
    (diff_net,) = nodes.DiffControlNetLoader().load_controlnet(m, "diff_control_sd15_scribble.safetensors")
    (full_net,) = nodes.ControlNetLoader().load_controlnet("control_v11p_sd15_scribble.safetensors")
    a, b = _residuals(diff_net, m.model), _residuals(full_net, m.model)
    for x, y in zip(a["output"] + a["middle"], b["output"] + b["middle"]):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4)


def _sample(m, clip, positive, negative, seed=3):
    from comfyui.sampling.samplers import common_ksampler
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return common_ksampler(m, seed, 3, 6.0, "euler", "normal", positive, negative, latent)[0]["samples"]


def test_old_apply_controls_both_passes_and_advanced_percent_ranges(files, model):
    from comfyui.nodes.builtin.text import CLIPTextEncode
    m, clip, _ = model
    pos = CLIPTextEncode().encode(clip, "a house")[0]
    neg = CLIPTextEncode().encode(clip, "blurry")[0]
    net = cn.load_controlnet(str(files / "control_v11p_sd15_scribble.safetensors"))
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(8))
    base = _sample(m, clip, pos, neg)
    (old_pos,) = nodes.ControlNetApply().apply_controlnet(pos, net, image, 0.9)
    assert old_pos[0][1]["control_apply_to_uncond"] is True and "control" not in neg[0][1]
    adv_pos, adv_neg = nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, image, 0.9, 0.0, 1.0)
    assert adv_pos[0][1]["control"] is adv_neg[0][1]["control"]
    old = _sample(m, clip, old_pos, neg)
    adv = _sample(m, clip, adv_pos, adv_neg)
    assert (old - base).abs().mean() > 1e-3
    torch.testing.assert_close(old, adv, rtol=1e-4, atol=1e-4)  # the sampler gave the uncond the same control
    # only on the positive: a different result
    pos_only, _ = nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, image, 0.9, 0.0, 1.0)
    assert (_sample(m, clip, pos_only, neg) - adv).abs().mean() > 1e-4
    # an empty percent range is the same as no ControlNet
    p0, n0 = nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, image, 0.9, 1.0, 1.0)
    torch.testing.assert_close(_sample(m, clip, p0, n0), base, rtol=1e-5, atol=1e-5)
    # strength 0: the conditioning comes back unchanged
    assert nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, image, 0.0, 0.0, 1.0) == (pos, neg)
    # chained: the second apply keeps the first as its previous ControlNet
    p2, n2 = nodes.ControlNetApplyAdvanced().apply_controlnet(adv_pos, adv_neg, net, image, 0.5, 0.0, 1.0)
    assert p2[0][1]["control"].previous_controlnet is adv_pos[0][1]["control"]
    assert (_sample(m, clip, p2, n2) - adv).abs().mean() > 1e-4


def test_set_union_type_copies(files):
    net = cn.load_controlnet(str(files / "control_v11p_sd15_scribble.safetensors"))
    (typed,) = nodes.SetUnionControlNetType().set_controlnet_type(net, "depth")
    assert typed is not net and typed.union_type == [1] and net.union_type == []
    assert nodes.SetUnionControlNetType().set_controlnet_type(typed, "auto")[0].union_type == []


def test_clip_text_encode_controlnet_gives_the_controlnet_its_own_text(files, model):
    from comfyui.nodes.builtin.text import CLIPTextEncode
    from comfyui.nodes.builtin.text_options import CLIPTextEncodeControlnet
    m, clip, _ = model
    pos = CLIPTextEncode().encode(clip, "a house")[0]
    neg = CLIPTextEncode().encode(clip, "blurry")[0]
    net = cn.load_controlnet(str(files / "control_v11p_sd15_scribble.safetensors"))
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(8))
    adv_pos, adv_neg = nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, image, 0.9, 0.0, 1.0)
    base = _sample(m, clip, adv_pos, adv_neg)
    (same,) = CLIPTextEncodeControlnet().encode(clip, adv_pos, "a house")
    assert "cross_attn_controlnet" not in adv_pos[0][1]  # the input is not modified
    torch.testing.assert_close(same[0][1]["cross_attn_controlnet"], pos[0][0])
    assert same[0][1]["pooled_output_controlnet"].shape == pos[0][1]["pooled_output"].shape
    # the prompt's own text: the same up to float noise (the positive now runs in its own batch,
    # its conditioning no longer matching the negative's)
    same_diff = (_sample(m, clip, same, adv_neg) - base).abs().mean()
    (other,) = CLIPTextEncodeControlnet().encode(clip, adv_pos, "a red dog on the beach")
    other_diff = (_sample(m, clip, other, adv_neg) - base).abs().mean()
    assert same_diff < 1e-3 and other_diff > 10 * same_diff, (same_diff, other_diff)
