"""SD UNets in diffusers' layout (``down_blocks.*``, a diffusers folder's ``unet/``) -> LDM keys."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..convert import diffusers_unet_to_ldm, unet_config_from_diffusers


def from_diffusers_file(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """``Family.diffusers_to_native`` of the SD families: a diffusers UNet file in LDM keys,
    or None when the file is not one."""
    if "conv_in.weight" in sd and any(k.startswith("down_blocks.") for k in sd):
        return diffusers_unet_to_native(dict(sd))
    return None


def diffusers_unet_to_native(sd: dict[str, torch.Tensor], config: dict | None = None) -> dict[str, torch.Tensor]:
    if config is None:
        config = infer_diffusers_unet_config(sd)
    ucfg = unet_config_from_diffusers(config)
    return diffusers_unet_to_ldm(sd, ucfg)


def infer_diffusers_unet_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    levels = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("down_blocks."))
    blocks = [sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)]
    lpb = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("down_blocks.0.resnets."))
    types, tl = [], []
    for i in range(levels):
        if any(k.startswith(f"down_blocks.{i}.attentions.") for k in sd):
            types.append("CrossAttnDownBlock2D")
            tl.append(1 + max(int(k.split(".")[5]) for k in sd if k.startswith(f"down_blocks.{i}.attentions.0.transformer_blocks.")))
        else:
            types.append("DownBlock2D")
            tl.append(1)
    mid_t = [k for k in sd if k.startswith("mid_block.attentions.0.transformer_blocks.")]
    cfg: dict[str, Any] = {
        "block_out_channels": blocks, "layers_per_block": lpb, "down_block_types": types,
        "in_channels": sd["conv_in.weight"].shape[1], "out_channels": sd["conv_out.weight"].shape[0],
        "transformer_layers_per_block": tl[:-1] + [1 + max(int(k.split(".")[4]) for k in mid_t)] if mid_t else tl,
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_t else None,
    }
    # the last level's transformer depth is not known when it has none; mid depth kept in tl[-1]
    k = next(k for k in sd if k.endswith("attn2.to_k.weight"))
    cfg["cross_attention_dim"] = sd[k].shape[1]
    pk = next(k for k in sd if k.endswith("proj_in.weight"))
    cfg["use_linear_projection"] = sd[pk].ndim == 2
    if "add_embedding.linear_1.weight" in sd:
        cfg["addition_embed_type"] = "text_time"
        cfg["projection_class_embeddings_input_dim"] = sd["add_embedding.linear_1.weight"].shape[1]
        cfg["attention_head_dim"] = [64]
    elif "class_embedding.linear_1.weight" in sd:  # a projected class embedding (Lotus' task embedding)
        cfg["class_embed_type"] = "projection"
        cfg["projection_class_embeddings_input_dim"] = sd["class_embedding.linear_1.weight"].shape[1]
    return cfg
