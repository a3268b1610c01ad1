"""LTX-Video DiT detection: every width and count from tensor shapes, then the file's
``metadata["config"]["transformer"]`` (safetensors header JSON) on top, as upstream does.

The one fact that is not in the shapes is the head count: the family's constant 32 (upstream's
rule). A network of another head count loads but computes differently, so tiny fixtures keep
32 heads.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

import torch

from ..family import count_indexed

log = logging.getLogger(__name__)

MARKER = "adaln_single.emb.timestep_embedder.linear_1.bias"
HEADS = 32
# upstream's constructor arguments a metadata config may set (others are ignored)
_CONFIG_KEYS = {"num_layers", "attention_head_dim", "num_attention_heads", "cross_attention_dim",
                "caption_channels", "in_channels", "positional_embedding_theta", "causal_temporal_positioning",
                "vae_scale_factors"}


def metadata_config(sd: Mapping[str, Any], section: str) -> dict[str, Any]:
    """``json.loads(metadata["config"])[section]`` of the file ``sd`` was read from, else {}."""
    metadata = getattr(sd, "metadata", None) or {}
    raw = metadata.get("config")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except ValueError:
        log.warning("LTX-Video: the file's metadata 'config' is not JSON; ignored")
        return {}
    value = config.get(section) if isinstance(config, dict) else None
    return value if isinstance(value, dict) else {}


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    if prefix + MARKER not in sd or prefix + "pos_embed.proj.bias" in sd:  # (that is PixArt)
        return None
    to_k = sd[f"{prefix}transformer_blocks.0.attn2.to_k.weight"].shape
    inner = sd[f"{prefix}patchify_proj.weight"].shape
    config: dict[str, Any] = {
        "image_model": "ltxv",
        "num_layers": count_indexed(sd, prefix + "transformer_blocks."),
        "attention_head_dim": to_k[0] // HEADS,
        "num_attention_heads": HEADS,
        "cross_attention_dim": to_k[1],
        "in_channels": inner[1],
        "caption_channels": sd[f"{prefix}caption_projection.linear_1.weight"].shape[1],
    }
    extra = metadata_config(sd, "transformer")
    config.update({k: v for k, v in extra.items() if k in _CONFIG_KEYS})
    if config["num_attention_heads"] * config["attention_head_dim"] != inner[0]:
        return None
    return config
