"""``comfy.ldm.modules.diffusionmodules.util``: timestep embeddings and small layer helpers."""
from __future__ import annotations

import torch

from comfyui.compat import _unsupported
from comfyui.models.base import timestep_embedding as _timestep_embedding


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000, repeat_only: bool = False):
    """Sinusoidal embeddings ``[N, dim]`` of ``timesteps`` ``[N]`` (cos first, as the UNet's)."""
    if repeat_only:
        return timesteps[:, None].expand(-1, dim)
    return _timestep_embedding(timesteps, dim, max_period)


def zero_module(module: torch.nn.Module) -> torch.nn.Module:
    """Zero ``module``'s parameters in place and return it."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def conv_nd(dims: int, *args, **kwargs) -> torch.nn.Module:
    if dims not in (1, 2, 3):
        raise ValueError(f"unsupported dimensions: {dims}")
    return getattr(torch.nn, f"Conv{dims}d")(*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> torch.nn.Module:
    if dims not in (1, 2, 3):
        raise ValueError(f"unsupported dimensions: {dims}")
    return getattr(torch.nn, f"AvgPool{dims}d")(*args, **kwargs)


def linear(*args, **kwargs) -> torch.nn.Linear:
    return torch.nn.Linear(*args, **kwargs)


__getattr__ = _unsupported.module_getattr(__name__, {
    "AlphaBlender", "checkpoint", "make_beta_schedule", "make_ddim_timesteps", "make_ddim_sampling_parameters",
    "betas_for_alpha_bar", "extract_into_tensor", "mixed_checkpoint", "normalization", "scale_module",
    "mean_flat", "noise_like", "GroupNorm32", "SiLU",
}, "")
