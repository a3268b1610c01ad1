"""Lumina 2 / Z-Image detection: the NextDiT config from tensor shapes.

Read from shapes: ``dim`` and ``cap_feat_dim`` (``cap_embedder.1``), ``head_dim`` (the q-norm
weight), query and key/value head counts (``qkv``), the feed-forward width (``w1``), block
counts, the modulation width and the timestep MLP's widths. Z-Image is told from Lumina 2 by
its modulation (no SiLU before the block modulation Linear: key ``adaLN_modulation.0``).

Not in the weights, so taken from the architecture (upstream ComfyUI's values): patch size 2;
RoPE axes (Lumina 2: head_dim split in thirds, theta 1e4; Z-Image: quarter / three eighths /
three eighths, theta 256 -- [32, 32, 32] and [32, 48, 48] at real size); the timestep scale
(Z-Image 1000, Lumina 2 1); pad-to-32 when the file has pad tokens; norm epsilon 1e-5.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..family import count_indexed

PATCH_SIZE = 2
NORM_EPS = 1e-5
PAD_TOKENS_MULTIPLE = 32


def detect(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any] | None:
    """The NextDiT config of the Lumina 2 / Z-Image weights under ``prefix``, or None."""
    if prefix + "cap_embedder.1.weight" not in sd or prefix + "noise_refiner.0.attention.k_norm.weight" not in sd:
        return None
    cap = sd[prefix + "cap_embedder.1.weight"]
    dim, cap_feat_dim = cap.shape
    block = prefix + "layers.0."
    head_dim = sd[block + "attention.q_norm.weight"].shape[0]
    qkv_heads = sd[block + "attention.qkv.weight"].shape[0] // head_dim
    n_heads = sd[block + "attention.out.weight"].shape[1] // head_dim
    z_image = block + "adaLN_modulation.0.weight" in sd
    modulation = sd[block + ("adaLN_modulation.0.weight" if z_image else "adaLN_modulation.1.weight")]
    if z_image:
        if head_dim % 16:
            return None
        axes_dims = (head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8)
    else:
        if head_dim % 6:
            return None
        axes_dims = (head_dim // 3,) * 3
    return {
        "z_image": z_image,
        "dim": dim,
        "cap_feat_dim": cap_feat_dim,
        "patch_size": PATCH_SIZE,
        "in_channels": sd[prefix + "x_embedder.weight"].shape[1] // (PATCH_SIZE * PATCH_SIZE),
        "n_layers": count_indexed(sd, prefix + "layers."),
        "n_noise_refiner": count_indexed(sd, prefix + "noise_refiner."),
        "n_context_refiner": count_indexed(sd, prefix + "context_refiner."),
        "n_heads": n_heads,
        "n_kv_heads": (qkv_heads - n_heads) // 2,
        "head_dim": head_dim,
        "ffn_hidden": sd[block + "feed_forward.w1.weight"].shape[0],
        "adaln_dim": modulation.shape[1],
        "silu_modulation": not z_image,
        "t_frequency_dim": sd[prefix + "t_embedder.mlp.0.weight"].shape[1],
        "t_hidden": sd[prefix + "t_embedder.mlp.0.weight"].shape[0],
        "axes_dims": axes_dims,
        "rope_theta": 256.0 if z_image else 10000.0,
        "time_scale": 1000.0 if z_image else 1.0,
        "pad_tokens_multiple": PAD_TOKENS_MULTIPLE if prefix + "cap_pad_token" in sd else None,
        "norm_eps": NORM_EPS,
    }


def detect_z_image(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any] | None:
    config = detect(sd, prefix)
    return config if config is not None and config["z_image"] else None


def detect_lumina2(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any] | None:
    config = detect(sd, prefix)
    return config if config is not None and not config["z_image"] else None
