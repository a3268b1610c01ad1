"""Recognise Chroma weights (BFL layout with a ``distilled_guidance_layer``) and read the
network config from tensor shapes.

Upstream fixes every width (3072 hidden, 24 heads, T5 width 4096, approximator 64 -> 5120 x 5
-> 3072); here each comes from the tensors, so on the real files the result equals upstream's
config and tiny test files load through the same path. Head dim = the length of a q/k norm
scale, split into RoPE axes as Flux's (16, 56, 56 for 128).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..dit import rope_axes
from ..family import count_indexed

MARKER = "double_blocks.0.img_attn.norm.key_norm.scale"
APPROXIMATOR = "distilled_guidance_layer."


def describe(sd: Mapping[str, torch.Tensor], prefix: str = "") -> str | None:
    """Chroma Radiance (pixel space, ``nerf_blocks``) has this layout but is not supported yet."""
    if prefix + APPROXIMATOR + "in_proj.weight" in sd and prefix + "nerf_blocks.0.norm.scale" in sd:
        return "Chroma Radiance (pixel-space Chroma with nerf_blocks) is not supported yet"
    return None


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """The Chroma config of the weights under ``prefix``, or None if they are not Chroma
    (latent-space Chroma: ``img_in`` present, no ``nerf_blocks``)."""
    if prefix + MARKER not in sd or prefix + APPROXIMATOR + "norms.0.scale" not in sd:
        return None
    if prefix + "img_in.weight" not in sd or prefix + "nerf_blocks.0.norm.scale" in sd:
        return None
    img_in = sd[prefix + "img_in.weight"]
    hidden = img_in.shape[0]
    head_dim = sd[prefix + MARKER].shape[0]
    approx_in = sd[prefix + APPROXIMATOR + "in_proj.weight"]
    return {
        "image_model": "chroma",
        "in_channels": img_in.shape[1],
        "out_channels": sd[prefix + "final_layer.linear.weight"].shape[0],
        "patch_size": 2,
        "context_in_dim": sd[prefix + "txt_in.weight"].shape[1],
        "hidden_size": hidden,
        "mlp_ratio": sd[prefix + "double_blocks.0.img_mlp.0.weight"].shape[0] / hidden,
        "num_heads": hidden // head_dim,
        "depth": count_indexed(sd, prefix + "double_blocks.", "img_attn"),
        "depth_single_blocks": count_indexed(sd, prefix + "single_blocks.", "linear1"),
        "axes_dim": rope_axes(head_dim),
        "theta": 10000,
        "qkv_bias": prefix + "double_blocks.0.img_attn.qkv.bias" in sd,
        "in_dim": approx_in.shape[1],
        "out_dim": sd[prefix + APPROXIMATOR + "out_proj.weight"].shape[0],
        "hidden_dim": approx_in.shape[0],
        "n_layers": count_indexed(sd, prefix + APPROXIMATOR + "norms.", "scale"),
    }
