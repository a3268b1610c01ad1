"""IMAGE / MASK tensors to the PNG bytes services take, and their answers back to IMAGE."""
from __future__ import annotations

import base64
import io

from .client import ApiNodeError


def _torch():
    import torch  # imported when a node runs, not when the nodes load

    return torch


def png_bytes(image, index: int = 0, max_pixels: int = 2048 * 2048) -> bytes:
    """One image of an IMAGE batch [B,H,W,C] as PNG, downscaled to at most ``max_pixels``."""
    import numpy as np
    from PIL import Image

    frame = image[index].detach().float().cpu().clamp(0, 1)
    h, w = frame.shape[0], frame.shape[1]
    pil = Image.fromarray((frame.numpy() * 255).round().astype(np.uint8))
    if h * w > max_pixels:
        scale = (max_pixels / (h * w)) ** 0.5
        pil = pil.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def png_base64(image, index: int = 0) -> str:
    return base64.b64encode(png_bytes(image, index)).decode()


def image_from_bytes(data: bytes):
    """Encoded image bytes -> IMAGE [1,H,W,3] float in [0,1]."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        pil = Image.open(io.BytesIO(data))
        pil.load()
    except (UnidentifiedImageError, OSError):
        raise ApiNodeError("The service's answer is not an image.") from None
    array = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
    return _torch().from_numpy(array.copy()).unsqueeze(0)


def image_batch(images: list):
    """Several [1,H,W,3] images as one batch (ComfyUI batches must share a size)."""
    torch = _torch()
    if len({tuple(i.shape[1:]) for i in images}) > 1:
        first = images[0]
        images = [first] + [torch.nn.functional.interpolate(i.movedim(-1, 1), size=first.shape[1:3],
                                                            mode="bilinear").movedim(1, -1) for i in images[1:]]
    return torch.cat(images, dim=0)
