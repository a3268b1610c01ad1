"""Recognise Flux.1 weights and read the network config from tensor shapes.

Upstream fixes the width (3072), heads (24) and text width (4096); here every width and count
comes from the tensors, so on real files the result equals upstream's config and tiny test
files load through the same path. Head dim = the length of a q/k norm scale; the RoPE axes
split it as upstream does for 128 ((16, 56, 56)): one eighth for the index axis, the rest
halved between rows and columns.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..dit import rope_axes  # noqa: F401  (re-exported: the RoPE split of a head dim)

MARKER = "double_blocks.0.img_attn.norm.key_norm.scale"


def _count(sd: Mapping[str, torch.Tensor], stem: str) -> int:
    n = 0
    while f"{stem}{n}.modulation.lin.weight" in sd or f"{stem}{n}.img_mod.lin.weight" in sd:
        n += 1
    return n


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """The Flux config of BFL-layout weights under ``prefix``, or None if they are not Flux
    (Chroma, which shares the block layout, has ``distilled_guidance_layer`` and no
    ``vector_in``: not this family)."""
    if prefix + MARKER not in sd or prefix + "img_in.weight" not in sd:
        return None
    if any(k.startswith(prefix + "distilled_guidance_layer.") for k in sd) or prefix + "vector_in.in_layer.weight" not in sd:
        return None
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    img_in = sub["img_in.weight"]
    final = sub["final_layer.linear.weight"]
    patch_size = 2
    patch = patch_size * patch_size
    hidden = img_in.shape[0]
    head_dim = sub[MARKER].shape[0]
    return {
        "image_model": "flux",
        "in_channels": img_in.shape[1] // patch,
        "patch_size": patch_size,
        "out_channels": final.shape[0] // patch,
        "vec_in_dim": sub["vector_in.in_layer.weight"].shape[1],
        "context_in_dim": sub["txt_in.weight"].shape[1],
        "hidden_size": hidden,
        "mlp_ratio": sub["double_blocks.0.img_mlp.0.weight"].shape[0] / hidden,
        "num_heads": hidden // head_dim,
        "depth": _count(sub, "double_blocks."),
        "depth_single_blocks": _count(sub, "single_blocks."),
        "axes_dim": rope_axes(head_dim),
        "theta": 10000,
        "qkv_bias": "double_blocks.0.img_attn.qkv.bias" in sub,
        "guidance_embed": "guidance_in.in_layer.weight" in sub,
    }


def variant(config: Mapping[str, Any]) -> str:
    """flux-dev / flux-schnell / flux-fill (96 input channels) / flux-control (32: Canny, Depth)."""
    extra = config["in_channels"] - config["out_channels"]
    if extra >= 2 * config["out_channels"]:
        return "flux-fill"
    if extra > 0:
        return "flux-control"
    return "flux-dev" if config["guidance_embed"] else "flux-schnell"
