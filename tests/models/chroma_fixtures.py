"""Tiny random-weight Chroma files built with the independent implementation (diffusers'
``ChromaTransformer2DModel``) and written in the real single-file layout (BFL keys with the
``distilled_guidance_layer`` approximator), plus the text encoder and VAE the Chroma template
asks for.

diffusers' own single-file converter hard-codes the real widths; the diffusers -> native key map
is the package's (``comfyui.models.chroma.convert``), checked by the numerical comparison."""
from __future__ import annotations

import torch

FP8_MAX = 448.0  # float8_e4m3fn


def diffusers_chroma(seed: int = 0, hidden: int = 64, heads: int = 2, depth: int = 2, depth_single: int = 2,
                     context: int = 32, approx_hidden: int = 48, approx_layers: int = 2, in_channels: int = 64):
    """A random diffusers ChromaTransformer2DModel (every weight drawn, norms around 1)."""
    from diffusers import ChromaTransformer2DModel

    from comfyui.models.dit import rope_axes
    head_dim = hidden // heads
    torch.manual_seed(seed)
    m = ChromaTransformer2DModel(patch_size=1, in_channels=in_channels, num_layers=depth, num_single_layers=depth_single,
                                 attention_head_dim=head_dim, num_attention_heads=heads,
                                 joint_attention_dim=context, axes_dims_rope=tuple(rope_axes(head_dim)),
                                 approximator_num_channels=64, approximator_hidden_dim=approx_hidden,
                                 approximator_layers=approx_layers).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m


def diffusers_to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from comfyui.models.chroma.convert import diffusers_to_native
    return diffusers_to_native(sd)


def radiance(seed: int = 0, patch: int = 16, nerf_hidden: int = 16, nerf_depth: int = 2, max_freqs: int = 8,
             mlp_ratio: int = 4, conv_head: bool = False, x0: bool = True, **kw):
    """(diffusers ChromaTransformer2DModel, native Chroma Radiance state dict): the transformer
    built by diffusers on channel-major RGB patches (its ``x_embedder`` is the native
    ``img_in_patch`` convolution, reshaped), its final layer dropped, a random NeRF head (no
    independent implementation exists) and, with ``x0``, the ``__x0__`` marker."""
    m = diffusers_chroma(seed=seed, in_channels=3 * patch * patch, **kw)
    sd = diffusers_to_bfl(m.state_dict())
    hidden = sd["img_in.weight"].shape[0]
    sd["img_in_patch.weight"] = sd.pop("img_in.weight").reshape(hidden, 3, patch, patch)
    sd["img_in_patch.bias"] = sd.pop("img_in.bias")
    for k in [k for k in sd if k.startswith("final_layer.")]:
        del sd[k]
    g = torch.Generator().manual_seed(seed + 1)
    embed_in = 3 + max_freqs * max_freqs
    sd["nerf_image_embedder.embedder.0.weight"] = torch.randn(nerf_hidden, embed_in, generator=g) / embed_in ** 0.5
    sd["nerf_image_embedder.embedder.0.bias"] = 0.05 * torch.randn(nerf_hidden, generator=g)
    for i in range(nerf_depth):
        generated = 3 * nerf_hidden * nerf_hidden * mlp_ratio
        sd[f"nerf_blocks.{i}.param_generator.weight"] = torch.randn(generated, hidden, generator=g) / hidden ** 0.5
        sd[f"nerf_blocks.{i}.param_generator.bias"] = 0.05 * torch.randn(generated, generator=g)
        sd[f"nerf_blocks.{i}.norm.scale"] = 1.0 + 0.1 * torch.randn(nerf_hidden, generator=g)
    head = "nerf_final_layer_conv." if conv_head else "nerf_final_layer."
    sd[head + "norm.scale"] = 1.0 + 0.1 * torch.randn(nerf_hidden, generator=g)
    if conv_head:
        sd[head + "conv.weight"] = torch.randn(3, nerf_hidden, 3, 3, generator=g) / (9 * nerf_hidden) ** 0.5
        sd[head + "conv.bias"] = 0.05 * torch.randn(3, generator=g)
    else:
        sd[head + "linear.weight"] = torch.randn(3, nerf_hidden, generator=g) / nerf_hidden ** 0.5
        sd[head + "linear.bias"] = 0.05 * torch.randn(3, generator=g)
    if x0:
        sd["__x0__"] = torch.empty(0)
    return m, sd


def scaled_fp8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's scaled-fp8 file convention: a ``scaled_fp8`` marker, each Linear weight in
    float8_e4m3fn with its float32 ``scale_weight`` (embeddings stay as they are)."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for k, v in sd.items():
        if k.endswith(".weight") and v.ndim == 2 and k != "shared.weight":
            scale = v.abs().max().float() / FP8_MAX
            out[k] = (v.float() / scale).to(torch.float8_e4m3fn)
            out[k[:-len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            out[k] = v
    return out


def write_chroma_files(models_dir: str) -> dict[str, str]:
    """The Chroma template's files under ``models_dir``, tiny: ``Chroma1-HD-fp8mixed.safetensors``
    (diffusion_models; scaled fp8, T5 width 64), ``Chroma1-HD.safetensors`` (the same in bf16),
    ``t5xxl_fp8_e4m3fn_scaled.safetensors`` (text_encoders; scaled fp8, HF keys) and the
    16-channel ``ae.safetensors``. Returns name -> path."""
    import os

    from safetensors.torch import save_file

    from comfyui.models.vae import convert_vae_state_dict
    from . import flux_fixtures as ffx

    def save(sd: dict[str, torch.Tensor], folder: str, name: str) -> str:
        path = os.path.join(models_dir, folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
        return path

    chroma = diffusers_to_bfl(diffusers_chroma(seed=31, context=64).state_dict())
    t5 = ffx.t5_sd(ffx.hf_t5(seed=32))
    return {
        "Chroma1-HD-fp8mixed.safetensors": save(scaled_fp8(chroma), "diffusion_models",
                                                "Chroma1-HD-fp8mixed.safetensors"),
        "Chroma1-HD.safetensors": save({k: v.bfloat16() for k, v in chroma.items()}, "diffusion_models",
                                       "Chroma1-HD.safetensors"),
        "t5xxl_fp8_e4m3fn_scaled.safetensors": save(scaled_fp8(t5), "text_encoders",
                                                    "t5xxl_fp8_e4m3fn_scaled.safetensors"),
        "ae.safetensors": save(convert_vae_state_dict(ffx.diffusers_vae16(seed=33).state_dict()), "vae",
                               "ae.safetensors"),
    }


if __name__ == "__main__":  # python -m tests.models.chroma_fixtures <ComfyUI models directory>
    import sys
    for name, path in write_chroma_files(sys.argv[1]).items():
        print(name, "->", path)
