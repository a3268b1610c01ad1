"""``node_helpers``: small helpers custom nodes import from ComfyUI."""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from PIL import Image, ImageFile, UnidentifiedImageError


def conditioning_set_values(conditioning: list, values: dict | None = None, append: bool = False) -> list:
    """Copy of ``conditioning`` with ``values`` set (or appended to lists) in every entry's dict."""
    values = values or {}
    out = []
    for tensor, opts in conditioning:
        n = dict(opts)
        for k, v in values.items():
            if append and k in n and isinstance(n[k], list):
                n[k] = n[k] + v
            elif append:
                n[k] = list(v) if isinstance(v, (list, tuple)) else [v]
            else:
                n[k] = v
        out.append([tensor, n])
    return out


def pillow(fn, arg):
    """Call a PIL function, retrying with truncated-image loading allowed."""
    prev = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        return fn(arg)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = prev


def hasher():
    from comfyui import config

    return getattr(hashlib, config.current().default_hashing_function)


def string_to_torch_dtype(string: str) -> torch.dtype | None:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(string)


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two [B,H,W,C] images agree on channels (drop or add an opaque alpha)."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., :destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        destination = torch.nn.functional.pad(destination, (0, 1))
        destination[..., -1] = 1.0
    return destination, source


__all__: list[Any] = ["conditioning_set_values", "pillow", "hasher", "string_to_torch_dtype", "image_alpha_fix",
                      "Image"]
