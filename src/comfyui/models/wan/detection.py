"""Wan detection: the transformer config from tensor shapes (``head.modulation`` marks a Wan
model, as upstream's ``detect_unet_config``).

Read from shapes: ``dim`` (``head.modulation``), ``out_dim`` (``head.head`` / 4 patch cells),
``ffn_dim``, ``num_layers``, ``in_dim`` (``patch_embedding``: 16 t2v, 36 i2v / Fun-InP /
first-last frame, 48 Fun-Control or Wan 2.2 5B), ``text_dim`` and ``freq_dim`` (the text and
time embeddings: 4096 and 256 in every released file), the image model (``img_emb``: i2v, with
its CLIP width ``image_dim``), VACE (``vace_patch_embedding``, ``vace_blocks``), first-last frame's ``emb_pos`` token count (514)
the Fun reference-image input (``ref_conv``: its latent channels) and Fun Camera's control
adapter (``control_adapter.conv``: 64 x its Plücker channels).

Fixed by the architecture (upstream's values): heads = dim / 128, patch (1, 2, 2), qk norm,
cross-attention norm, eps 1e-6, global attention (window (-1, -1)).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..family import count_indexed
from .model import HEAD_DIM

UNSUPPORTED = {
    "casual_audio_encoder.encoder.final_linear.weight": "Wan 2.2 S2V",
    "audio_proj.audio_proj_glob_1.layer.bias": "Wan HuMo",
    "face_adapter.fuser_blocks.0.k_norm.weight": "Wan 2.2 Animate",
}


def detect(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any] | None:
    """The Wan transformer config of the weights under ``prefix``, or None."""
    if prefix + "head.modulation" not in sd or prefix + "patch_embedding.weight" not in sd:
        return None
    if any(prefix + k in sd for k in UNSUPPORTED):
        return None
    dim = sd[prefix + "head.modulation"].shape[-1]
    patch = (1, 2, 2)
    config: dict[str, Any] = {
        "dim": dim,
        "out_dim": sd[prefix + "head.head.weight"].shape[0] // (patch[0] * patch[1] * patch[2]),
        "num_heads": max(dim // HEAD_DIM, 1),
        "ffn_dim": sd[prefix + "blocks.0.ffn.0.weight"].shape[0],
        "num_layers": count_indexed(sd, prefix + "blocks."),
        "patch_size": patch,
        "freq_dim": sd[prefix + "time_embedding.0.weight"].shape[1],
        "text_dim": sd[prefix + "text_embedding.0.weight"].shape[1],
        "window_size": (-1, -1),
        "qk_norm": True,
        "cross_attn_norm": prefix + "blocks.0.norm3.weight" in sd,
        "eps": 1e-6,
        "in_dim": sd[prefix + "patch_embedding.weight"].shape[1],
        "model_type": "i2v" if prefix + "img_emb.proj.0.bias" in sd else "t2v",
    }
    if prefix + "vace_patch_embedding.weight" in sd:
        config["model_type"] = "vace"
        config["vace_in_dim"] = sd[prefix + "vace_patch_embedding.weight"].shape[1]
        config["vace_layers"] = count_indexed(sd, prefix + "vace_blocks.")
    if config["model_type"] == "i2v":
        config["image_dim"] = sd[prefix + "img_emb.proj.0.weight"].shape[0]
    adapter = sd.get(prefix + "control_adapter.conv.weight")
    if adapter is not None:   # Fun Camera: pixel-unshuffled (x64) Plücker channels
        config["in_dim_control_adapter"] = adapter.shape[1] // 64
    ref_conv = sd.get(prefix + "ref_conv.weight")
    if ref_conv is not None:
        config["in_dim_ref_conv"] = ref_conv.shape[1]
    emb_pos = sd.get(prefix + "img_emb.emb_pos")
    if emb_pos is not None:
        config["flf_pos_embed_token_number"] = emb_pos.shape[1]
    return config


def describe(sd: Mapping[str, torch.Tensor], prefix: str) -> str | None:
    if prefix + "head.modulation" not in sd:
        return None
    for key, name in UNSUPPORTED.items():
        if prefix + key in sd:
            return f"a {name} model (not supported yet)"
    return None


def detect_wan21(sd, prefix):
    config = detect(sd, prefix)
    return config if config is not None and config["out_dim"] == 16 else None


def detect_wan22(sd, prefix):
    config = detect(sd, prefix)
    return config if config is not None and config["out_dim"] == 48 else None


def variant(config: dict) -> str:
    if config["out_dim"] == 48:
        return "wan22_5b"
    if config["model_type"] == "vace":
        return "wan21_vace"
    if config["model_type"] == "t2v":
        return "wan21_t2v"
    if config["in_dim"] == 48:
        return "wan21_fun_control"
    if config.get("flf_pos_embed_token_number"):
        return "wan21_flf2v"
    return "wan21_i2v"
