"""Layers whose weights may live in another dtype or on another device than the compute.

Every architecture in ``comfyui.models`` builds its Linear/Conv/Norm layers from this
module. A layer normally runs exactly like its ``torch.nn`` parent (no overhead). When its
``cast_weights`` flag is set (fp8 storage, ``--lowvram`` streaming, or a LoRA patch applied
on the fly) the forward pass casts the weight to the input's device and dtype first, and
applies the functions in ``weight_function`` / ``bias_function`` (LoRA patches) to the cast
copy, so the stored weight is never modified.

Weight storage: fp32 / fp16 / bf16, or fp8 (``float8_e4m3fn`` / ``float8_e5m2``) with the
compute in a wider dtype (the model's manual-cast dtype). "Scaled fp8" files (ComfyUI's
convention) carry a ``scaled_fp8`` marker tensor (its dtype is the fp8 type) and, per layer, a
``scale_weight`` scalar (real weight = stored fp8 weight * scale_weight) and optionally a
``scale_input`` (for fp8 matrix multiplication kernels; kept, not needed for the cast path).
:func:`assign_state_dict` recognises them from the state dict alone.

ComfyUI's newer per-layer convention ("mixed precision" files such as ``*_fp8_mixed`` and
``*_int8_convrot``): a quantized layer ``<l>`` has a ``<l>.comfy_quant`` tensor (uint8, the bytes
of a JSON object: ``format``, and for int8 ``convrot`` / ``convrot_groupsize``, at the top level
or under ``params``) and ``<l>.weight_scale`` (``<l>.input_scale`` optional).
:func:`from_comfy_quant` (called by the file loader) rewrites such a state dict into the forms
above: fp8 layers become scaled-fp8 layers (their own marker ``<l>.scaled_fp8``), int8 layers
(``int8_tensorwise``; real weight = stored int8 * weight_scale, a scalar or one per output row;
with ``convrot`` the stored weight is the real one rotated, per group of ``convrot_groupsize``
input features, by a normalized regular Hadamard matrix H: stored ~ W_group @ H^T) are
dequantized: W_group = (q * scale)_group @ H.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F


SCALED_FP8_MARKER = "scaled_fp8"
COMFY_QUANT = "comfy_quant"
FP8_FORMATS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


class CastWeightBias:
    cast_weights: bool = False
    weight_function: list[Callable[[torch.Tensor], torch.Tensor]]
    bias_function: list[Callable[[torch.Tensor], torch.Tensor]]
    # scaled fp8 layers also hold the buffers ``scale_weight`` (real weight = stored *
    # scale_weight) and possibly ``scale_input``

    def _init_cast(self) -> None:
        self.cast_weights = False
        self.weight_function = []
        self.bias_function = []

    def dequantized_weight(self, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
        """The stored weight as real values in ``dtype`` (scaled fp8 applied)."""
        w = self.weight.to(device=device or self.weight.device, dtype=dtype, non_blocking=True)
        scale = getattr(self, "scale_weight", None)
        if scale is not None:
            w = w * scale.to(device=w.device, dtype=dtype)
        return w

    def cast_bias_weight(self, x: torch.Tensor, dtype: torch.dtype | None = None):
        if dtype is None:
            dtype = x.dtype
        device = x.device
        weight = self.weight
        bias = getattr(self, "bias", None)
        w = self.dequantized_weight(dtype, device) if weight is not None else None
        if w is not None and self.weight_function:
            if w is weight:
                w = w.clone()
            for f in self.weight_function:
                w = f(w)
        b = None
        if bias is not None:
            b = bias.to(device=device, dtype=dtype, non_blocking=True)
            for f in self.bias_function:
                b = f(b)
        return w, b


class Linear(torch.nn.Linear, CastWeightBias):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._init_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cast_weights:
            w, b = self.cast_bias_weight(x)
            return F.linear(x, w, b)
        return F.linear(x, self.weight, self.bias)


class Conv2d(torch.nn.Conv2d, CastWeightBias):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._init_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cast_weights:
            w, b = self.cast_bias_weight(x)
            return self._conv_forward(x, w, b)
        return self._conv_forward(x, self.weight, self.bias)


class Conv3d(torch.nn.Conv3d, CastWeightBias):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._init_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cast_weights:
            w, b = self.cast_bias_weight(x)
            return self._conv_forward(x, w, b)
        return self._conv_forward(x, self.weight, self.bias)


class GroupNorm(torch.nn.GroupNorm, CastWeightBias):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._init_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cast_weights:
            w, b = self.cast_bias_weight(x)
            return F.group_norm(x, self.num_groups, w, b, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class LayerNorm(torch.nn.LayerNorm, CastWeightBias):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._init_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cast_weights:
            w, b = self.cast_bias_weight(x)
            return F.layer_norm(x, self.normalized_shape, w, b, self.eps)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class Embedding(torch.nn.Embedding, CastWeightBias):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._init_cast()

    def forward(self, ids: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        if self.cast_weights:
            w = self.weight.to(device=ids.device)
            if getattr(self, "scale_weight", None) is not None or w.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                w = self.dequantized_weight(out_dtype or torch.float32, ids.device)
            for f in self.weight_function:
                w = f(w.clone() if w is self.weight else w)
            out = F.embedding(ids, w)
        else:
            out = F.embedding(ids, self.weight)
        return out if out_dtype is None else out.to(out_dtype)


class RMSNorm(torch.nn.Module, CastWeightBias):
    """``x / rms(x)`` (computed in float32) times a learned weight, as transformers' and
    diffusers' RMSNorm (Qwen3, Lumina 2 / Z-Image)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(dim))
        self.eps = eps
        self._init_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.cast_bias_weight(x)[0] if self.cast_weights else self.weight
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * w


CAST_TYPES = (Linear, Conv2d, Conv3d, GroupNorm, LayerNorm, Embedding, RMSNorm)


def castable_modules(module: torch.nn.Module):
    """(name, module) for every layer that supports weight casting."""
    for name, m in module.named_modules():
        if isinstance(m, CastWeightBias):
            yield name, m


def set_manual_cast(module: torch.nn.Module, enabled: bool) -> None:
    for _, m in castable_modules(module):
        m.cast_weights = enabled or bool(m.weight_function) or bool(m.bias_function)


def is_scaled_fp8(sd: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict uses the scaled-fp8 convention (the marker, at any prefix)."""
    return any(k == SCALED_FP8_MARKER or k.endswith("." + SCALED_FP8_MARKER) for k in sd)


def scaled_fp8_dtype(sd: dict[str, torch.Tensor]) -> torch.dtype | None:
    """The fp8 storage dtype a scaled-fp8 state dict declares with its marker, else None."""
    for k, v in sd.items():
        if k == SCALED_FP8_MARKER or k.endswith("." + SCALED_FP8_MARKER):
            return v.dtype
    return None


def _attach_scales(module: torch.nn.Module, sd: dict[str, torch.Tensor]) -> set[str]:
    """Register the ``scale_weight`` / ``scale_input`` of the layers ``sd`` has them for;
    returns the keys used."""
    used = set()
    for name, m in castable_modules(module):
        for attr in ("scale_weight", "scale_input"):
            key = f"{name}.{attr}" if name else attr
            t = sd.get(key)
            if t is not None:
                m.register_buffer(attr, t.float().reshape(t.shape).clone())
                used.add(key)
    return used


def assign_state_dict(module: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype | None = None,
                      fill: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> tuple[list[str], list[str]]:
    """Load ``sd`` into a module built on the ``meta`` device by *assigning* the tensors
    (no random init, no extra copy when the dtype already matches). Floating tensors are
    converted to ``dtype``, except in a scaled-fp8 state dict, whose tensors keep the dtypes
    of the file (fp8 weights with their scales, the rest as stored). Parameters still on
    ``meta`` afterwards are created with ``fill[name](empty)`` when given, else zeros, and
    reported as missing."""
    scaled = is_scaled_fp8(sd)
    used = _attach_scales(module, sd) if scaled else set()
    own = module.state_dict(keep_vars=True)
    to_load = {}
    for k, v in sd.items():
        if k in own and k not in used:
            target = dtype if (dtype is not None and v.is_floating_point() and not scaled) else own[k].dtype
            if not v.is_floating_point() or scaled:
                target = v.dtype
            to_load[k] = v.to(target) if v.dtype != target else v
    res = module.load_state_dict(to_load, strict=False, assign=True)
    missing = []
    for name, t in list(module.state_dict(keep_vars=True).items()):
        if t.is_meta:
            parts = name.split(".")
            owner = module.get_submodule(".".join(parts[:-1])) if len(parts) > 1 else module
            real = torch.zeros(t.shape, dtype=dtype if (dtype is not None and t.is_floating_point()) else t.dtype)
            if fill and name in fill:
                real = fill[name](real)
            else:
                missing.append(name)
            if isinstance(t, torch.nn.Parameter):
                setattr(owner, parts[-1], torch.nn.Parameter(real, requires_grad=False))
            else:
                owner._buffers[parts[-1]] = real
    unexpected = [k for k in res.unexpected_keys if k not in used and not k.endswith(SCALED_FP8_MARKER)]
    return missing, unexpected


# ------------------------------------------------------------------ ComfyUI per-layer quantization
def regular_hadamard(size: int) -> torch.Tensor:
    """The normalized regular Hadamard matrix ConvRot uses (float32, symmetric, orthogonal):
    Kronecker powers of [[1,1,1,-1],[1,1,-1,1],[1,-1,1,1],[-1,1,1,1]], divided by sqrt(size);
    ``size`` must be a power of 4."""
    h4 = torch.tensor([[1, 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]], dtype=torch.float32)
    h, n = h4, 4
    while n < size:
        h, n = torch.kron(h, h4), n * 4
    if n != size:
        raise ValueError(f"convrot group size must be a power of 4 (>= 4), got {size}")
    return h / size ** 0.5


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, convrot_groupsize: int | None = None) -> torch.Tensor:
    """The real values (float32) of an int8 weight [out, in] with its scale (a scalar or one per
    output row), rotated back when it was stored ConvRot-rotated in groups of ``convrot_groupsize``."""
    scale = scale.float()
    if scale.numel() == q.shape[0] and q.ndim == 2 and scale.numel() > 1:
        scale = scale.reshape(-1, 1)
    w = q.float() * scale
    if convrot_groupsize:
        out_f, in_f = w.shape
        if in_f % convrot_groupsize:
            raise ValueError(f"in_features {in_f} is not a multiple of the convrot group size {convrot_groupsize}")
        h = regular_hadamard(convrot_groupsize)
        w = (w.reshape(out_f, in_f // convrot_groupsize, convrot_groupsize) @ h).reshape(out_f, in_f)
    return w


def has_comfy_quant(sd) -> bool:
    """Whether ``sd`` holds ComfyUI per-layer quantization; keys need not be strings (a
    hypernetwork's .pt file is keyed by its layer widths)."""
    return any(isinstance(k, str) and (k.endswith("." + COMFY_QUANT) or k == COMFY_QUANT) for k in sd)


def _layer_conf(t: torch.Tensor, layer: str) -> dict:
    try:
        conf = json.loads(bytes(t.to(torch.uint8).flatten().tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"layer {layer!r}: unreadable {COMFY_QUANT} tensor ({exc})") from exc
    if not isinstance(conf, dict) or "format" not in conf:
        raise ValueError(f"layer {layer!r}: {COMFY_QUANT} names no format: {conf!r}")
    params = conf.get("params")
    return {**(params if isinstance(params, dict) else {}), **conf}


def from_comfy_quant(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` with its ``comfy_quant`` layers rewritten (see the module docstring): fp8 layers
    as scaled fp8, int8 layers dequantized into the file's unquantized float dtype (the most
    common one among its other floating tensors; bfloat16 when there is none)."""
    layers = [k[:-len(COMFY_QUANT)] for k in sd if k.endswith("." + COMFY_QUANT) or k == COMFY_QUANT]
    quant_keys = {p + s for p in layers for s in ("weight", "weight_scale", "input_scale", COMFY_QUANT)}
    plain = Counter(v.dtype for k, v in sd.items() if k not in quant_keys and v.is_floating_point()
                    and v.dtype not in FP8_FORMATS.values())
    int8_dtype = plain.most_common(1)[0][0] if plain else torch.bfloat16
    out = {k: v for k, v in sd.items() if k not in quant_keys}
    for p in layers:
        conf = _layer_conf(sd[p + COMFY_QUANT], p.rstrip("."))
        fmt, weight, scale = conf["format"], sd.get(p + "weight"), sd.get(p + "weight_scale")
        if weight is None:
            raise ValueError(f"layer {p.rstrip('.')!r}: {COMFY_QUANT} without a weight")
        if fmt in FP8_FORMATS:
            fp8 = FP8_FORMATS[fmt]
            out[p + "weight"] = weight.view(fp8) if weight.dtype in (torch.uint8, torch.int8) else weight
            out[p + SCALED_FP8_MARKER] = torch.empty(0, dtype=fp8)
            if scale is not None:
                out[p + "scale_weight"] = scale.float()
            if p + "input_scale" in sd:
                out[p + "scale_input"] = sd[p + "input_scale"].float()
        elif fmt == "int8_tensorwise":
            if scale is None:
                raise ValueError(f"layer {p.rstrip('.')!r}: int8 weight without weight_scale")
            group = int(conf.get("convrot_groupsize", 256)) if conf.get("convrot") else None
            out[p + "weight"] = dequantize_int8(weight, scale, group).to(int8_dtype)
        else:
            raise ValueError(f"layer {p.rstrip('.')!r}: quantization format {fmt!r} is not supported "
                             f"(supported: {', '.join([*FP8_FORMATS, 'int8_tensorwise'])})")
    return out
