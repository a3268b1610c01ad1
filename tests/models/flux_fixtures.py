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
    no quant convs), tiny widths."""
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    m = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
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
