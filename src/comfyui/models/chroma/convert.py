"""Chroma weights in diffusers' ``ChromaTransformer2DModel`` layout -> the native single-file
keys (BFL names plus the ``distilled_guidance_layer``).

diffusers splits the fused projections (q, k, v of each stream; q, k, v and the MLP input of
the single-stream blocks) and names the approximator's MLPs as PixArt projections; norms keep
their weights as ``weight`` where the native file says ``scale``. The final norm has no weights
in either layout. Every width is taken from the tensors.

:func:`lora_key_map`: the LoRA names Chroma LoRAs use beyond the native ones (BFL
``diffusion_model.*`` and kohya ``lora_unet_*`` are every model's): diffusers/PEFT
``transformer.<diffusers module>``, OneTrainer / kohya-diffusers ``lora_transformer_*`` and
LyCORIS ``lycoris_*``.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

MARKER = "distilled_guidance_layer.in_proj.weight"


def is_diffusers_chroma(sd: Mapping[str, torch.Tensor]) -> bool:
    return MARKER in sd and "x_embedder.weight" in sd and "transformer_blocks.0.attn.to_q.weight" in sd


_DOUBLE = (("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj"),
           ("ff.net.0.proj", "img_mlp.0"), ("ff.net.2", "img_mlp.2"),
           ("ff_context.net.0.proj", "txt_mlp.0"), ("ff_context.net.2", "txt_mlp.2"))
_DOUBLE_NORMS = (("norm_q", "img_attn.norm.query_norm"), ("norm_k", "img_attn.norm.key_norm"),
                 ("norm_added_q", "txt_attn.norm.query_norm"), ("norm_added_k", "txt_attn.norm.key_norm"))


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """diffusers Chroma keys -> the native file's: fused q/k/v (and the single blocks' MLP
    input) concatenated, the approximator's PixArt projections -> in_layer/out_layer, norm
    weights -> ``scale``. The final norm has no weights in either layout (its shift and scale
    are the approximator's last two slots, in the same order). None if ``sd`` is not a
    diffusers Chroma; KeyError naming a missing tensor of an incomplete one."""
    if not is_diffusers_chroma(sd):
        return None
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(("x_embedder.", "context_embedder.", "proj_out.", "distilled_guidance_layer.in_proj.",
                         "distilled_guidance_layer.out_proj.")):
            stem, param = k.rsplit(".", 1)
            stem = {"x_embedder": "img_in", "context_embedder": "txt_in", "proj_out": "final_layer.linear"}.get(stem, stem)
            out[f"{stem}.{param}"] = v
        elif k.startswith("distilled_guidance_layer.layers."):
            _, _, i, layer, param = k.split(".")
            out[f"distilled_guidance_layer.layers.{i}.{ {'linear_1': 'in_layer', 'linear_2': 'out_layer'}[layer] }.{param}"] = v
        elif k.startswith("distilled_guidance_layer.norms."):
            out[f"distilled_guidance_layer.norms.{k.split('.')[2]}.scale"] = v
    n_double = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    n_single = len({k.split(".")[1] for k in sd if k.startswith("single_transformer_blocks.")})
    for i in range(n_double):
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for p in ("weight", "bias"):
            out[d + f"img_attn.qkv.{p}"] = torch.cat([sd[s + f"attn.to_{x}.{p}"] for x in "qkv"])
            out[d + f"txt_attn.qkv.{p}"] = torch.cat([sd[s + f"attn.add_{x}_proj.{p}"] for x in "qkv"])
            for a, b in _DOUBLE:
                out[d + f"{b}.{p}"] = sd[s + f"{a}.{p}"]
        for a, b in _DOUBLE_NORMS:
            out[d + f"{b}.scale"] = sd[s + f"attn.{a}.weight"]
    for i in range(n_single):
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for p in ("weight", "bias"):
            out[d + f"linear1.{p}"] = torch.cat([sd[s + f"attn.to_{x}.{p}"] for x in "qkv"] + [sd[s + f"proj_mlp.{p}"]])
            out[d + f"linear2.{p}"] = sd[s + f"proj_out.{p}"]
        out[d + "norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
    return out



def lora_key_map(model) -> dict:
    """{LoRA name: target} for a Chroma BaseModel (see :mod:`comfyui.models.lora`): each
    diffusers module name (:func:`diffusers_to_native`'s map read backwards) under the
    ``transformer.`` / ``lycoris_`` / ``lora_transformer_`` prefixes; the separate q/k/v (and
    the single blocks' MLP input) are row slices of the fused native weights."""
    from ..lora import add_names
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    p = "diffusion_model."
    if p + "img_in.weight" not in shapes:
        return {}
    hidden = shapes[p + "img_in.weight"][0]
    names: dict = {}

    def plain(old: str, new: str) -> None:
        if f"{p}{new}.weight" in shapes:
            names[old] = f"{p}{new}.weight"

    def fused(parts: list[str], new: str, widths: list[int]) -> None:
        start = 0
        for part, width in zip(parts, widths):
            names[part] = (f"{p}{new}.weight", (0, start, width), None)
            start += width

    for old, new in (("x_embedder", "img_in"), ("context_embedder", "txt_in"), ("proj_out", "final_layer.linear"),
                     ("distilled_guidance_layer.in_proj", "distilled_guidance_layer.in_proj"),
                     ("distilled_guidance_layer.out_proj", "distilled_guidance_layer.out_proj")):
        plain(old, new)
    i = 0
    while f"{p}distilled_guidance_layer.layers.{i}.in_layer.weight" in shapes:
        for old, new in (("linear_1", "in_layer"), ("linear_2", "out_layer")):
            plain(f"distilled_guidance_layer.layers.{i}.{old}", f"distilled_guidance_layer.layers.{i}.{new}")
        i += 1
    i = 0
    while f"{p}double_blocks.{i}.img_attn.qkv.weight" in shapes:
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for old, new in _DOUBLE:
            plain(s + old, d + new)
        fused([s + f"attn.to_{x}" for x in "qkv"], d + "img_attn.qkv", [hidden] * 3)
        fused([s + f"attn.add_{x}_proj" for x in "qkv"], d + "txt_attn.qkv", [hidden] * 3)
        i += 1
    i = 0
    while f"{p}single_blocks.{i}.linear1.weight" in shapes:
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        plain(s + "proj_out", d + "linear2")
        mlp = shapes[f"{p}{d}linear1.weight"][0] - 3 * hidden
        fused([s + f"attn.to_{x}" for x in "qkv"] + [s + "proj_mlp"], d + "linear1", [hidden] * 3 + [mlp])
        i += 1
    return add_names({}, names, dotted=("transformer.",), underscored=("lycoris_", "lora_transformer_"))
