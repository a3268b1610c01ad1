"""``comfy.ops``: the layer sets models are built from (``operations=comfy.ops.manual_cast``).

``disable_weight_init`` holds layers that skip their random initialisation (weights are loaded
right after) and run as plain torch layers; ``manual_cast`` holds the same layers with weight
casting on: weight and bias are cast to the input's device and dtype in ``forward``, with the
layer's ``weight_function`` / ``bias_function`` patches applied. Linear, Conv2d, GroupNorm,
LayerNorm and Embedding are :mod:`comfyui.models.ops`' layers (what our models use); the other
layer kinds get the same casting here. ``comfy_cast_weights`` is upstream's name of the flag.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from comfyui.compat import _unsupported
from comfyui.models import ops as _ops
from comfyui.models.ops import CastWeightBias


def cast_to(weight, dtype=None, device=None, non_blocking=False, copy=False, stream=None):
    if weight is None:
        return None
    return weight.to(device=device, dtype=dtype, non_blocking=non_blocking, copy=copy)


def cast_bias_weight(s, input=None, dtype=None, device=None, bias_dtype=None, offloadable=False):
    """``(weight, bias)`` of layer ``s`` cast to ``input``'s (or the given) device and dtype, patched."""
    if input is not None:
        dtype = input.dtype if dtype is None else dtype
        device = input.device if device is None else device
    bias_dtype = dtype if bias_dtype is None else bias_dtype
    weight = cast_to(s.weight, dtype, device, copy=bool(getattr(s, "weight_function", None)))
    for f in getattr(s, "weight_function", []):
        weight = f(weight)
    bias = None
    if getattr(s, "bias", None) is not None:
        bias = cast_to(s.bias, bias_dtype, device)
        for f in getattr(s, "bias_function", []):
            bias = f(bias)
    return weight, bias


def uncast_bias_weight(s, weight, bias, offload_stream=None):
    """Upstream frees the cast copies' stream here; our casts are plain tensors (nothing to do)."""


class _Flag:
    """``comfy_cast_weights`` (upstream's name) is our layers' ``cast_weights``; no random init."""

    comfy_cast_weights = property(lambda self: self.cast_weights,
                                  lambda self, value: setattr(self, "cast_weights", bool(value)))

    def reset_parameters(self):
        return None


def _cast_layer(torch_cls: type, call) -> type:
    """A ``torch_cls`` whose forward casts weight and bias when ``cast_weights`` is set."""

    def __init__(self, *args, **kwargs):
        torch_cls.__init__(self, *args, **kwargs)
        self._init_cast()

    def forward(self, x, *args, **kwargs):
        if self.cast_weights:
            weight, bias = self.cast_bias_weight(x)
            return call(self, x, weight, bias, *args, **kwargs)
        return torch_cls.forward(self, x, *args, **kwargs)

    return type(torch_cls.__name__, (torch_cls, CastWeightBias), {"__init__": __init__, "forward": forward})


_Conv1d = _cast_layer(torch.nn.Conv1d, lambda s, x, w, b: s._conv_forward(x, w, b))
_Conv3d = _cast_layer(torch.nn.Conv3d, lambda s, x, w, b: s._conv_forward(x, w, b))
_ConvTranspose1d = _cast_layer(torch.nn.ConvTranspose1d, lambda s, x, w, b, output_size=None: F.conv_transpose1d(
    x, w, b, s.stride, s._output_padding(x, output_size, s.stride, s.padding, s.kernel_size, 1, s.dilation),
    s.groups, s.dilation))
_ConvTranspose2d = _cast_layer(torch.nn.ConvTranspose2d, lambda s, x, w, b, output_size=None: F.conv_transpose2d(
    x, w, b, s.stride, s.padding,
    s._output_padding(x, output_size, s.stride, s.padding, s.kernel_size, 2, s.dilation), s.groups, s.dilation))
_RMSNorm = _cast_layer(torch.nn.RMSNorm, lambda s, x, w, b: F.rms_norm(x, s.normalized_shape, w, s.eps))


def _layer_set(name: str, cast: bool) -> type:
    def make(base: type) -> type:
        def __init__(self, *args, **kwargs):
            base.__init__(self, *args, **kwargs)
            self.cast_weights = cast

        return type(base.__name__, (_Flag, base), {"__init__": __init__, "__module__": __name__})

    layers = {cls.__name__: make(cls) for cls in (
        _ops.Linear, _ops.Conv2d, _ops.GroupNorm, _ops.LayerNorm, _ops.Embedding, _Conv1d, _Conv3d,
        _ConvTranspose1d, _ConvTranspose2d, _RMSNorm)}

    def conv_nd(cls, dims, *args, **kwargs):
        if dims not in (1, 2, 3):
            raise ValueError(f"unsupported dimensions: {dims}")
        return getattr(cls, f"Conv{dims}d")(*args, **kwargs)

    return type(name, (), {**layers, "conv_nd": classmethod(conv_nd), "__module__": __name__})


disable_weight_init = _layer_set("disable_weight_init", cast=False)
manual_cast = _layer_set("manual_cast", cast=True)


def pick_operations(weight_dtype, compute_dtype, load_device=None, disable_fast_fp8=False,
                    fp8_optimizations=False, scaled_fp8=None, model_config=None):
    """``disable_weight_init`` when weights are stored in the compute dtype, else ``manual_cast``."""
    if scaled_fp8 is not None or fp8_optimizations:
        raise _unsupported.NotSupportedError("comfy.ops: scaled / optimised fp8 operations are not supported "
                                             "by comfyui")
    if compute_dtype is None or weight_dtype == compute_dtype:
        return disable_weight_init
    return manual_cast


__getattr__ = _unsupported.module_getattr(__name__, {
    "fp8_ops", "scaled_fp8_ops", "fp8_linear", "mixed_precision_ops", "CastWeightBiasOp", "cublas_ops",
})
