"""Chroma LoRAs in the namings users' files have -- diffusers/PEFT (``transformer.*``),
OneTrainer / kohya-diffusers (``lora_transformer_*``), BFL (``diffusion_model.*``, lora_A/B and
up/down with alpha) and kohya (``lora_unet_*``) -- patch the native (fused) weights of a tiny
Chroma exactly as merging the same LoRA into diffusers' ChromaTransformer2DModel modules and
converting that model to the native layout does."""
from __future__ import annotations

import pytest
import torch

from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.models.chroma.convert import diffusers_to_native

from . import chroma_fixtures as cfx
from .test_lora_dit import _save, load, peft_form, random_factors, stack, updown_form

pytest.importorskip("diffusers")

PLAIN = {  # diffusers module -> native module
    "x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear",
    "transformer_blocks.0.attn.to_out.0": "double_blocks.0.img_attn.proj",
    "transformer_blocks.1.attn.to_add_out": "double_blocks.1.txt_attn.proj",
    "transformer_blocks.0.ff.net.0.proj": "double_blocks.0.img_mlp.0",
    "transformer_blocks.0.ff_context.net.2": "double_blocks.0.txt_mlp.2",
    "single_transformer_blocks.1.proj_out": "single_blocks.1.linear2",
    "distilled_guidance_layer.in_proj": "distilled_guidance_layer.in_proj",
    "distilled_guidance_layer.layers.1.linear_1": "distilled_guidance_layer.layers.1.in_layer",
    "distilled_guidance_layer.layers.0.linear_2": "distilled_guidance_layer.layers.0.out_layer",
    "distilled_guidance_layer.out_proj": "distilled_guidance_layer.out_proj",
}
FUSED = {
    "double_blocks.0.img_attn.qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                     "transformer_blocks.0.attn.to_v"],
    "double_blocks.1.txt_attn.qkv": ["transformer_blocks.1.attn.add_q_proj", "transformer_blocks.1.attn.add_k_proj",
                                     "transformer_blocks.1.attn.add_v_proj"],
    "single_blocks.0.linear1": ["single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k",
                                "single_transformer_blocks.0.attn.to_v", "single_transformer_blocks.0.proj_mlp"],
}


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    memory.unload_all_models()
    yield
    memory.unload_all_models()
    memory.configure(None)


def lora_file(factors, form: str) -> dict[str, torch.Tensor]:
    if form == "diffusers":
        return peft_form(factors)
    if form == "onetrainer":
        return updown_form(factors, lambda n: "lora_transformer_" + n.replace(".", "_"))
    native = {n: factors[d] for d, n in PLAIN.items()}
    native.update({n: stack([factors[p] for p in parts]) for n, parts in FUSED.items()})
    if form == "bfl":
        return peft_form(native, prefix="diffusion_model.")
    if form == "bfl_updown":
        return updown_form(native, lambda n: "diffusion_model." + n)
    assert form == "kohya"
    return updown_form(native, lambda n: "lora_unet_" + n.replace(".", "_"))


@pytest.mark.parametrize("form", ["diffusers", "onetrainer", "bfl", "bfl_updown", "kohya"])
def test_chroma_lora_layouts_patch_the_native_weights(tmp_path, form, caplog):
    dm = cfx.diffusers_chroma(seed=21)
    path = _save(diffusers_to_native(dm.state_dict()), tmp_path / "Chroma1-HD.safetensors")
    names = list(PLAIN) + [p for parts in FUSED.values() for p in parts]
    factors = random_factors(dm, names, seed=22)
    strength = 0.75
    # the reference: the LoRA merged into diffusers' modules, then the model in native keys
    merged = {k: v.detach().clone() for k, v in dm.state_dict().items()}
    for n, (a, b) in factors.items():
        merged[n + ".weight"] += strength * (b @ a)
    want = diffusers_to_native(merged)

    base = sdm.load_diffusion_model(path)
    assert base.model.model_config.name == "chroma"
    original = {k: v.clone() for k, v in base.model.diffusion_model.state_dict().items()}
    patched = load(base, lora_file(factors, form), strength, caplog)
    assert len(patched.patches) == len(PLAIN) + len(FUSED)
    memory.load_models_gpu([patched])
    got = patched.model.diffusion_model.state_dict()
    changed = 0
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, atol=1e-5, rtol=1e-5, msg=k)
        changed += not torch.equal(original[k], v)
    assert changed == len(PLAIN) + len(FUSED)      # every targeted weight moved, nothing else
    memory.load_models_gpu([base])
    assert all(torch.equal(base.model.diffusion_model.state_dict()[k], v) for k, v in original.items())
