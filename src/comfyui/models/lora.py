"""LoRA files (kohya ``lora_unet_*``/``lora_te*_*``, diffusers/peft ``unet.*.lora_A``,
LDM ``diffusion_model.*``) -> weight patches for :meth:`ModelPatcher.add_patches`, and the
patch arithmetic."""
from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)


def model_lora_keys_unet(model: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """{name used by LoRA files: state-dict key of ``model`` (a BaseModel)}: the native names
    (``lora_unet_<key>``, ``diffusion_model.<key>``), plus the family's own map (diffusers /
    kohya names of its modules, :attr:`Family.lora_key_map`)."""
    key_map = {} if key_map is None else key_map
    sd_keys = set(model.state_dict().keys())
    for k in sd_keys:
        if k.startswith("diffusion_model.") and k.endswith(".weight"):
            base = k[len("diffusion_model."):-len(".weight")]
            key_map["lora_unet_" + base.replace(".", "_")] = k
            key_map[k[:-len(".weight")]] = k
            key_map["model." + k[:-len(".weight")]] = k
    family_map = getattr(getattr(model, "family", None), "lora_key_map", None)
    if family_map is not None:
        key_map.update(family_map(model))
    return key_map


_CLIP_PREFIXES = {
    "sd1": {"l": ["lora_te_", "text_encoder."]},
    "sd2": {"h": ["lora_te_", "text_encoder."]},
    "sdxl": {"l": ["lora_te1_", "text_encoder."], "g": ["lora_te2_", "text_encoder_2."]},
    "sdxl_refiner": {"g": ["lora_te2_", "lora_te_", "text_encoder_2."]},
}


def model_lora_keys_clip(clip_model: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """Same for a text-encoder module (``comfyui.models.text_encoders.encoder.TextEncoders``)."""
    key_map = {} if key_map is None else key_map
    fam = clip_model.family
    for k in clip_model.state_dict().keys():
        if not k.endswith(".weight"):
            continue
        key, rest = k.split(".transformer.", 1)
        enc = key[len("clip_"):]
        base = rest[:-len(".weight")]
        for pfx in _CLIP_PREFIXES.get(fam, {}).get(enc, []):
            if pfx.endswith("_"):
                key_map[pfx + base.replace(".", "_")] = k
            else:
                key_map[pfx + base] = k
    return key_map


_FORMATS = (
    (".lora_up.weight", ".lora_down.weight", ".lora_mid.weight"),
    (".lora_B.weight", ".lora_A.weight", None),
    (".lora.up.weight", ".lora.down.weight", None),
    ("_lora.up.weight", "_lora.down.weight", None),
    (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight", None),
)


def load_lora(lora: dict[str, torch.Tensor], to_load: dict[str, str]) -> dict[str, tuple]:
    """{model key: patch} for every LoRA entry named in ``to_load``; unmatched file keys
    are logged."""
    patches: dict[str, tuple] = {}
    used: set[str] = set()
    for name, model_key in to_load.items():
        alpha_key = name + ".alpha"
        alpha = lora[alpha_key].item() if alpha_key in lora else None
        for up_s, down_s, mid_s in _FORMATS:
            up_k, down_k = name + up_s, name + down_s
            if up_k in lora and down_k in lora:
                mid = None
                if mid_s is not None and name + mid_s in lora:
                    mid = lora[name + mid_s]
                    used.add(name + mid_s)
                dora = lora.get(name + ".dora_scale")
                if dora is not None:
                    used.add(name + ".dora_scale")
                patches[model_key] = ("lora", (lora[up_k], lora[down_k], alpha, mid, dora))
                used.update((up_k, down_k))
                if alpha is not None:
                    used.add(alpha_key)
                break
        for diff_s, target in ((".diff", model_key), (".diff_b", model_key[:-len(".weight")] + ".bias")):
            if name + diff_s in lora:
                patches[target] = ("diff", (lora[name + diff_s],))
                used.add(name + diff_s)
    for k in lora:
        if k not in used:
            log.warning("lora key not loaded: %s", k)
    return patches


def calculate_weight(patches: list[tuple], weight: torch.Tensor, key: str) -> torch.Tensor:
    """Apply ``[(strength_patch, patch, strength_model, offset, function), ...]`` to a
    float32 ``weight`` (modified and returned)."""
    for strength, v, strength_model, offset, function in patches:
        if strength_model != 1.0:
            weight = weight * strength_model
        if isinstance(v, torch.Tensor):
            v = ("diff", (v,))
        kind, data = v
        target = weight if offset is None else weight.narrow(offset[0], offset[1], offset[2])
        if kind == "diff":
            diff = data[0].to(target.device, torch.float32)
            if strength != 0.0:
                if diff.shape != target.shape:
                    log.warning("WARNING SHAPE MISMATCH %s WEIGHT NOT MERGED %s != %s", key, tuple(diff.shape),
                                tuple(target.shape))
                else:
                    target += strength * diff
        elif kind == "lora":
            up, down, alpha, mid, dora = data
            up = up.to(target.device, torch.float32)
            down = down.to(target.device, torch.float32)
            scale = (alpha / down.shape[0]) if alpha is not None else 1.0
            if mid is not None:
                mid = mid.to(target.device, torch.float32)
                shape = [up.shape[1], down.shape[0], mid.shape[2], mid.shape[3]]
                down = torch.mm(down.transpose(0, 1).flatten(start_dim=1),
                                mid.transpose(0, 1).flatten(start_dim=1)).reshape(shape).transpose(0, 1)
            try:
                delta = torch.mm(up.flatten(start_dim=1), down.flatten(start_dim=1)).reshape(target.shape)
            except RuntimeError as exc:
                log.error("ERROR %s %s %s", kind, key, exc)
                continue
            if dora is not None:
                _weight_decompose(dora.to(target.device, torch.float32), target, delta * scale, strength)
            else:
                target += (strength * scale) * delta
        else:
            log.warning("patch type %s not supported (%s)", kind, key)
        if function is not None:
            weight = function(weight)
    return weight


def _weight_decompose(dora_scale: torch.Tensor, weight: torch.Tensor, diff: torch.Tensor, strength: float) -> None:
    """DoRA: rescale the merged weight to the learned magnitude (in place on ``weight``)."""
    calc = weight + diff
    if dora_scale.shape[0] == calc.shape[0]:
        norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True) \
            .reshape(weight.shape[0], *[1] * (weight.dim() - 1))
    else:
        norm = calc.transpose(0, 1).reshape(calc.shape[1], -1).norm(dim=1, keepdim=True) \
            .reshape(calc.shape[1], *[1] * (calc.dim() - 1)).transpose(0, 1)
    norm = norm + torch.finfo(weight.dtype).eps
    calc = calc * (dora_scale / norm)
    if strength != 1.0:
        weight += strength * (calc - weight)
    else:
        weight.copy_(calc)


def load_lora_for_models(model: Any, clip: Any, lora: dict[str, torch.Tensor], strength_model: float,
                         strength_clip: float) -> tuple[Any, Any]:
    """LoraLoader: clones of ``model``/``clip`` with the LoRA recorded as patches."""
    key_map: dict[str, str] = {}
    if model is not None:
        model_lora_keys_unet(model.model, key_map)
    if clip is not None:
        model_lora_keys_clip(clip.cond_stage_model, key_map)
    loaded = load_lora(lora, key_map)
    new_model = None
    k: set = set()
    if model is not None:
        new_model = model.clone()
        k = set(new_model.add_patches(loaded, strength_model))
    new_clip = None
    k1: set = set()
    if clip is not None:
        new_clip = clip.clone()
        k1 = set(new_clip.add_patches(loaded, strength_clip))
    for x in loaded:
        if x not in k and x not in k1:
            log.warning("NOT LOADED %s", x)
    return new_model, new_clip
