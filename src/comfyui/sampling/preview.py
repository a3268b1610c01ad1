"""Step previews (ComfyUI's ``latent_preview``) and the KSampler progress callback.

``--preview-method`` (``comfyui.config.current().preview_method``, or
``comfyui.models.memory.args["preview_method"]``): ``none`` (default), ``latent2rgb``,
``taesd`` / ``auto`` (TAESD when ``models/vae_approx`` holds the format's decoder, e.g.
``taesd_decoder.safetensors`` / ``taesdxl_decoder.pth``; latent2rgb otherwise). A prompt may
ask for its own method (``extra_data.preview_method``, the frontend's "Live preview method"
setting), as upstream's ``set_preview_method`` allows. Video latents preview their first frame,
as upstream's previewers do.
Previews go to ``ProgressBar.update_absolute`` as ``("JPEG", PIL.Image, max_size)``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from comfyui.engine.progress import ProgressBar, current_context, throw_if_interrupted

MAX_PREVIEW_RESOLUTION = 512


def _preview_settings() -> tuple[str, int]:
    method, size = "none", MAX_PREVIEW_RESOLUTION
    try:
        from comfyui import config
        cfg = config.current()
        method = str(getattr(cfg, "preview_method", method) or method)
        size = int(getattr(cfg, "preview_size", size) or size)
    except Exception:
        pass
    try:
        from comfyui.models import memory
        override = memory.args.get("preview_method")
        if override and str(override).lower() != "none":
            method = str(override)
    except Exception:
        pass
    ctx = current_context()
    if ctx is not None and ctx.preview_method is not None:
        method = ctx.preview_method
    return method.lower(), size


# ----------------------------------------------------------------------------------------
# TAESD (tiny autoencoder) decoder for previews
# ----------------------------------------------------------------------------------------
def _conv(n_in, n_out, **kw):
    return torch.nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class _Clamp(torch.nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class _Block(torch.nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = torch.nn.Sequential(_conv(n_in, n_out), torch.nn.ReLU(), _conv(n_out, n_out), torch.nn.ReLU(),
                                        _conv(n_out, n_out))
        self.skip = torch.nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else torch.nn.Identity()
        self.fuse = torch.nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def taesd_decoder(latent_channels: int = 4) -> torch.nn.Sequential:
    """TAESD's decoder layout (state-dict keys "1.weight", "3.conv.0.weight", ...)."""
    layers: list[torch.nn.Module] = [_Clamp(), _conv(latent_channels, 64), torch.nn.ReLU()]
    for _ in range(3):
        layers += [_Block(64, 64), _Block(64, 64), _Block(64, 64), torch.nn.Upsample(scale_factor=2),
                   _conv(64, 64, bias=False)]
    layers += [_Block(64, 64), _conv(64, 3)]
    return torch.nn.Sequential(*layers)


class LatentPreviewer:
    """Base of the previewers (ComfyUI's ``latent_preview.LatentPreviewer``, which packs subclass):
    ``decode_latent_to_preview(x0)`` gives a PIL image of the first latent of ``x0``."""

    def decode_latent_to_preview(self, x0: torch.Tensor):
        raise NotImplementedError

    def decode_latent_to_preview_image(self, preview_format: str, x0: torch.Tensor):
        return (preview_format, self.decode_latent_to_preview(x0), MAX_PREVIEW_RESOLUTION)


class TAESDPreviewer(LatentPreviewer):
    """Decodes model-space latents with a TAESD decoder (output in 0..1)."""

    def __init__(self, decoder: torch.nn.Module, max_size: int = MAX_PREVIEW_RESOLUTION):
        self.decoder = decoder.eval()
        self.max_size = max_size

    @torch.no_grad()
    def decode_latent_to_preview(self, x0: torch.Tensor):
        x = x0[:1].to(dtype=torch.float32, device="cpu")
        img = self.decoder(x)[0].movedim(0, 2)
        return preview_to_image(img.sub(0.5).mul(2))

    def decode_latent_to_preview_image(self, preview_format: str, x0: torch.Tensor):
        return (preview_format, self.decode_latent_to_preview(x0), self.max_size)


_TAESD_CACHE: dict[str, torch.nn.Module] = {}


def find_taesd_decoder(latent_format) -> str | None:
    name = getattr(latent_format, "taesd_decoder_name", None)
    if not name:
        return None
    try:
        from comfyui import paths
        for f in paths.get_filename_list("vae_approx"):
            if f.rsplit("/", 1)[-1].startswith(name):
                return paths.get_full_path("vae_approx", f)
    except Exception:
        return None
    return None


def load_taesd_previewer(latent_format, max_size: int = MAX_PREVIEW_RESOLUTION):
    path = find_taesd_decoder(latent_format)
    if path is None:
        return None
    dec = _TAESD_CACHE.get(path)
    if dec is None:
        from comfyui.models.loading import load_torch_file
        sd = load_torch_file(path)
        if sd and all(k.startswith("decoder.") for k in sd):
            sd = {k[len("decoder."):]: v for k, v in sd.items()}
        dec = taesd_decoder(getattr(latent_format, "latent_channels", 4))
        dec.load_state_dict(sd)
        _TAESD_CACHE[path] = dec
    return TAESDPreviewer(dec, max_size)


def preview_to_image(latent_image: torch.Tensor):
    from PIL import Image

    img = ((latent_image + 1.0) / 2.0).clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(img)


class Latent2RGBPreviewer(LatentPreviewer):
    """Linear projection of the latent channels to RGB with the format's factors."""

    def __init__(self, latent_rgb_factors, latent_rgb_factors_bias=None, max_size: int = MAX_PREVIEW_RESOLUTION):
        self.max_size = max_size
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
        return (preview_format, self.decode_latent_to_preview(x0), self.max_size)


def get_previewer(model_or_device: Any, latent_format: Any = None):
    """The previewer for the configured method, or None. Called with a MODEL (patcher), or
    ComfyUI-style as ``get_previewer(device, latent_format)``."""
    method, size = _preview_settings()
    if method in ("none", "nopreviews", "", "false"):
        return None
    if latent_format is None:
        model = getattr(model_or_device, "model", model_or_device)
        latent_format = getattr(model, "latent_format", None)
    if latent_format is None:
        return None
    if method in ("auto", "taesd"):
        try:
            prev = load_taesd_previewer(latent_format, size)
        except Exception:
            prev = None
        if prev is not None:
            return prev
    factors = getattr(latent_format, "latent_rgb_factors", None)
    if factors is None:
        return None
    return Latent2RGBPreviewer(factors, getattr(latent_format, "latent_rgb_factors_bias", None), size)


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
