"""Tiny random-weight Flux components built with the independent implementations (diffusers'
``FluxTransformer2DModel``, transformers' ``T5EncoderModel``) and written in the real file
layouts (BFL keys for the transformer, HF keys for T5)."""
from __future__ import annotations

import torch

# hidden 64 = 2 heads x 32 (RoPE axes 4 + 14 + 14), text width 32, pooled width 24
TINY_FLUX = dict(hidden=64, heads=2, depth=1, depth_single=1, context=32, vec=24)


def diffusers_flux(seed: int = 0, guidance: bool = True, in_channels: int = 16, depth: int = 1,
                   depth_single: int = 1, hidden: int = 64, heads: int = 2, context: int = 32, vec: int = 24):
    """A random diffusers FluxTransformer2DModel (every weight drawn, norms around 1)."""
    from diffusers import FluxTransformer2DModel
    from comfyui.models.flux.detection import rope_axes
    head_dim = hidden // heads
    torch.manual_seed(seed)
    m = FluxTransformer2DModel(patch_size=1, in_channels=in_channels * 4, out_channels=16 * 4, num_layers=depth,
                               num_single_layers=depth_single, attention_head_dim=head_dim,
                               num_attention_heads=heads, joint_attention_dim=context,
                               pooled_projection_dim=vec, guidance_embeds=guidance,
                               axes_dims_rope=tuple(rope_axes(head_dim))).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m


def hf_t5(seed: int = 0, d_model: int = 64, heads: int = 2, d_ff: int = 96, layers: int = 2,
          vocab: int = 32128, umt5: bool = False):
    """A random transformers T5EncoderModel (v1.1: gated GELU, d_kv 64)."""
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab, d_model=d_model, d_kv=64, d_ff=d_ff, num_layers=layers, num_heads=heads,
                   feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                   relative_attention_max_distance=128, dropout_rate=0.0)
    m = T5EncoderModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))
    return m


def t5_sd(model) -> dict[str, torch.Tensor]:
    """The file layout of a T5 encoder (HF keys; ``encoder.embed_tokens`` is ``shared``)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}


def diffusers_vae16(seed: int = 0):
    """A random diffusers AutoencoderKL shaped like Flux's ae.safetensors (16 latent channels,
    no quant convs, 8x downscale), tiny widths."""
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    m = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64), layers_per_block=1,
                      latent_channels=16, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
                      scaling_factor=0.3611, shift_factor=0.1159).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return m


# ------------------------------------------------------------------------ files for workflows
def _flux_native(seed: int, **kw) -> dict[str, torch.Tensor]:
    from comfyui.models.flux.convert import diffusers_to_native
    return diffusers_to_native(diffusers_flux(seed=seed, context=64, vec=64, **kw).state_dict())


def depth_lora_sd(hidden: int = 64, in_patch: int = 64, heads: int = 2, rank: int = 4,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny ``flux1-depth-dev-lora`` in Black Forest Labs' own layout: bare BFL keys, LoRA A/B
    with a bias on B, an input projection for twice the channels (noise + depth latent) and
    replaced q/k norm scales."""
    g = torch.Generator().manual_seed(seed)
    head = hidden // heads
    return {"img_in.lora_A.weight": torch.randn(rank, 2 * in_patch, generator=g) / (2 * in_patch) ** 0.5,
            "img_in.lora_B.weight": torch.randn(hidden, rank, generator=g) * 0.2,
            "img_in.lora_B.bias": torch.randn(hidden, generator=g) * 0.05,
            "double_blocks.0.img_attn.qkv.lora_A.weight": torch.randn(rank, hidden, generator=g) / hidden ** 0.5,
            "double_blocks.0.img_attn.qkv.lora_B.weight": torch.randn(3 * hidden, rank, generator=g) * 0.1,
            "double_blocks.0.img_attn.qkv.lora_B.bias": torch.randn(3 * hidden, generator=g) * 0.05,
            "double_blocks.0.img_attn.norm.query_norm.scale": 1.0 + 0.3 * torch.randn(head, generator=g),
            "single_blocks.0.norm.key_norm.scale": 1.0 + 0.3 * torch.randn(head, generator=g)}


def write_flux_files(models_dir: str) -> dict[str, str]:
    """Tiny random-weight Flux.1 files under ``models_dir`` with the names the Flux templates
    and tutorials use, in the real layouts: BFL-key diffusion models (dev, schnell, Fill,
    Canny), an all-in-one fp8 checkpoint (``model.diffusion_model.`` in float8_e4m3fn,
    ``text_encoders.clip_l/t5xxl.transformer.``, ``vae.``), CLIP-L and T5-XXL text encoders
    (HF layout; T5 also as plain fp8) and the 16-channel VAE ``ae.safetensors`` (LDM keys, no
    quant convs). Widths: transformer 64 (2 heads), T5 and CLIP-L 64. Returns name -> path."""
    import os

    from safetensors.torch import save_file

    from comfyui.models.vae import convert_vae_state_dict
    from . import fixtures

    def save(sd: dict[str, torch.Tensor], folder: str, name: str) -> str:
        path = os.path.join(models_dir, folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
        return path

    clip_l = fixtures.hf_text_sd(fixtures.hf_text_model(64, 2, 64, "quick_gelu", seed=21))
    t5 = t5_sd(hf_t5(seed=22))
    vae = convert_vae_state_dict(diffusers_vae16(seed=23).state_dict())
    dev, schnell = _flux_native(24), _flux_native(25, guidance=False)
    out = {
        "flux1-dev.safetensors": save(dev, "diffusion_models", "flux1-dev.safetensors"),
        "flux1-schnell.safetensors": save(schnell, "diffusion_models", "flux1-schnell.safetensors"),
        "flux1-fill-dev.safetensors": save(_flux_native(26, in_channels=96), "diffusion_models",
                                           "flux1-fill-dev.safetensors"),
        "flux1-canny-dev.safetensors": save(_flux_native(27, in_channels=32), "diffusion_models",
                                            "flux1-canny-dev.safetensors"),
        "clip_l.safetensors": save(clip_l, "text_encoders", "clip_l.safetensors"),
        "t5xxl_fp16.safetensors": save({k: v.half() for k, v in t5.items()}, "text_encoders",
                                       "t5xxl_fp16.safetensors"),
        "t5xxl_fp8_e4m3fn.safetensors": save({k: v.to(torch.float8_e4m3fn) for k, v in t5.items()},
                                             "text_encoders", "t5xxl_fp8_e4m3fn.safetensors"),
        "ae.safetensors": save(vae, "vae", "ae.safetensors"),
        "flux1-depth-dev-lora.safetensors": save(depth_lora_sd(seed=28), "loras", "flux1-depth-dev-lora.safetensors"),
    }
    for name, model in (("flux1-dev-fp8.safetensors", dev), ("flux1-schnell-fp8.safetensors", schnell)):
        sd = {"model.diffusion_model." + k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in model.items()}
        sd.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip_l.items()})
        sd.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5.items()})
        sd.update({"vae." + k: v for k, v in vae.items()})
        out[name] = save(sd, "checkpoints", name)
    return out


if __name__ == "__main__":  # python -m tests.models.flux_fixtures <ComfyUI models directory>
    import sys
    for name, path in write_flux_files(sys.argv[1]).items():
        print(name, "->", path)
