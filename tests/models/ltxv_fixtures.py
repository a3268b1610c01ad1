"""Tiny random-weight LTX-Video transformer built with diffusers' ``LTXVideoTransformer3DModel``
and written in the single-file (native) layout: the 4 renames of the real converter."""
from __future__ import annotations

import torch

# 32 heads (the family's rule) x 8 = 256 wide, 2 layers, T5 width 64: about 2.2 M parameters
TINY = dict(heads=32, head_dim=8, layers=2, caption=64, in_channels=128)

# diffusers name -> native name (the checkpoint's), applied as substring replacements
RENAMES = (("proj_in.", "patchify_proj."), ("time_embed.", "adaln_single."), (".norm_q.", ".q_norm."),
           (".norm_k.", ".k_norm."))


def diffusers_ltxv(seed: int = 0, heads: int = 32, head_dim: int = 8, layers: int = 2, caption: int = 64,
                   in_channels: int = 128):
    from diffusers import LTXVideoTransformer3DModel
    torch.manual_seed(seed)
    m = LTXVideoTransformer3DModel(in_channels=in_channels, out_channels=in_channels, num_attention_heads=heads,
                                   attention_head_dim=head_dim, cross_attention_dim=heads * head_dim,
                                   num_layers=layers, caption_channels=caption).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "scale_shift_table" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m


def to_native(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for old, new in RENAMES:
            if old.startswith("."):
                k = k.replace(old, new)
            elif k.startswith(old):
                k = new + k[len(old):]
        out[prefix + k] = v.clone()
    return out
