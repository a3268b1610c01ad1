"""Recognise MMDiT (SD3 / SD3.5) weights and read the network config from tensor shapes.

The keys are upstream's: depth = hidden size / 64 (heads = depth), the patch size from the
patch-embedding kernel, the positional table's side from ``pos_embed``, ``qk_norm`` "rms" when
``ln_q`` weights exist (SD3.5), ``x_block_self_attn_layers`` = the blocks whose image stream
has a second attention (SD3.5 medium). Every width comes from a shape, so on real files the
result is upstream's config and tiny test files load through the same path.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

MARKER = "joint_blocks.0.context_block.attn.qkv.weight"


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """The MMDiT config of native-layout weights under ``prefix``, or None if they are not an
    MMDiT (or one whose parts this implementation does not have)."""
    if prefix + MARKER not in sd or prefix + "x_embedder.proj.weight" not in sd:
        return None
    if any(k.startswith(prefix + "context_processor.") for k in sd):
        return None  # upstream's optional context processor: no released SD3 model has one
    embed = sd[prefix + "x_embedder.proj.weight"]
    patch_size = embed.shape[2]
    config: dict[str, Any] = {
        "in_channels": embed.shape[1],
        "patch_size": patch_size,
        "out_channels": sd[prefix + "final_layer.linear.weight"].shape[0] // (patch_size * patch_size),
        "depth": embed.shape[0] // 64,
        "input_size": None,
    }
    y = sd.get(prefix + "y_embedder.mlp.0.weight")
    if y is not None:
        config["adm_in_channels"] = y.shape[1]
    ctx = sd.get(prefix + "context_embedder.weight")
    if ctx is not None:
        config["context_embedder_config"] = {"target": "torch.nn.Linear",
                                             "params": {"in_features": ctx.shape[1], "out_features": ctx.shape[0]}}
    pos = sd.get(prefix + "pos_embed")
    if pos is not None:
        config["num_patches"] = pos.shape[1]
        config["pos_embed_max_size"] = round(math.sqrt(pos.shape[1]))
    if prefix + "joint_blocks.0.context_block.attn.ln_q.weight" in sd:
        config["qk_norm"] = "rms"
    config["pos_embed_scaling_factor"] = None
    stem, tail = prefix + "joint_blocks.", ".x_block.attn2.qkv.weight"
    config["x_block_self_attn_layers"] = sorted(
        int(k[len(stem):-len(tail)]) for k in sd if k.startswith(stem) and k.endswith(tail))
    return config


def variant(config: Mapping[str, Any]) -> str:
    """sd3.5-medium (MMDiT-X: second image self-attention), sd3.5-large (q/k RMS norms) or sd3."""
    if config.get("x_block_self_attn_layers"):
        return "sd3.5-medium"
    return "sd3.5-large" if config.get("qk_norm") == "rms" else "sd3"
