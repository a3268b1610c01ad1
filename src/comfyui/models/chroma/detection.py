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


NERF = "nerf_blocks.0.norm.scale"
SEQUENTIAL_MARKER = "__sequential__"


def describe(sd: Mapping[str, torch.Tensor], prefix: str = "") -> str | None:
    """Why a Chroma Radiance file is refused: the ``__sequential__`` variant (text position ids
    other than Chroma's zeros) is not supported."""
    if prefix + NERF in sd and prefix + SEQUENTIAL_MARKER in sd:
        return "Chroma Radiance with sequential text position ids (__sequential__) is not supported yet"
    return None


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """The Chroma config of the weights under ``prefix``, or None if they are not Chroma
    (latent-space Chroma: ``img_in`` present, no ``nerf_blocks``)."""
    if prefix + MARKER not in sd or prefix + APPROXIMATOR + "norms.0.scale" not in sd:
        return None
    if prefix + "img_in.weight" not in sd or prefix + NERF in sd:
        return None
    img_in = sd[prefix + "img_in.weight"]
    return {**_transformer(sd, prefix, img_in.shape[0]), "image_model": "chroma", "in_channels": img_in.shape[1],
            "out_channels": sd[prefix + "final_layer.linear.weight"].shape[0], "patch_size": 2}


def detect_radiance(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """The Chroma Radiance config (pixel space: ``img_in_patch`` convolution, ``nerf_*`` head),
    or None. Upstream fixes the NeRF widths (64 wide, ratio 4, 4 blocks, 8 frequencies, patch
    16); here they come from the shapes. The default tile size (32) is upstream's."""
    if prefix + MARKER not in sd or prefix + NERF not in sd or prefix + "img_in_patch.weight" not in sd:
        return None
    if prefix + SEQUENTIAL_MARKER in sd:
        return None
    patch = sd[prefix + "img_in_patch.weight"]
    hidden, channels, p, _ = patch.shape
    nerf_hidden, embed_in = sd[prefix + "nerf_image_embedder.embedder.0.weight"].shape
    generated = sd[prefix + "nerf_blocks.0.param_generator.weight"].shape[0]
    return {**_transformer(sd, prefix, hidden), "image_model": "chroma_radiance", "in_channels": channels,
            "out_channels": channels, "patch_size": p, "nerf_hidden_size": nerf_hidden,
            "nerf_mlp_ratio": generated // (3 * nerf_hidden * nerf_hidden),
            "nerf_depth": count_indexed(sd, prefix + "nerf_blocks.", "norm"),
            "nerf_max_freqs": round((embed_in - channels) ** 0.5), "nerf_tile_size": 32,
            "nerf_final_head_type": "conv" if prefix + "nerf_final_layer_conv.norm.scale" in sd else "linear",
            "x0": prefix + "__x0__" in sd}


def _transformer(sd: Mapping[str, torch.Tensor], prefix: str, hidden: int) -> dict[str, Any]:
    """The transformer part both share."""
    head_dim = sd[prefix + MARKER].shape[0]
    approx_in = sd[prefix + APPROXIMATOR + "in_proj.weight"]
    return {
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
