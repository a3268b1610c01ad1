"""Layers whose weights may live in another dtype or on another device than the compute.

Every architecture in ``comfyui.models`` builds its Linear/Conv/Norm layers from this
module. A layer normally runs exactly like its ``torch.nn`` parent (no overhead). When its
``cast_weights`` flag is set (fp8 storage, ``--lowvram`` streaming, or a LoRA patch applied
on the fly) the forward pass casts the weight to the input's device and dtype first, and
applies the functions in ``weight_function`` / ``bias_function`` (LoRA patches) to the cast
copy, so the stored weight is never modified.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


class CastWeightBias:
    cast_weights: bool = False
    weight_function: list[Callable[[torch.Tensor], torch.Tensor]]
    bias_function: list[Callable[[torch.Tensor], torch.Tensor]]

    def _init_cast(self) -> None:
        self.cast_weights = False
        self.weight_function = []
        self.bias_function = []

    def cast_bias_weight(self, x: torch.Tensor, dtype: torch.dtype | None = None):
        if dtype is None:
            dtype = x.dtype
        device = x.device
        weight = self.weight
        bias = getattr(self, "bias", None)
        w = weight.to(device=device, dtype=dtype, non_blocking=True) if weight is not None else None
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
            for f in self.weight_function:
                w = f(w.clone() if w is self.weight else w)
            out = F.embedding(ids, w)
        else:
            out = F.embedding(ids, self.weight)
        return out if out_dtype is None else out.to(out_dtype)


CAST_TYPES = (Linear, Conv2d, GroupNorm, LayerNorm, Embedding)


def castable_modules(module: torch.nn.Module):
    """(name, module) for every layer that supports weight casting."""
    for name, m in module.named_modules():
        if isinstance(m, CastWeightBias):
            yield name, m


def set_manual_cast(module: torch.nn.Module, enabled: bool) -> None:
    for _, m in castable_modules(module):
        m.cast_weights = enabled or bool(m.weight_function) or bool(m.bias_function)


def assign_state_dict(module: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype | None = None,
                      fill: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> tuple[list[str], list[str]]:
    """Load ``sd`` into a module built on the ``meta`` device by *assigning* the tensors
    (no random init, no extra copy when the dtype already matches). Floating tensors are
    converted to ``dtype``. Parameters still on ``meta`` afterwards are created with
    ``fill[name](empty)`` when given, else zeros, and reported as missing."""
    own = module.state_dict(keep_vars=True)
    to_load = {}
    for k, v in sd.items():
        if k in own:
            target = dtype if (dtype is not None and v.is_floating_point()) else own[k].dtype
            if not v.is_floating_point():
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
    return missing, list(res.unexpected_keys)
