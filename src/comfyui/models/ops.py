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
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


SCALED_FP8_MARKER = "scaled_fp8"


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
