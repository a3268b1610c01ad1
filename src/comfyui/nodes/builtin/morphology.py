"""Morphology and YUV nodes (ComfyUI's comfy_extras/nodes_morphology.py), in plain torch.

Grey-scale morphology with a flat square structuring element of side ``kernel_size``; the anchor
is at (k // 2, k // 2) and pixels outside the image never win (geodesic border), matching the
kornia functions ComfyUI uses. YUV here is kornia's full-range YCbCr (BT.601, chroma offset 0.5).
"""
from __future__ import annotations

from ._image_utils import check_image
from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")

MORPHOLOGY_OPERATIONS = ["erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat"]


def _flat_max(x: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """k x k sliding max over [B,C,H,W]; the border is padded with ``fill`` (-inf for dilation)."""
    before, after = k // 2, k - k // 2 - 1
    x = F.pad(x, (before, after, before, after), mode="constant", value=fill)
    # a square window is separable: rows, then columns
    x = F.max_pool2d(x, kernel_size=(k, 1), stride=1)
    return F.max_pool2d(x, kernel_size=(1, k), stride=1)


def dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return _flat_max(x, k, float("-inf"))


def erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -_flat_max(-x, k, float("-inf"))


def morphology(x: torch.Tensor, operation: str, k: int) -> torch.Tensor:
    if operation == "erode":
        return erode(x, k)
    if operation == "dilate":
        return dilate(x, k)
    if operation == "open":
        return dilate(erode(x, k), k)
    if operation == "close":
        return erode(dilate(x, k), k)
    if operation == "gradient":
        return dilate(x, k) - erode(x, k)
    if operation == "top_hat":
        return x - dilate(erode(x, k), k)
    if operation == "bottom_hat":
        return erode(dilate(x, k), k) - x
    raise ValueError(f"Invalid operation {operation!r} for morphology. Must be one of {MORPHOLOGY_OPERATIONS}")


class Morphology:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "operation": (MORPHOLOGY_OPERATIONS,),
                "kernel_size": ("INT", {"default": 3, "min": 3, "max": 999, "step": 1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "process"
    CATEGORY = "image/postprocessing"

    def process(self, image, operation, kernel_size):
        check_image(image)
        if kernel_size < 1:
            raise ValueError("ImageMorphology: kernel_size must be at least 1")
        out = morphology(image.movedim(-1, 1).float(), operation, int(kernel_size))
        return (out.movedim(1, -1).to(image.dtype),)


def rgb_to_yuv(rgb: torch.Tensor) -> torch.Tensor:
    """[...,3] RGB -> [...,3] Y, Cb, Cr (chroma centred on 0.5)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.stack([y, cb, cr], dim=-1)


def yuv_to_rgb(yuv: torch.Tensor) -> torch.Tensor:
    y, cb, cr = yuv[..., 0], yuv[..., 1] - 0.5, yuv[..., 2] - 0.5
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return torch.stack([r, g, b], dim=-1)


class ImageRGBToYUV:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE")
    RETURN_NAMES = ("Y", "U", "V")
    FUNCTION = "execute"
    CATEGORY = "image/batch"

    def execute(self, image):
        check_image(image)
        if image.shape[-1] < 3:
            raise ValueError("ImageRGBToYUV needs an RGB image")
        yuv = rgb_to_yuv(image[..., :3])
        shape = image[..., :3].shape
        return tuple(yuv[..., i:i + 1].expand(shape).clone() for i in range(3))


class ImageYUVToRGB:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"Y": ("IMAGE",), "U": ("IMAGE",), "V": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    CATEGORY = "image/batch"

    def execute(self, Y, U, V):
        for name, t in (("Y", Y), ("U", U), ("V", V)):
            check_image(t, name)
        if not (Y.shape[:3] == U.shape[:3] == V.shape[:3]):
            raise ValueError("ImageYUVToRGB: Y, U and V must have the same batch size and resolution")
        # each plane may be a grey 3-channel image: average its channels
        yuv = torch.cat([Y.mean(dim=-1, keepdim=True), U.mean(dim=-1, keepdim=True), V.mean(dim=-1, keepdim=True)], dim=-1)
        return (yuv_to_rgb(yuv),)


NODE_CLASS_MAPPINGS = {
    "Morphology": Morphology,
    "ImageRGBToYUV": ImageRGBToYUV,
    "ImageYUVToRGB": ImageYUVToRGB,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Morphology": "ImageMorphology",
    "ImageRGBToYUV": "ImageRGBToYUV",
    "ImageYUVToRGB": "ImageYUVToRGB",
}
