"""Tensor helpers shared by the image / mask node packs.

Conventions: IMAGE is float32 [B,H,W,C] in 0..1, MASK is float32 [B,H,W]. The resampling helpers
work on channel-first [B,C,H,W] tensors, like ComfyUI's ``comfy.utils.common_upscale``.
This module exports no nodes (the registry skips it).
"""
from __future__ import annotations

import math

from PIL import Image

from ._lazy import lazy

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")

MAX_RESOLUTION = 16384

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop [..., H, W] around the centre so it has the aspect ratio width:height."""
    old_w, old_h = samples.shape[-1], samples.shape[-2]
    old_aspect = old_w / old_h
    new_aspect = width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos resize of [B,C,H,W] through Pillow, one float channel at a time (any channel count)."""
    out = torch.empty((samples.shape[0], samples.shape[1], height, width), dtype=torch.float32)
    src = samples.detach().to("cpu", torch.float32).numpy()
    for b in range(src.shape[0]):
        for c in range(src.shape[1]):
            channel = Image.fromarray(np.ascontiguousarray(src[b, c]))  # float32 -> mode "F"
            resized = channel.resize((width, height), resample=Image.Resampling.LANCZOS)
            out[b, c] = torch.from_numpy(np.array(resized, dtype=np.float32))
    # ComfyUI resizes through 8-bit Pillow images, which clips lanczos ringing to 0..1; do the same.
    out = out.clamp(0.0, 1.0)
    return out.to(samples.device, samples.dtype)


def common_upscale(samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str) -> torch.Tensor:
    """Resize channel-first samples [B,C,H,W] (or [B,C,T,H,W] / [B,H,W] style, resized on the last two dims)."""
    width = int(width)
    height = int(height)
    if width < 1 or height < 1:
        raise ValueError(f"Cannot resize to {width}x{height}: width and height must be at least 1")
    if upscale_method not in UPSCALE_METHODS and upscale_method != "bislerp":
        raise ValueError(f"Unknown upscale method {upscale_method!r}; expected one of {UPSCALE_METHODS}")
    orig_shape = tuple(samples.shape)
    if samples.ndim != 4:
        # Flatten leading dims into a batch of single channels, resize, restore.
        samples = samples.reshape((-1, 1) + orig_shape[-2:])
    if crop == "center":
        samples = center_crop_to_aspect(samples, width, height)
    elif crop not in ("disabled", None):
        raise ValueError(f"Unknown crop method {crop!r}; expected one of {CROP_METHODS}")
    if upscale_method == "lanczos":
        out = lanczos(samples, width, height)
    elif upscale_method == "bislerp":
        out = F.interpolate(samples, size=(height, width), mode="bilinear")
    else:
        out = F.interpolate(samples, size=(height, width), mode=upscale_method)
    if len(orig_shape) != 4:
        out = out.reshape(orig_shape[:-2] + (height, width))
    return out


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    if tensor.shape[0] > batch_size:
        return tensor[:batch_size]
    if tensor.shape[0] < batch_size:
        reps = math.ceil(batch_size / tensor.shape[0])
        return tensor.repeat([reps] + [1] * (tensor.ndim - 1))[:batch_size]
    return tensor


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two IMAGE tensors agree on channel count (RGB vs RGBA) the way ComfyUI does."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., : destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        destination = F.pad(destination, (0, 1))
        destination[..., -1] = 1.0
    return destination, source


def check_image(image, name: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4:
        raise ValueError(f"{name} must be an IMAGE tensor of shape [B,H,W,C], got shape {tuple(image.shape)}")
    return image


def mask_3d(mask, name: str = "mask") -> torch.Tensor:
    """MASK inputs may arrive as [H,W] or [B,H,W] (or [B,1,H,W]); normalise to [B,H,W]."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a MASK tensor, got {type(mask).__name__}")
    if mask.ndim < 2:
        raise ValueError(f"{name} must be a MASK tensor of shape [B,H,W], got shape {tuple(mask.shape)}")
    return mask.reshape((-1, mask.shape[-2], mask.shape[-1]))


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One IMAGE frame [H,W,C] (C = 1, 3 or 4) -> 8-bit Pillow image."""
    arr = np.clip(255.0 * image.detach().to("cpu", torch.float32).numpy(), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr)  # [H,W] -> L, [H,W,2] -> LA, [H,W,3] -> RGB, [H,W,4] -> RGBA


def gaussian_kernel(kernel_size: int, sigma: float, device=None) -> torch.Tensor:
    """2D gaussian over a [-1, 1] grid (sigma is relative to the kernel radius), normalised to sum 1."""
    ax = torch.linspace(-1, 1, kernel_size, device=device)
    x, y = torch.meshgrid(ax, ax, indexing="ij")
    d2 = x * x + y * y
    g = torch.exp(-d2 / (2.0 * sigma * sigma))
    return g / g.sum()


def filter2d_same(image_bchw: torch.Tensor, kernel: torch.Tensor, pad: int) -> torch.Tensor:
    """Depthwise 2D filter with reflect padding (replicate when the image is too small to reflect)."""
    channels = image_bchw.shape[1]
    weight = kernel.to(image_bchw).expand(channels, 1, *kernel.shape[-2:])
    mode = "reflect" if min(image_bchw.shape[-2:]) > pad else "replicate"
    padded = F.pad(image_bchw, (pad, pad, pad, pad), mode=mode)
    return F.conv2d(padded, weight, groups=channels)
