"""``comfy.ldm.modules.attention``: the attention function packs call, and the transformer
blocks of our UNet (:mod:`comfyui.models.stable_diffusion.unet`).

``optimized_attention(q, k, v, heads, mask=None, ...)`` takes ``[B, L, heads*dim]`` tensors
(``skip_reshape=True``: ``[B, heads, L, dim]``) and returns ``[B, Lq, heads*dim]``
(``skip_output_reshape=True``: ``[B, heads, Lq, dim]``). Upstream's variants (basic, split,
sub-quadratic, PyTorch) compute the same attention in different memory footprints; here they
are all PyTorch's scaled_dot_product_attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from comfyui.compat import _unsupported
from comfy.ldm.util import default, exists  # noqa: F401
from comfyui.models.stable_diffusion.unet import (GEGLU, BasicTransformerBlock, CrossAttention, FeedForward,  # noqa: F401
                                 SpatialTransformer)


def attention_pytorch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None,
                      attn_precision=None, skip_reshape: bool = False, skip_output_reshape: bool = False,
                      **kwargs) -> torch.Tensor:
    if skip_reshape:
        b, _, _, dim_head = q.shape
    else:
        b, _, inner = q.shape
        dim_head = inner // heads
        q, k, v = (t.view(b, -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if skip_output_reshape:
        return out
    return out.transpose(1, 2).reshape(b, -1, heads * dim_head)


attention_basic = attention_split = attention_sub_quad = attention_pytorch
optimized_attention = optimized_attention_masked = attention_pytorch


def optimized_attention_for_device(device, mask=False, small_input=False):
    return attention_pytorch


def wrap_attn(func):
    """Upstream lets attention overrides wrap ``func``; overrides are not supported, so ``func`` itself."""
    return func


__getattr__ = _unsupported.module_getattr(__name__, {
    "SpatialVideoTransformer", "BasicTransformerBlock3D", "attention_xformers", "attention_sage",
    "attention_flash", "register_attention_function", "get_attention_function",
}, "")
