"""ComfyUI's per-layer quantized files (``<layer>.comfy_quant`` JSON bytes + ``weight_scale``),
written from float weights the way its converters do: int8 with ConvRot (the weight rotated
per group of input features by the normalized regular Hadamard matrix, then one scale per
output row), fp8 e4m3fn with one scale per tensor ("fp8_mixed" files). Used by the model tests
and the template fixtures."""
from __future__ import annotations

import json

import torch

FP8_MAX = 448.0


def quant_conf(**conf) -> torch.Tensor:
    return torch.tensor(list(json.dumps(conf).encode("utf-8")), dtype=torch.uint8)


def hadamard(size: int) -> torch.Tensor:
    """Written out independently of the loader: Kronecker powers of the 4x4 regular Hadamard."""
    h4 = torch.tensor([[1., 1., 1., -1.], [1., 1., -1., 1.], [1., -1., 1., 1.], [-1., 1., 1., 1.]])
    h = h4
    while h.shape[0] < size:
        h = torch.kron(h, h4)
    assert h.shape[0] == size
    return h / size ** 0.5


def int8_convrot_layer(w: torch.Tensor, group: int) -> dict[str, torch.Tensor]:
    """{"weight": int8, "weight_scale": [out, 1]} of a [out, in] weight, rotated in groups of
    ``group`` input features (``group`` None: no rotation)."""
    w = w.float()
    if group:
        out_f, in_f = w.shape
        w = (w.reshape(out_f, in_f // group, group) @ hadamard(group).T).reshape(out_f, in_f)
    scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-30)
    return {"weight": (w / scale).round().clamp(-128, 127).to(torch.int8), "weight_scale": scale}


def int8_convrot_file(sd: dict[str, torch.Tensor], group: int = 16, prefix: str = "") -> dict[str, torch.Tensor]:
    """The 2-D ``.weight`` tensors under ``prefix`` as int8 (ConvRot-rotated where the input
    width is a multiple of ``group``, plain int8 otherwise, as upstream's converter does)."""
    out = {}
    for k, v in sd.items():
        if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 2 and v.is_floating_point():
            layer = k[:-len("weight")]
            rotate = v.shape[1] % group == 0
            for suffix, t in int8_convrot_layer(v, group if rotate else None).items():
                out[layer + suffix] = t
            conf = {"format": "int8_tensorwise", "convrot": True, "convrot_groupsize": group} if rotate \
                else {"format": "int8_tensorwise"}
            out[layer + "comfy_quant"] = quant_conf(**conf)
        else:
            out[k] = v
    return out


def fp8_mixed_file(sd: dict[str, torch.Tensor], keep=lambda key: False) -> dict[str, torch.Tensor]:
    """2-D ``.weight`` tensors as fp8 e4m3fn with a per-tensor ``weight_scale`` and an
    ``input_scale``, except those ``keep(key)`` leaves in their dtype (the "mixed" part)."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight") and v.ndim == 2 and v.is_floating_point() and not keep(k):
            layer = k[:-len("weight")]
            scale = v.float().abs().max().clamp_min(1e-12) / FP8_MAX
            out[k] = (v.float() / scale).to(torch.float8_e4m3fn)
            out[layer + "weight_scale"] = scale.reshape(())
            out[layer + "input_scale"] = torch.tensor(1.0)
            out[layer + "comfy_quant"] = quant_conf(format="float8_e4m3fn")
        else:
            out[k] = v
    return out
