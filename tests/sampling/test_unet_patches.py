"""FreeU / FreeU_V2 (the published formula on hand-made tensors), PAG and the attention
multipliers on a tiny random-weight SD1 checkpoint, through the UNet hooks they use."""
import os
import types

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models.lora import calculate_weight
from comfyui.nodes.builtin import unet_patches as U
from comfyui.sampling.samplers import common_ksampler

from models import fixtures as fx


class FakePatcher:
    """Just enough of a MODEL for the FreeU node: model_channels and set_model_patch."""

    def __init__(self, mc):
        self.model = types.SimpleNamespace(model_config=types.SimpleNamespace(unet_config={"model_channels": mc}))
        self.patches = {}

    def clone(self):
        return FakePatcher(self.model.model_config.unet_config["model_channels"])

    def set_model_patch(self, fn, name):
        self.patches.setdefault(name, []).append(fn)


def _freeu_fn(cls, mc, *args):
    (m,) = cls().patch(FakePatcher(mc), *args)
    return m.patches["output_block_patch"][0]


def test_fourier_filter_scales_the_low_frequency_block():
    x = torch.full((1, 1, 8, 8), 2.0)  # only the DC term, which is in the centred 2x2 block
    torch.testing.assert_close(U.fourier_filter(x, 1, 0.25), torch.full_like(x, 0.5))
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float().reshape(1, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(U.fourier_filter(checker, 1, 0.0), checker, atol=1e-5, rtol=1e-5)  # Nyquist kept


def test_freeu_formula():
    fn = _freeu_fn(U.FreeU, 1, 2.0, 3.0, 0.5, 1.0)  # 4 channels: (b1, s1), 2 channels: (b2, s2)
    h = torch.ones(1, 4, 2, 2)
    hsp = torch.full((1, 4, 2, 2), 2.0)
    h2, s2 = fn(h, hsp, {})
    assert h2[:, :2].eq(2.0).all() and h2[:, 2:].eq(1.0).all()
    torch.testing.assert_close(s2, torch.full_like(hsp, 1.0))  # DC * s1
    assert h.eq(1.0).all()  # the input is not modified
    h2, s2 = fn(torch.ones(1, 2, 2, 2), hsp, {})
    assert h2[:, :1].eq(3.0).all() and h2[:, 1:].eq(1.0).all()
    torch.testing.assert_close(s2, hsp)  # s2 = 1
    h3, s3 = fn(torch.ones(1, 3, 2, 2), hsp, {})  # other widths untouched
    assert h3.eq(1.0).all() and s3 is hsp


def test_freeu_v2_formula():
    fn = _freeu_fn(U.FreeU_V2, 1, 3.0, 1.0, 1.0, 1.0)
    h = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 2).repeat(1, 4, 1, 1)  # channel mean (1, 3) -> normalised (0, 1)
    h2, _ = fn(h, torch.zeros(1, 4, 1, 2), {})
    # first half: x ((3 - 1) * (0, 1) + 1) = x (1, 3)
    torch.testing.assert_close(h2[0, :2, 0], torch.tensor([[1.0, 9.0], [1.0, 9.0]]))
    torch.testing.assert_close(h2[0, 2:], h[0, 2:])


def test_freeu_default_inputs():
    assert U.FreeU.INPUT_TYPES()["required"]["b1"][1] == {"default": 1.1, "min": 0.0, "max": 10.0, "step": 0.01}
    assert U.FreeU_V2.INPUT_TYPES()["required"]["b2"][1]["default"] == 1.4


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    from comfyui.models import sd as sdm
    memory.configure(None, cpu=True)
    path = fx.make_sd1_checkpoint(os.path.join(tmp_path_factory.mktemp("sd1"), "sd1.safetensors"))
    model, clip, _ = sdm.load_checkpoint_guess_config(path)
    from comfyui.nodes.builtin.text import CLIPTextEncode
    pos = CLIPTextEncode().encode(clip, "a photo of a cat")[0]
    neg = CLIPTextEncode().encode(clip, "")[0]
    yield {"model": model, "clip": clip, "pos": pos, "neg": neg}
    runtime.current().model_files.clear()
    memory.configure(None)


def _sample(env, model, cfg=4.0):
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    return common_ksampler(model, 3, 2, cfg, "euler", "normal", env["pos"], env["neg"], lat)[0]["samples"]


def test_freeu_on_sd1_calls_the_decoder_hook(sd1):
    base = _sample(sd1, sd1["model"])
    (ident,) = U.FreeU().patch(sd1["model"], 1.0, 1.0, 1.0, 1.0)
    # factors 1: the same up to float noise of the FFT round trip (and the skip's memory layout)
    noise = (_sample(sd1, ident) - base).abs().max()
    (m,) = U.FreeU().patch(sd1["model"], 1.3, 1.4, 0.9, 0.2)
    widths = []
    inner = m.model_options["transformer_options"]["patches"]["output_block_patch"][0]

    def spy(h, hsp, to):
        widths.append(h.shape[1])
        return inner(h, hsp, to)

    m.model_options["transformer_options"]["patches"]["output_block_patch"] = [spy]
    out = _sample(sd1, m)
    mc = sd1["model"].model.model_config.unet_config["model_channels"]
    assert mc * 4 in widths or mc * 2 in widths
    effect = (out - base).abs().max()
    assert noise < 2e-3 and noise < effect / 20, (noise, effect)
    (v2,) = U.FreeU_V2().patch(sd1["model"], 1.3, 1.4, 0.9, 0.2)
    assert not torch.allclose(_sample(sd1, v2), base)
    assert "patches" not in sd1["model"].model_options["transformer_options"]


def test_attn1_replace_hook_and_pag(sd1):
    from comfyui.models.stable_diffusion.unet import attention
    model = sd1["model"]
    base = _sample(sd1, model)
    (zero,) = U.PerturbedAttentionGuidance().patch(model, 0.0)
    torch.testing.assert_close(_sample(sd1, zero), base)
    # a replace function that computes ordinary attention changes nothing; the identity one does
    same = model.clone()
    same.set_model_patch_replace(lambda q, k, v, o: attention(q, k, v, o["n_heads"]), "attn1", "middle", 0)
    torch.testing.assert_close(_sample(sd1, same), base, atol=1e-5, rtol=1e-5)
    ident = model.clone()
    ident.set_model_patch_replace(lambda q, k, v, o: v, "attn1", "middle", 0)
    assert not torch.allclose(_sample(sd1, ident), base)
    (pag,) = U.PerturbedAttentionGuidance().patch(model, 3.0)
    assert not torch.allclose(_sample(sd1, pag), base)


def test_attention_multipliers(sd1):
    model = sd1["model"]
    (m,) = U.UNetSelfAttentionMultiply().patch(model, 1.0, 0.5, 2.0, 0.0)
    sd = model.model_state_dict()
    keys = [k for k in m.patches if "attn1" in k]
    assert keys and all(".attn1." in k for k in m.patches)
    for key in keys:
        factor = {"to_q": 1.0, "to_k": 0.5, "to_v": 2.0, "to_out": 0.0}[key.split(".attn1.")[1].split(".")[0]]
        w = sd[key].float()
        torch.testing.assert_close(calculate_weight(m.patches[key], w.clone(), key), w * factor)
    assert not torch.allclose(_sample(sd1, m), _sample(sd1, model))
    (c,) = U.UNetCrossAttentionMultiply().patch(model, 1.0, 1.0, 1.0, 1.0)
    assert all(".attn2." in k for k in c.patches)
    torch.testing.assert_close(_sample(sd1, c), _sample(sd1, model))
    clip = sd1["clip"]
    (cm,) = U.CLIPAttentionMultiply().patch(clip, 1.0, 1.0, 1.0, 0.5)
    ck = [k for k in cm.patcher.patches if "out_proj" in k]
    assert ck and not clip.patcher.patches
    csd = clip.patcher.model_state_dict()
    torch.testing.assert_close(calculate_weight(cm.patcher.patches[ck[0]], csd[ck[0]].float().clone(), ck[0]),
                               csd[ck[0]].float() * 0.5)
