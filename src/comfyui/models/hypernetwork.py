"""Hypernetworks (the A1111 ``.pt`` format): for each attention width a pair of small MLPs that
add ``mlp(k)`` and ``mlp(v)`` to the keys and values of every attention layer of that width.

File layout: ``{320: [sd_k, sd_v], 640: [...], 768: [...], 1280: [...], "activation_func": "relu",
"is_layer_norm": False, "use_dropout": ..., "activate_output": False, "last_layer_dropout": ...}``;
each ``sd`` has ``linear.N.weight/bias`` (and ``linear.N+1.weight/bias`` for layer norms)
in the order of A1111's ``HypernetworkModule`` (Linear, [LayerNorm], activation, [Dropout], ...).
The patch is applied through the model's ``attn1_patch`` / ``attn2_patch`` lists.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .loading import ModelFileError, load_torch_file

log = logging.getLogger(__name__)

ACTIVATIONS = {
    "linear": nn.Identity, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU, "swish": nn.Hardswish,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softsign": nn.Softsign, "mish": nn.Mish,
}


def _build(sd: dict[str, torch.Tensor], activation: str, is_layer_norm: bool, activate_output: bool) -> nn.Sequential:
    """One MLP: each Linear is followed by the activation (not after the last one unless
    ``activate_output``) and then, with ``is_layer_norm``, by the LayerNorm stored right
    after it (the order ComfyUI builds)."""
    names = [k[:-len(".weight")] for k in sorted(
        (k for k in sd if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))]
    layers: list[nn.Module] = []
    state: dict[str, torch.Tensor] = {}
    step = 2 if is_layer_norm else 1
    groups = [names[i:i + step] for i in range(0, len(names), step)]
    for n, group in enumerate(groups):
        w = sd[group[0] + ".weight"]
        state[f"{len(layers)}.weight"], state[f"{len(layers)}.bias"] = w, sd[group[0] + ".bias"]
        layers.append(nn.Linear(w.shape[1], w.shape[0]))
        if activation != "linear" and (n < len(groups) - 1 or activate_output):
            layers.append(ACTIVATIONS[activation]())
        if is_layer_norm:
            ln = sd[group[1] + ".weight"]
            state[f"{len(layers)}.weight"], state[f"{len(layers)}.bias"] = ln, sd[group[1] + ".bias"]
            layers.append(nn.LayerNorm(ln.shape[0]))
    seq = nn.Sequential(*layers)
    seq.load_state_dict(state)
    return seq.eval().requires_grad_(False)


class HypernetworkPatch:
    """``(q, k, v, extra_options) -> (q, k, v)`` attention patch."""

    def __init__(self, nets: dict[int, tuple[nn.Module, nn.Module]], strength: float):
        self.nets = nets
        self.strength = strength

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: Any):
        pair = self.nets.get(k.shape[-1])
        if pair is not None:
            hk, hv = pair
            hk.to(device=k.device, dtype=k.dtype)
            hv.to(device=v.device, dtype=v.dtype)
            k = k + hk(k) * self.strength
            v = v + hv(v) * self.strength
        return q, k, v


def load_hypernetwork_patch(path: str, strength: float) -> HypernetworkPatch:
    data = load_torch_file(path)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not a hypernetwork")
    activation = data.get("activation_func", "linear")
    if activation not in ACTIVATIONS:
        raise ModelFileError(f"{path}: unsupported hypernetwork activation {activation!r}")
    is_layer_norm = bool(data.get("is_layer_norm", False))
    activate_output = bool(data.get("activate_output", False))
    nets: dict[int, tuple[nn.Module, nn.Module]] = {}
    for key, value in data.items():
        try:
            dim = int(key)
        except (TypeError, ValueError):
            continue
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            continue
        nets[dim] = (_build(value[0], activation, is_layer_norm, activate_output),
                     _build(value[1], activation, is_layer_norm, activate_output))
    if not nets:
        raise ModelFileError(f"{path}: no hypernetwork layers found")
    return HypernetworkPatch(nets, strength)
