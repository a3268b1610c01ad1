"""LoRA (kohya and diffusers/peft forms) as ModelPatcher patches; patching and unpatching."""
from __future__ import annotations

import pytest
import torch

from comfyui.models import lora as lora_mod
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.models.loading import load_torch_file

from . import fixtures as fx

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    memory.unload_all_models()
    yield
    memory.unload_all_models()
    memory.configure(None)


@pytest.mark.parametrize("form", ["kohya", "peft"])
def test_lora_matches_merged_reference(tmp_path, form):
    from .test_numerics import SD1_DIFFUSERS, _diffusers_unet
    sd = fx.sd1_state_dict(seed=21)
    model, clip, _ = sdm.load_state_dict_guess_config(sd)
    path = str(tmp_path / f"lora_{form}.safetensors")
    deltas = fx.make_lora(path, form=form)
    strength_m, strength_c = 0.7, 1.3
    lora = load_torch_file(path)
    m2, c2 = lora_mod.load_lora_for_models(model, clip, lora, strength_m, strength_c)
    assert m2 is not model and c2 is not clip
    assert len(m2.patches) == len(fx.SD1_LORA_UNET_TARGETS)
    assert len(c2.patcher.patches) == len(fx.SD1_LORA_TE_TARGETS)

    # reference: diffusers UNet whose weights have the delta merged by diffusers module name
    ldm = {k[len("model.diffusion_model."):]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    ref = _diffusers_unet(ldm, model.model.model_config.unet_config, SD1_DIFFUSERS)
    with torch.no_grad():
        params = dict(ref.named_parameters())
        for name, delta in deltas["unet"].items():
            params[name + ".weight"].add_(strength_m * delta)
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 32)
    t = torch.tensor([500.0])
    base_w = model.model.diffusion_model.input_blocks[1][1].transformer_blocks[0].attn1.to_q.weight
    with torch.no_grad():
        memory.load_models_gpu([m2])
        ours = m2.model.diffusion_model(x, t, context=ctx)
        theirs = ref(x, t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=2e-4)
    # the base weight object was kept (backup), not copied, and comes back on unpatch
    memory.load_models_gpu([model])
    assert model.model.diffusion_model.input_blocks[1][1].transformer_blocks[0].attn1.to_q.weight is base_w
    with torch.no_grad():
        plain = model.model.diffusion_model(x, t, context=ctx)
    assert not torch.allclose(plain, ours, atol=1e-4)

    # text encoder
    from transformers import CLIPTextConfig, CLIPTextModel
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu",
                                      bos_token_id=49406, eos_token_id=49407)).eval()
    hf = {k[len("cond_stage_model.transformer."):]: v for k, v in sd.items() if k.startswith("cond_stage_model.transformer.")}
    for name, delta in deltas["te"].items():
        hf[name + ".weight"] = hf[name + ".weight"] + strength_c * delta
    fx.load_into_hf(te, hf)
    toks = c2.tokenize("a lora test")
    ids = torch.tensor([[t for t, _ in toks["l"][0]]])
    with torch.no_grad():
        expect = te(ids).last_hidden_state
    torch.testing.assert_close(c2.encode_from_tokens(toks), expect, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(clip.encode_from_tokens(toks), expect, atol=1e-4)


def test_patches_do_not_leak_between_clones_and_strength_zero(tmp_path):
    sd = fx.sd1_state_dict(seed=22)
    model, clip, _ = sdm.load_state_dict_guess_config(sd)
    path = str(tmp_path / "l.safetensors")
    fx.make_lora(path)
    lora = load_torch_file(path)
    a, _ = lora_mod.load_lora_for_models(model, None, lora, 1.0, 0.0)
    b, _ = lora_mod.load_lora_for_models(model, None, lora, -1.0, 0.0)
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 32)
    s = torch.tensor([3.0])

    def run(p):
        memory.load_models_gpu([p])
        return p.model.apply_model(x, s, c_crossattn=ctx)

    base = run(model)
    oa = run(a)
    ob = run(b)
    assert not torch.allclose(oa, base, atol=1e-4)
    assert not torch.allclose(oa, ob, atol=1e-4)
    torch.testing.assert_close(run(model), base)  # unpatched again
    z, _ = lora_mod.load_lora_for_models(model, None, lora, 0.0, 0.0)
    torch.testing.assert_close(run(z), base)


def test_lowvram_streaming_matches_full_load(tmp_path):
    """Partial loading (a byte budget) streams the other layers and applies LoRA patches on
    the fly to a cast copy; the result equals the fully loaded, patched model."""
    sd = fx.sd1_state_dict(seed=23)
    model, _, _ = sdm.load_state_dict_guess_config(sd)
    path = str(tmp_path / "l.safetensors")
    fx.make_lora(path)
    patched, _ = lora_mod.load_lora_for_models(model, None, load_torch_file(path), 0.8, 0.0)
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 32)
    s = torch.tensor([3.0])
    patched.patch_model(torch.device("cpu"))
    full = patched.model.apply_model(x, s, c_crossattn=ctx)
    patched.unpatch_model(torch.device("cpu"))
    patched.patch_model(torch.device("cpu"), lowvram_budget=200_000)
    st = patched.model._patcher_state
    assert st["lowvram"] and 0 < st["loaded_bytes"] <= 200_000
    streamed = [m for _, m in __import__("comfyui.models.ops", fromlist=["x"]).castable_modules(patched.model)
                if m.cast_weights]
    assert streamed and any(m.weight_function for m in streamed)
    part = patched.model.apply_model(x, s, c_crossattn=ctx)
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)
    patched.unpatch_model(torch.device("cpu"))
    memory.load_models_gpu([model])
    fresh = sdm.load_state_dict_guess_config(sd)[0]
    memory.load_models_gpu([fresh])  # the same weight layout as the unpatched model
    torch.testing.assert_close(model.model.apply_model(x, s, c_crossattn=ctx),
                               fresh.model.apply_model(x, s, c_crossattn=ctx))


def test_calculate_weight_kinds():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, generator=g)
    up, down = torch.randn(6, 2, generator=g), torch.randn(2, 5, generator=g)
    out = lora_mod.calculate_weight([(0.5, ("lora", (up, down, 4.0, None, None)), 1.0, None, None)], w.clone(), "k")
    torch.testing.assert_close(out, w + 0.5 * 2.0 * up @ down)  # alpha / rank = 2
    d = torch.randn(6, 5, generator=g)
    out = lora_mod.calculate_weight([(2.0, d, 0.5, None, None)], w.clone(), "k")
    torch.testing.assert_close(out, 0.5 * w + 2.0 * d)
    # DoRA (magnitude per input column): the merged weight's column norms become dora_scale
    scale = torch.rand(1, 5, generator=g) + 0.5
    out = lora_mod.calculate_weight([(1.0, ("lora", (up, down, None, None, scale)), 1.0, None, None)], w.clone(), "k")
    torch.testing.assert_close(out.norm(dim=0, keepdim=True), scale, atol=1e-5, rtol=1e-5)
    # shape mismatch is reported and skipped, weight unchanged
    out = lora_mod.calculate_weight([(1.0, torch.ones(3, 3), 1.0, None, None)], w.clone(), "k")
    torch.testing.assert_close(out, w)
