"""Step previews (ComfyUI's ``latent_preview``) and the KSampler progress callback.

``--preview-method``: ``none`` (default), ``latent2rgb`` or ``auto`` (latent2rgb here; a
TAESD decoder is used when ``comfyui.models`` exposes ``load_taesd_previewer(latent_format)``
and the weights are present). Previews go to ``ProgressBar.update_absolute`` as
``("JPEG", PIL.Image, max_size)``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from comfyui.engine.progress import ProgressBar, throw_if_interrupted

MAX_PREVIEW_RESOLUTION = 512


def _preview_method() -> str:
    try:
        from comfyui.models import memory
        return str(memory.args.get("preview_method", "none") or "none").lower()
    except Exception:
        return "none"


def preview_to_image(latent_image: torch.Tensor):
    from PIL import Image

    img = ((latent_image + 1.0) / 2.0).clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(img)


class Latent2RGBPreviewer:
    """Linear projection of the latent channels to RGB with the format's factors."""

    def __init__(self, latent_rgb_factors, latent_rgb_factors_bias=None):
        self.latent_rgb_factors = torch.tensor(latent_rgb_factors, device="cpu").transpose(0, 1)
        self.latent_rgb_factors_bias = (torch.tensor(latent_rgb_factors_bias, device="cpu")
                                        if latent_rgb_factors_bias is not None else None)

    def decode_latent_to_preview(self, x0: torch.Tensor):
        factors = self.latent_rgb_factors.to(dtype=x0.dtype, device=x0.device)
        bias = self.latent_rgb_factors_bias
        if bias is not None:
            bias = bias.to(dtype=x0.dtype, device=x0.device)
        if x0.ndim == 5:
            x0 = x0[:, :, 0]
        rgb = torch.nn.functional.linear(x0[0:1].movedim(1, -1), factors, bias=bias)
        return preview_to_image(rgb[0].float())

    def decode_latent_to_preview_image(self, preview_format: str, x0: torch.Tensor):
        return (preview_format, self.decode_latent_to_preview(x0), MAX_PREVIEW_RESOLUTION)


def get_previewer(model_patcher: Any):
    method = _preview_method()
    if method in ("none", "nopreviews", "", "false"):
        return None
    model = getattr(model_patcher, "model", model_patcher)
    latent_format = getattr(model, "latent_format", None)
    if latent_format is None:
        return None
    if method in ("auto", "taesd"):
        try:
            from comfyui import models as _models
            loader = getattr(_models, "load_taesd_previewer", None)
            if loader is not None:
                prev = loader(latent_format)
                if prev is not None:
                    return prev
        except Exception:
            pass
    factors = getattr(latent_format, "latent_rgb_factors", None)
    if factors is None:
        return None
    return Latent2RGBPreviewer(factors, getattr(latent_format, "latent_rgb_factors_bias", None))


def prepare_callback(model_patcher: Any, steps: int, x0_output_dict: dict | None = None) -> Callable:
    """Progress (+ preview) callback ``callback(step, x0, x, total_steps)`` for samplers."""
    previewer = get_previewer(model_patcher)
    pbar = ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        preview = None
        if previewer is not None and x0 is not None:
            try:
                preview = previewer.decode_latent_to_preview_image("JPEG", x0)
            except Exception:
                preview = None
        pbar.update_absolute(step + 1, total_steps, preview)
        throw_if_interrupted()

    return callback
