"""Flux weights in diffusers' ``FluxTransformer2DModel`` layout -> BFL (native) keys.

diffusers splits the fused projections (q, k, v of each stream; q, k, v and the MLP input of
the single-stream blocks), renames everything, and stores the final modulation as
(scale, shift) where BFL has (shift, scale). Every width is taken from the tensors.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

DIFFUSERS_MARKER = "transformer_blocks.0.attn.norm_added_k.weight"

_SIMPLE = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "proj_out": "final_layer.linear",
}

_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
_DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}

_SINGLE = {
    "norm.linear": "modulation.lin",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
    "proj_out": "linear2",
}
_SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}


def is_diffusers_flux(sd: Mapping[str, torch.Tensor], prefix: str = "") -> bool:
    return prefix + DIFFUSERS_MARKER in sd and prefix + "x_embedder.weight" in sd and \
        prefix + "distilled_guidance_layer.in_proj.weight" not in sd  # (that is Chroma)


def _count(sd: Mapping[str, torch.Tensor], stem: str) -> int:
    n = 0
    while any(k.startswith(f"{stem}{n}.") for k in sd):
        n += 1
    return n


def diffusers_to_native(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor] | None:
    """The BFL state dict of a diffusers-layout Flux transformer (keys under ``prefix``); None
    when the weights are not one. Raises KeyError naming the first expected diffusers key that
    is missing from an incomplete one."""
    if not is_diffusers_flux(sd, prefix):
        return None
    src = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    out: dict[str, torch.Tensor] = {}

    def take(old: str, new: str) -> None:
        found = False
        for param in ("weight", "bias"):
            key = f"{old}.{param}"
            if key in src:
                is_norm = new.endswith("_norm")
                out[f"{new}.{'scale' if is_norm else param}"] = src[key]
                found = True
        if not found:
            raise KeyError(f"diffusers Flux weights: {old}.weight not found")

    def fuse(parts: tuple[str, ...], new: str) -> None:
        for param in ("weight", "bias"):
            keys = [f"{p}.{param}" for p in parts]
            if all(k in src for k in keys):
                out[f"{new}.{param}"] = torch.cat([src[k] for k in keys], dim=0)
            elif param == "weight":
                raise KeyError(f"diffusers Flux weights: {keys[0]} not found")

    for old, new in _SIMPLE.items():
        if old.startswith("time_text_embed.guidance_embedder") and f"{old}.weight" not in src:
            continue  # schnell: no guidance embedding
        take(old, new)
    scale, shift = src["norm_out.linear.weight"].chunk(2, dim=0)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat((shift, scale), dim=0)
    if "norm_out.linear.bias" in src:
        scale_b, shift_b = src["norm_out.linear.bias"].chunk(2, dim=0)
        out["final_layer.adaLN_modulation.1.bias"] = torch.cat((shift_b, scale_b), dim=0)

    for i in range(_count(src, "transformer_blocks.")):
        for old, new in _DOUBLE.items():
            take(f"transformer_blocks.{i}.{old}", f"double_blocks.{i}.{new}")
        for new, parts in _DOUBLE_FUSED.items():
            fuse(tuple(f"transformer_blocks.{i}.{p}" for p in parts), f"double_blocks.{i}.{new}")
    for i in range(_count(src, "single_transformer_blocks.")):
        for old, new in _SINGLE.items():
            take(f"single_transformer_blocks.{i}.{old}", f"single_blocks.{i}.{new}")
        for new, parts in _SINGLE_FUSED.items():
            fuse(tuple(f"single_transformer_blocks.{i}.{p}" for p in parts), f"single_blocks.{i}.{new}")
    return out


def native_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`diffusers_to_native` (for comparisons with diffusers)."""
    out: dict[str, torch.Tensor] = {}

    def give(new: str, old: str) -> None:
        for param in ("weight", "bias", "scale"):
            key = f"{new}.{param}"
            if key in sd:
                out[f"{old}.{'weight' if param == 'scale' else param}"] = sd[key]

    def split(new: str, parts: tuple[str, ...], sizes: list[int]) -> None:
        for param in ("weight", "bias"):
            key = f"{new}.{param}"
            if key in sd:
                for part, t in zip(parts, sd[key].split(sizes, dim=0)):
                    out[f"{part}.{param}"] = t

    for old, new in _SIMPLE.items():
        give(new, old)
    for param in ("weight", "bias"):
        key = f"final_layer.adaLN_modulation.1.{param}"
        if key in sd:
            shift, scale = sd[key].chunk(2, dim=0)
            out[f"norm_out.linear.{param}"] = torch.cat((scale, shift), dim=0)
    for i in range(_count(sd, "double_blocks.")):
        for old, new in _DOUBLE.items():
            give(f"double_blocks.{i}.{new}", f"transformer_blocks.{i}.{old}")
        for new, parts in _DOUBLE_FUSED.items():
            width = sd[f"double_blocks.{i}.{new}.weight"].shape[0] // 3
            split(f"double_blocks.{i}.{new}", tuple(f"transformer_blocks.{i}.{p}" for p in parts), [width] * 3)
    for i in range(_count(sd, "single_blocks.")):
        for old, new in _SINGLE.items():
            give(f"single_blocks.{i}.{new}", f"single_transformer_blocks.{i}.{old}")
        for new, parts in _SINGLE_FUSED.items():
            width = sd[f"single_blocks.{i}.linear2.weight"].shape[0]
            mlp = sd[f"single_blocks.{i}.{new}.weight"].shape[0] - 3 * width
            split(f"single_blocks.{i}.{new}", tuple(f"single_transformer_blocks.{i}.{p}" for p in parts),
                  [width, width, width, mlp])
    return out


def lora_key_map(model) -> dict:
    """LoRA names of a Flux BaseModel's weights in other layouts -> targets (see
    :mod:`comfyui.models.lora`): diffusers/PEFT ``transformer.<diffusers name>``, OneTrainer and
    kohya-diffusers ``lora_transformer_<name with _>``, LyCORIS ``lycoris_<name>``; the separate
    q/k/v (and the single blocks' MLP input) are slices of the fused BFL weights, diffusers'
    final modulation is swapped to BFL's (shift, scale); and the native
    ``diffusion_model.single_blocks.N.linear1_qkv`` (XLabs/USO) is linear1's q/k/v rows."""
    from ..lora import add_names, swap_scale_shift
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    p = "diffusion_model."
    if p + "img_in.weight" not in shapes:
        return {}
    hidden = shapes[p + "img_in.weight"][0]
    names: dict = {}

    def plain(old: str, new: str) -> None:
        for param in ("weight", "scale"):
            if f"{p}{new}.{param}" in shapes:
                names[old] = f"{p}{new}.{param}"
                return

    def fused(parts: tuple[str, ...], new: str, widths: list[int]) -> None:
        start = 0
        for part, width in zip(parts, widths):
            names[part] = (f"{p}{new}.weight", (0, start, width), None)
            start += width

    for old, new in _SIMPLE.items():
        plain(old, new)
    if p + "final_layer.adaLN_modulation.1.weight" in shapes:
        names["norm_out.linear"] = (p + "final_layer.adaLN_modulation.1.weight", None, swap_scale_shift)
    for i in range(_count(shapes, p + "double_blocks.")):
        for old, new in _DOUBLE.items():
            plain(f"transformer_blocks.{i}.{old}", f"double_blocks.{i}.{new}")
        for new, parts in _DOUBLE_FUSED.items():
            fused(tuple(f"transformer_blocks.{i}.{x}" for x in parts), f"double_blocks.{i}.{new}", [hidden] * 3)
    extra: dict = {}
    for i in range(_count(shapes, p + "single_blocks.")):
        for old, new in _SINGLE.items():
            plain(f"single_transformer_blocks.{i}.{old}", f"single_blocks.{i}.{new}")
        linear1 = f"{p}single_blocks.{i}.linear1.weight"
        mlp = shapes[linear1][0] - 3 * hidden
        for new, parts in _SINGLE_FUSED.items():
            fused(tuple(f"single_transformer_blocks.{i}.{x}" for x in parts), f"single_blocks.{i}.{new}",
                  [hidden, hidden, hidden, mlp])
        extra[f"{p}single_blocks.{i}.linear1_qkv"] = (linear1, (0, 0, 3 * hidden), None)
    key_map = add_names({}, names, dotted=("transformer.",), underscored=("lycoris_", "lora_transformer_"))
    key_map.update(extra)
    return key_map
