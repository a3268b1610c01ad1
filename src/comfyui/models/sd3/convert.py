"""Diffusers ``SD3Transformer2DModel`` layout -> native (Stability / ComfyUI) keys.

Facts of the mapping: q/k/v are one ``qkv`` Linear natively (image stream: ``attn.to_*``,
text stream: ``attn.add_*_proj``; MMDiT-X's ``attn2.to_*``), q/k norms ``norm_q``/``norm_k``
(``norm_added_*`` for text) are ``ln_q``/``ln_k``, and the modulations whose diffusers
``AdaLayerNormContinuous`` puts scale before shift (the final layer, the last text block)
are swapped back.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

_RENAMES = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj.": "x_embedder.proj.",
    "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
    "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.",
    "context_embedder.": "context_embedder.",
    "proj_out.": "final_layer.linear.",
}
_BLOCK_RENAMES = {
    "attn.to_out.0.": "x_block.attn.proj.",
    "attn.to_add_out.": "context_block.attn.proj.",
    "attn2.to_out.0.": "x_block.attn2.proj.",
    "attn.norm_q.": "x_block.attn.ln_q.",
    "attn.norm_k.": "x_block.attn.ln_k.",
    "attn.norm_added_q.": "context_block.attn.ln_q.",
    "attn.norm_added_k.": "context_block.attn.ln_k.",
    "attn2.norm_q.": "x_block.attn2.ln_q.",
    "attn2.norm_k.": "x_block.attn2.ln_k.",
    "norm1.linear.": "x_block.adaLN_modulation.1.",
    "norm1_context.linear.": "context_block.adaLN_modulation.1.",
    "ff.net.0.proj.": "x_block.mlp.fc1.",
    "ff.net.2.": "x_block.mlp.fc2.",
    "ff_context.net.0.proj.": "context_block.mlp.fc1.",
    "ff_context.net.2.": "context_block.mlp.fc2.",
}
_QKV = {  # native qkv Linear -> its diffusers q, k, v
    "x_block.attn.qkv.": ("attn.to_q.", "attn.to_k.", "attn.to_v."),
    "context_block.attn.qkv.": ("attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."),
    "x_block.attn2.qkv.": ("attn2.to_q.", "attn2.to_k.", "attn2.to_v."),
}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    scale, shift = t.chunk(2, dim=0)
    return torch.cat((shift, scale), dim=0)


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    return "transformer_blocks.0.attn.add_q_proj.weight" in sd and "pos_embed.proj.weight" in sd


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a diffusers SD3 transformer state dict (no prefix) to native keys; {} when the
    dict is not that layout."""
    if not is_diffusers_layout(sd):
        return {}
    out: dict[str, torch.Tensor] = {}
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    for key, value in sd.items():
        if key.startswith("transformer_blocks."):
            continue
        if key.startswith("norm_out.linear."):
            out["final_layer.adaLN_modulation.1." + key.rsplit(".", 1)[1]] = _swap_halves(value)
            continue
        for old, new in _RENAMES.items():
            if key == old or (old.endswith(".") and key.startswith(old)):
                out[new + key[len(old):]] = value
                break
        else:
            raise ValueError(f"SD3 diffusers layout: unknown key {key}")
    for i in range(depth):
        src, dst = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        for old, new in _BLOCK_RENAMES.items():
            for suffix in ("weight", "bias"):
                value = sd.get(src + old + suffix)
                if value is None:
                    continue
                if old == "norm1_context.linear." and i == depth - 1:
                    value = _swap_halves(value)
                out[dst + new + suffix] = value
        for native, parts in _QKV.items():
            for suffix in ("weight", "bias"):
                pieces = [sd.get(src + p + suffix) for p in parts]
                if all(p is not None for p in pieces):
                    out[dst + native + suffix] = torch.cat(pieces, dim=0)
    return out


def lora_key_map(model) -> dict:
    """LoRA names of an SD3 BaseModel's weights in diffusers' layout -> targets (see
    :mod:`comfyui.models.lora`): ``transformer.<name>`` (diffusers/PEFT), ``base_model.model.<name>``,
    ``lora_transformer_<name with _>`` (OneTrainer), ``lycoris_<name>``; q/k/v of each stream
    are slices of the native ``qkv``, and the modulations diffusers stores as (scale, shift)
    (the final layer, the last text block) get their delta swapped."""
    from ..lora import add_names, swap_scale_shift
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    p = "diffusion_model."
    if p + "x_embedder.proj.weight" not in shapes:
        return {}
    hidden = shapes[p + "x_embedder.proj.weight"][0]
    depth = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith(p + "joint_blocks."))
    names: dict = {}
    for old, new in _RENAMES.items():
        if old.endswith(".") and f"{p}{new}weight" in shapes:
            names[old[:-1]] = p + new + "weight"
    if p + "final_layer.adaLN_modulation.1.weight" in shapes:
        names["norm_out.linear"] = (p + "final_layer.adaLN_modulation.1.weight", None, swap_scale_shift)
    for i in range(depth):
        src, dst = f"transformer_blocks.{i}.", f"{p}joint_blocks.{i}."
        for old, new in _BLOCK_RENAMES.items():
            key = dst + new + "weight"
            if key not in shapes:
                continue
            swap = old == "norm1_context.linear." and i == depth - 1
            names[src + old[:-1]] = (key, None, swap_scale_shift) if swap else key
        for native, parts in _QKV.items():
            key = dst + native + "weight"
            if key in shapes:
                for j, part in enumerate(parts):
                    names[src + part[:-1]] = (key, (0, j * hidden, hidden), None)
    return add_names({}, names, dotted=("transformer.", "base_model.model."),
                     underscored=("lora_transformer_", "lycoris_"))
