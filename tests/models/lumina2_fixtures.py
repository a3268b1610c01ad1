"""Tiny random-weight Z-Image / Qwen3 models in the real file layouts, built with the
independent implementations (diffusers' ``ZImageTransformer2DModel``, transformers'
``Qwen3Model``), and the key map from diffusers' Z-Image layout to ComfyUI's native one.

``write_default_workflow_models(models_dir)`` writes the three files the frontend's default
workflow (Z-Image Turbo) asks for, under their real names:
``diffusion_models/z_image_turbo_bf16.safetensors``, ``text_encoders/qwen_3_4b.safetensors``
and ``vae/ae.safetensors``. Run as a script: ``python tests/models/lumina2_fixtures.py DIR``.
"""
from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights ~ N(0, 1/fan_in), norm weights ~ 1 + N(0, 0.1), biases and pad tokens small:
    activations stay O(1) through a few blocks, so a 1e-5 comparison means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1 and "pad_token" not in name and "embed_tokens" not in name:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)  # 1/sqrt(fan-in)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g) if p.ndim == 1 else torch.randn(p.shape, generator=g))
    return model.eval()


# ------------------------------------------------------------------------------ Z-Image
def diffusers_z_image(seed: int = 0, dim: int = 64, heads: int = 2, layers: int = 2, refiners: int = 1,
                      cap_feat_dim: int = 32):
    from diffusers import ZImageTransformer2DModel
    head_dim = dim // heads
    axes = [head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8]
    model = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=dim,
                                     n_layers=layers, n_refiner_layers=refiners, n_heads=heads, n_kv_heads=heads,
                                     cap_feat_dim=cap_feat_dim, rope_theta=256.0, t_scale=1000.0, axes_dims=axes,
                                     axes_lens=[1536, 512, 512])
    return randomize(model, seed)


def z_image_diffusers_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers' Z-Image keys -> ComfyUI's (the layout of ``z_image_turbo_bf16.safetensors``):
    separate q/k/v projections -> one ``qkv``, ``to_out.0`` -> ``out``, ``norm_q/k`` ->
    ``q_norm/k_norm``, the patch-size-keyed embedder and final layer -> plain names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            block = key.split(".attention.to_q.")[0]
            out[block + ".attention.qkv.weight"] = torch.cat(
                [sd[f"{block}.attention.to_{n}.weight"] for n in ("q", "k", "v")])
            continue
        key = key.replace("all_x_embedder.2-1.", "x_embedder.").replace("all_final_layer.2-1.", "final_layer.")
        key = key.replace(".attention.to_out.0.", ".attention.out.")
        key = key.replace(".attention.norm_q.", ".attention.q_norm.").replace(".attention.norm_k.", ".attention.k_norm.")
        out[key] = value.detach().clone()
    return out


# -------------------------------------------------------------------------------- Qwen3
def hf_qwen3(seed: int = 0, hidden: int = 64, layers: int = 3, heads: int = 4, kv_heads: int = 2,
             head_dim: int = 32, intermediate: int = 96, vocab: int = 151936):
    """A tiny transformers Qwen3Model with Qwen3's full vocabulary (the tokenizer's ids)."""
    from transformers import Qwen3Config, Qwen3Model
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=4096)
    torch.manual_seed(seed)
    return randomize(Qwen3Model(config), seed)


def qwen3_file_sd(model) -> dict[str, torch.Tensor]:
    """The layout of ComfyUI's ``qwen_3_4b.safetensors``: transformers' keys under ``model.``."""
    return {"model." + k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------- VAE
def diffusers_vae16_f8(seed: int = 0):
    """A tiny random diffusers AutoencoderKL with the layout of Flux's ``ae.safetensors``: 16
    latent channels, no quant convs, four levels (8x downscale), narrow widths."""
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    model = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                          up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 32, 32),
                          layers_per_block=1, latent_channels=16, norm_num_groups=32, use_quant_conv=False,
                          use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
    return randomize(model, seed)


# ------------------------------------------------------------------------ default workflow
def write_default_workflow_models(models_dir: str, seed: int = 0) -> dict[str, str]:
    """The Z-Image Turbo files of the frontend's default workflow, tiny and random (bf16 as
    the real ``z_image_turbo_bf16``). Returns {folder: path}."""
    from comfyui.models.convert import diffusers_vae_to_ldm

    text_width = 16
    files = {
        "diffusion_models": ("z_image_turbo_bf16.safetensors", {
            k: v.to(torch.bfloat16) for k, v in
            z_image_diffusers_to_native(diffusers_z_image(seed, cap_feat_dim=text_width).state_dict()).items()}),
        "text_encoders": ("qwen_3_4b.safetensors", {
            k: v.to(torch.bfloat16) for k, v in
            qwen3_file_sd(hf_qwen3(seed, hidden=text_width, layers=2, heads=2, kv_heads=1, head_dim=8,
                                   intermediate=32)).items()}),
        "vae": ("ae.safetensors", diffusers_vae_to_ldm(diffusers_vae16_f8(seed).state_dict())),
    }
    paths = {}
    for folder, (name, sd) in files.items():
        os.makedirs(os.path.join(models_dir, folder), exist_ok=True)
        paths[folder] = os.path.join(models_dir, folder, name)
        save_file({k: v.contiguous() for k, v in sd.items()}, paths[folder])
    return paths


if __name__ == "__main__":
    for path in write_default_workflow_models(sys.argv[1] if len(sys.argv) > 1 else "models").values():
        print(path)
