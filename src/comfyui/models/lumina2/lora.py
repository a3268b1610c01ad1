"""LoRA names of a Lumina 2 / Z-Image model in diffusers' ``ZImageTransformer2DModel`` layout
(what diffusers, ai-toolkit and most Z-Image trainers save) -> native NextDiT targets (see
:mod:`comfyui.models.lora`).

Diffusers splits the native fused ``attention.qkv`` into ``to_q``/``to_k``/``to_v`` (slices
here, widths from the weights: q = heads x head_dim, k and v = kv_heads x head_dim), calls
``attention.out`` ``to_out.0`` and the q/k norms ``norm_q``/``norm_k``, and keys the patch
embedder and final layer by patch size (``all_x_embedder.2-1``, ``all_final_layer.2-1``); every
other module has the native name. Prefixes as upstream ComfyUI: ``diffusion_model.``,
``transformer.``, none, and ``lycoris_`` (dots as ``_``).
"""
from __future__ import annotations

from typing import Any

_RENAMES = (
    (".attention.out.", ".attention.to_out.0."),
    (".attention.q_norm.", ".attention.norm_q."),
    (".attention.k_norm.", ".attention.norm_k."),
)
_TOP = (("x_embedder.", "all_x_embedder.2-1."), ("final_layer.", "all_final_layer.2-1."))


def lora_key_map(model: Any) -> dict:
    from ..lora import add_names
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    p = "diffusion_model."
    names: dict = {}
    for key, shape in shapes.items():
        if not (key.startswith(p) and key.endswith(".weight")):
            continue
        name = key[len(p):-len(".weight")]
        if name.endswith(".attention.qkv"):
            block = name[:-len(".qkv")]
            q = shapes[f"{p}{block}.out.weight"][1]
            kv = (shape[0] - q) // 2
            for part, start, width in (("to_q", 0, q), ("to_k", q, kv), ("to_v", q + kv, kv)):
                names[f"{block}.{part}"] = (key, (0, start, width), None)
            continue
        new = name + "."
        for native, diffusers in _RENAMES:
            new = new.replace(native, diffusers)
        for native, diffusers in _TOP:
            if new.startswith(native):
                new = diffusers + new[len(native):]
        names[new[:-1]] = key
    return add_names({}, names, dotted=("diffusion_model.", "transformer.", ""), underscored=("lycoris_",))
