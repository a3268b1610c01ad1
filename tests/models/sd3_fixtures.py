"""Tiny random-weight SD3 / SD3.5 transformers built with the independent implementation
(diffusers' ``SD3Transformer2DModel``); ``native_sd`` gives them in the real file layout."""
from __future__ import annotations

import torch

# depth 2 -> hidden 128 = 2 heads x 64; text width 4096 like the real CLIP/T5 context would
# make the file large, so the context in these fixtures is `context` wide
TINY_SD3 = dict(depth=2, context=64, pooled=48, pos=16)


def diffusers_sd3(seed: int = 0, depth: int = 2, context: int = 64, pooled: int = 48, pos: int = 16,
                  qk_norm: bool = False, dual_layers: tuple[int, ...] = ()):
    """A random diffusers SD3Transformer2DModel (every weight drawn, norms around 1).
    ``qk_norm`` + ``dual_layers``: SD3.5 large / medium (MMDiT-X)."""
    from diffusers import SD3Transformer2DModel
    torch.manual_seed(seed)
    m = SD3Transformer2DModel(sample_size=pos * 2, patch_size=2, in_channels=16, out_channels=16,
                              num_layers=depth, attention_head_dim=64, num_attention_heads=depth,
                              joint_attention_dim=context, caption_projection_dim=64 * depth,
                              pooled_projection_dim=pooled, pos_embed_max_size=pos,
                              dual_attention_layers=dual_layers,
                              qk_norm="rms_norm" if qk_norm else None).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
        m.pos_embed.pos_embed.add_(0.1 * torch.randn(m.pos_embed.pos_embed.shape, generator=g))
    return m


def native_sd(dm) -> dict[str, torch.Tensor]:
    """The diffusers model's weights in the native layout (``joint_blocks.N...``), converted
    with the family's key map."""
    from comfyui.models.sd3.convert import diffusers_to_native
    return {k: v.detach().clone() for k, v in diffusers_to_native(dm.state_dict()).items()}
