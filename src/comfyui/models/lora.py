"""LoRA files -> weight patches for :meth:`ModelPatcher.add_patches`, and the patch arithmetic.

Names a LoRA file may use for a weight: the native ones (``diffusion_model.<key>``,
``lora_unet_<key with _>``, ``model.diffusion_model.<key>``), the text encoders' (kohya
``lora_te*_``, diffusers ``text_encoder*.``, ``text_encoders.<key>``) and each family's own
(:attr:`Family.lora_key_map`: diffusers/PEFT ``transformer.*``, OneTrainer
``lora_transformer_*``, LyCORIS ``lycoris_*``, kohya-diffusers ``lora_unet_<diffusers name>``).
A name maps to a *target*: a state-dict key, or ``(key, (dim, start, length) | None,
function | None)`` -- a slice of a fused weight (diffusers' separate q/k/v onto BFL's ``qkv``)
and/or a function applied to the delta (diffusers' scale/shift order onto BFL's shift/scale).
"""
from __future__ import annotations

import logging
from typing import Any, Union

import torch

log = logging.getLogger(__name__)

Target = Union[str, tuple]


def add_names(key_map: dict[str, Target], names: dict[str, Target], dotted: tuple[str, ...] = (),
              underscored: tuple[str, ...] = ()) -> dict[str, Target]:
    """Enter each ``names`` item (a module name in some other layout, without ``.weight``:
    its target) under every prefix: ``dotted`` ones keep the dots (``"transformer."``),
    ``underscored`` ones replace them with ``_`` (``"lora_transformer_"``)."""
    for name, target in names.items():
        for p in dotted:
            key_map[p + name] = target
        flat = name.replace(".", "_")
        for p in underscored:
            key_map[p + flat] = target
    return key_map


def swap_scale_shift(t: torch.Tensor) -> torch.Tensor:
    """diffusers' ``AdaLayerNormContinuous`` rows (scale, shift) <-> the native (shift, scale)."""
    a, b = t.chunk(2, dim=0)
    return torch.cat((b, a), dim=0)


def model_lora_keys_unet(model: Any, key_map: dict[str, Target] | None = None) -> dict[str, Target]:
    """{name used by LoRA files: target in ``model`` (a BaseModel)}: the native names
    (``lora_unet_<key>``, ``diffusion_model.<key>``; other parameters such as biases and norm
    scales under their full key, for ``.diff`` / ``.set_weight`` entries), plus the family's own
    map (:attr:`Family.lora_key_map`)."""
    key_map = {} if key_map is None else key_map
    sd_keys = set(model.state_dict().keys())
    for k in sd_keys:
        if not k.startswith("diffusion_model."):
            continue
        if k.endswith(".weight"):
            base = k[len("diffusion_model."):-len(".weight")]
            key_map["lora_unet_" + base.replace(".", "_")] = k
            key_map[k[:-len(".weight")]] = k
            key_map["model." + k[:-len(".weight")]] = k
        else:
            key_map[k] = k
    family_map = getattr(getattr(model, "family", None), "lora_key_map", None)
    if family_map is not None:
        key_map.update(family_map(model))
    return key_map


_CLIP_PREFIXES = {
    "sd1": {"l": ["lora_te_", "lora_te1_", "text_encoder."]},
    "sd2": {"h": ["lora_te_", "lora_te1_", "text_encoder."]},
    "sdxl": {"l": ["lora_te1_", "text_encoder."], "g": ["lora_te2_", "text_encoder_2."]},
    "sdxl_refiner": {"g": ["lora_te2_", "lora_te_", "text_encoder_2."]},
    # Flux: kohya's sd-scripts lora_te1_ (CLIP-L); T5 as lora_te2_ / lora_te3_ (OneTrainer)
    "flux": {"l": ["lora_te1_", "lora_te_", "text_encoder."], "t5xxl": ["lora_te2_", "lora_te3_"]},
    # SD3: CLIP-L, CLIP-G, T5 as lora_te1_, lora_te2_, lora_te3_ (OneTrainer, kohya)
    "sd3": {"l": ["lora_te1_", "text_encoder."], "g": ["lora_te2_", "text_encoder_2."], "t5xxl": ["lora_te3_"]},
}


def _clip_layout(clip_model: Any) -> str:
    """Which naming the text encoders' LoRA keys follow: the checkpoint type for the SD
    families, else by the encoders present (CLIP-L + T5: Flux's; CLIP-L/G + T5: SD3's)."""
    names = set(getattr(clip_model, "names", ()))
    if "t5xxl" in names:
        return "sd3" if "clip_g" in names else "flux"
    return clip_model.family


def model_lora_keys_clip(clip_model: Any, key_map: dict[str, Target] | None = None) -> dict[str, Target]:
    """Same for a text-encoder module (``comfyui.models.text_encoders.encoder.TextEncoders``):
    ``text_encoders.<key>`` for every weight, and per encoder the kohya / diffusers names of its
    layout (see ``_CLIP_PREFIXES``)."""
    key_map = {} if key_map is None else key_map
    prefixes = _CLIP_PREFIXES.get(_clip_layout(clip_model), {})
    for k in clip_model.state_dict().keys():
        if not k.endswith(".weight"):
            continue
        key_map["text_encoders." + k[:-len(".weight")]] = k
        if ".transformer." not in k:
            continue
        key, rest = k.split(".transformer.", 1)
        enc = key[len("clip_"):] if key.startswith("clip_") else key
        base = rest[:-len(".weight")]
        for pfx in prefixes.get(enc, []):
            if pfx.endswith("_"):
                key_map[pfx + base.replace(".", "_")] = k
            else:
                key_map[pfx + base] = k
    return key_map


# (up suffix, down suffix, mid suffix) of the LoRA layouts in use: kohya/LyCORIS, PEFT/diffusers,
# old diffusers attention processors, Mochi trainers, transformers' LoRA layers, PEFT "default"
_FORMATS = (
    (".lora_up.weight", ".lora_down.weight", ".lora_mid.weight"),
    ("_lora.up.weight", "_lora.down.weight", None),
    (".lora_B.weight", ".lora_A.weight", None),
    (".lora.up.weight", ".lora.down.weight", None),
    (".lora_B", ".lora_A", None),
    (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight", None),
    (".lora_B.default.weight", ".lora_A.default.weight", None),
)


def _bias_target(target: Target) -> Target | None:
    """The bias beside a ``.weight`` target (same slice and function), else None."""
    key = target if isinstance(target, str) else target[0]
    if not key.endswith(".weight"):
        return None
    bias = key[:-len(".weight")] + ".bias"
    return bias if isinstance(target, str) else (bias, *target[1:])


def convert_lora(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """File layouts that need renaming before the key maps apply. Black Forest Labs' control
    LoRAs (``flux1-depth-dev-lora``, ``flux1-canny-dev-lora``: bare BFL keys, LoRA biases,
    replaced q/k norm scales, an input projection that takes more channels) become
    ``diffusion_model.*`` with ``.diff_b`` biases, ``.set_weight`` norm scales and an
    ``img_in.reshape_weight`` giving the widened shape. Anything else is returned as is."""
    if "img_in.lora_A.weight" in lora and "single_blocks.0.norm.key_norm.scale" in lora:
        out = {}
        for k, v in lora.items():
            k = k.replace(".lora_B.bias", ".diff_b").replace("_norm.scale", "_norm.scale.set_weight")
            out["diffusion_model." + k] = v
        out["diffusion_model.img_in.reshape_weight"] = torch.tensor(
            [lora["img_in.lora_B.weight"].shape[0], lora["img_in.lora_A.weight"].shape[1]])
        return out
    return lora


def load_lora(lora: dict[str, torch.Tensor], to_load: dict[str, Target], log_missing: bool = True) -> dict[Target, tuple]:
    """{model target: patch} for every LoRA entry named in ``to_load`` ({file name: target},
    a target being a state-dict key or ``(key, (dim, start, length) | None, function | None)``,
    a slice of a fused weight). Patch forms: ``("lora", (up, down, alpha, mid, dora_scale,
    reshape))`` (``reshape``: the shape the weight is zero-padded to first, from
    ``<name>.reshape_weight``), ``("diff", (delta,))`` (``.diff``, ``.diff_b`` for the bias,
    ``.w_norm``/``.b_norm``), ``("set", (value,))`` (``.set_weight``). File keys no target
    uses are logged."""
    patches: dict[Target, tuple] = {}
    used: set[str] = set()
    for name, target in to_load.items():
        alpha_key = name + ".alpha"
        alpha = lora[alpha_key].item() if alpha_key in lora else None
        dora = lora.get(name + ".dora_scale")
        for up_s, down_s, mid_s in _FORMATS:
            up_k, down_k = name + up_s, name + down_s
            if up_k in lora and down_k in lora:
                mid = None
                if mid_s is not None and name + mid_s in lora:
                    mid = lora[name + mid_s]
                    used.add(name + mid_s)
                reshape = None
                if name + ".reshape_weight" in lora:
                    reshape = [int(n) for n in lora[name + ".reshape_weight"].tolist()]
                    used.add(name + ".reshape_weight")
                if dora is not None:
                    used.add(name + ".dora_scale")
                patches[target] = ("lora", (lora[up_k], lora[down_k], alpha, mid, dora, reshape))
                used.update((up_k, down_k))
                if alpha is not None:
                    used.add(alpha_key)
                break
        bias = _bias_target(target)
        for suffix, to, kind in ((".w_norm", target, "diff"), (".b_norm", bias, "diff"), (".diff", target, "diff"),
                                 (".diff_b", bias, "diff"), (".set_weight", target, "set")):
            if name + suffix in lora and to is not None:
                patches[to] = (kind, (lora[name + suffix],))
                used.add(name + suffix)
    if log_missing:
        for k in lora:
            if k not in used:
                log.warning("lora key not loaded: %s", k)
    return patches


def pad_to_shape(weight: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """``weight`` in the top-left corner of a zero tensor of ``shape`` (no dimension smaller)."""
    if len(shape) != weight.ndim or any(n < o for n, o in zip(shape, weight.shape)):
        raise ValueError(f"cannot pad a weight of shape {tuple(weight.shape)} to {tuple(shape)}")
    out = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
    out[tuple(slice(0, n) for n in weight.shape)] = weight
    return out


pad_tensor_to_shape = pad_to_shape  # upstream's name


def changes_shape(patches: list[tuple]) -> bool:
    """Whether applying ``patches`` (a patcher's list for one key) changes the weight's shape
    (a control LoRA's ``reshape_weight``): such a weight is patched in place, never streamed."""
    for p in patches:
        v = p[1]
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "lora" and len(v[1]) > 5 and v[1][5] is not None:
            return True
    return False


def calculate_weight(patches: list[tuple], weight: torch.Tensor, key: str,
                     intermediate_dtype: torch.dtype = torch.float32, original_weights: Any = None) -> torch.Tensor:
    """Apply ``[(strength_patch, patch, strength_model, offset, function), ...]`` to a
    float32 ``weight`` (modified in place where the shape allows, and returned). ``offset``
    ``(dim, start, length)`` limits a patch to that slice of a fused weight; ``function``
    transforms the patch's delta before it is added (e.g. diffusers' scale/shift order ->
    BFL's shift/scale). ``intermediate_dtype`` / ``original_weights``: upstream's signature, for
    custom nodes (the math here is always float32)."""
    for strength, v, strength_model, offset, function in patches:
        if isinstance(v, torch.Tensor):
            v = ("diff", (v,))
        elif isinstance(v, list):  # another model's weight with its own patches (model merging)
            v = ("diff", (calculate_weight(v[1:], v[0][0].to(weight.device, torch.float32, copy=True), key),))
        kind, data = v
        target = weight if offset is None else weight.narrow(offset[0], offset[1], offset[2])
        if strength_model != 1.0:
            target *= strength_model
        fn = function if function is not None else (lambda t: t)
        if kind == "diff":
            diff = data[0].to(target.device, torch.float32)
            if len(data) > 1 and data[1].get("pad_weight") and diff.shape != target.shape and offset is None:
                target = weight = pad_to_shape(target, list(diff.shape))
            if strength != 0.0:
                if diff.shape != target.shape:
                    log.warning("WARNING SHAPE MISMATCH %s WEIGHT NOT MERGED %s != %s", key, tuple(diff.shape),
                                tuple(target.shape))
                else:
                    target += fn(strength * diff)
        elif kind == "set":
            target.copy_(data[0].to(target.device, torch.float32))
        elif kind == "lora":
            up, down, alpha, mid, dora = data[:5]
            reshape = data[5] if len(data) > 5 else None
            if reshape is not None and offset is None and list(target.shape) != list(reshape):
                target = weight = pad_to_shape(target, reshape)
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
                _weight_decompose(dora.to(target.device, torch.float32), target, fn(delta * scale), strength)
            else:
                target += fn((strength * scale) * delta)
        else:
            log.warning("patch type %s not supported (%s)", kind, key)
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
    loaded = load_lora(convert_lora(lora), key_map)
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
