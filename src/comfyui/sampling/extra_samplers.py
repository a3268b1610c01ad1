"""Samplers of ComfyUI's ``nodes_advanced_samplers`` group: LCM with a progressive latent
upscale between steps, and the "alternative" Euler CFG++ (renoises with the unconditional
prediction, without the alpha scaling of ``euler_cfg_pp``)."""
from __future__ import annotations

import numpy as np
import torch

from .k_diffusion import _cb, _steps, _UncondCapture, to_d


def _resize(x: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    if method == "nearest-exact" or method in ("bilinear", "bicubic", "area"):
        return torch.nn.functional.interpolate(x, size=(height, width), mode=method)
    raise ValueError(f"no resize function given for {method!r}")


@torch.no_grad()
def sample_lcm_upscale(model, x, sigmas, extra_args=None, callback=None, disable=None, total_upscale=2.0,
                       upscale_method="bislerp", upscale_steps=None, resize=None):
    """LCM steps (jump to x0, renoise to the next sigma); after step i < n the x0 is resized
    to ``upscales[i]`` times the input size, the factors rising evenly from 1 to
    ``total_upscale`` over ``upscale_steps`` steps (default: half the steps + 1).
    ``resize(x, width, height, method)`` does the resizing (the node passes the latent
    upscaler, which also has bislerp)."""
    resize = _resize if resize is None else resize
    extra_args = {} if extra_args is None else extra_args
    if upscale_steps is None:
        upscale_steps = max(len(sigmas) // 2 + 1, 2)
    else:
        upscale_steps = min(upscale_steps + 1, len(sigmas) + 1)
    upscales = np.linspace(1.0, total_upscale, upscale_steps)[1:]
    seed = extra_args.get("seed")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed) + (1 if x.device.type == "cpu" else 0))
    h0, w0 = x.shape[-2], x.shape[-1]
    for i in _steps(sigmas):
        s_in = x.new_ones([x.shape[0]])
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if i < len(upscales):
            x = resize(x, round(w0 * upscales[i]), round(h0 * upscales[i]), upscale_method)
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x


@torch.no_grad()
def sample_euler_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler CFG++ ("alternative"): the step direction is (x - 2 * denoised + uncond) / sigma."""
    extra_args = {} if extra_args is None else dict(extra_args)
    cap = _UncondCapture(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x - denoised + cap.get(denoised), sigmas[i], denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x
