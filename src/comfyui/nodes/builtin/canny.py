"""Canny edge detector (ComfyUI's comfy_extras/nodes_canny.py), in plain torch.

Follows the classic pipeline with the same parameters ComfyUI gets from kornia's ``canny``:
greyscale (BT.601) -> 5x5 gaussian blur (sigma 1, reflect border) -> 3x3 Sobel (replicate border,
unnormalised) -> magnitude -> non-maximum suppression along the gradient direction rounded to 45
degrees -> double threshold -> hysteresis (weak pixels survive when connected to strong ones).
"""
from __future__ import annotations

from ._image_utils import check_image
from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")

# Neighbour offsets (dy, dx) for gradient directions 0, 45, ..., 315 degrees (y points down).
_DIRECTIONS = [(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)]


def _gaussian_blur(x: torch.Tensor, ksize: int = 5, sigma: float = 1.0) -> torch.Tensor:
    ax = torch.arange(ksize, dtype=x.dtype, device=x.device) - ksize // 2
    g = torch.exp(-(ax * ax) / (2 * sigma * sigma))
    g = g / g.sum()
    pad = ksize // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, g.view(1, 1, 1, ksize))
    return F.conv2d(x, g.view(1, 1, ksize, 1))


def _neighbour_kernels(dtype, device, center: float) -> torch.Tensor:
    """8 kernels [8,1,3,3]; kernel k picks the neighbour in direction k (minus it when center=1)."""
    k = torch.zeros((8, 1, 3, 3), dtype=dtype, device=device)
    for i, (dy, dx) in enumerate(_DIRECTIONS):
        k[i, 0, 1 + dy, 1 + dx] = -1.0 if center else 1.0
        k[i, 0, 1, 1] = center
    return k


def canny(image_bchw: torch.Tensor, low_threshold: float, high_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (magnitude after NMS, edges in {0, 1}) for a [B,C,H,W] batch (C = 1, 3 or 4)."""
    x = image_bchw.float()
    if x.shape[1] >= 3:
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        x = 0.299 * r + 0.587 * g + 0.114 * b
    elif x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    blurred = _gaussian_blur(x)

    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    kernels = torch.stack([sobel_x, sobel_x.t()]).unsqueeze(1)
    grads = F.conv2d(F.pad(blurred, (1, 1, 1, 1), mode="replicate"), kernels)
    gx, gy = grads[:, 0:1], grads[:, 1:2]
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)

    # Non-maximum suppression: keep pixels larger than both neighbours along the gradient.
    angle = torch.round(torch.rad2deg(torch.atan2(gy, gx)) / 45) * 45
    diffs = F.conv2d(magnitude, _neighbour_kernels(x.dtype, x.device, 1.0), padding=1)
    pos = torch.remainder(angle / 45, 8).long()
    neg = torch.remainder(angle / 45 + 4, 8).long()
    is_max = torch.minimum(diffs.gather(1, pos), diffs.gather(1, neg)) > 0
    magnitude = magnitude * is_max

    weak = (magnitude > low_threshold).to(x.dtype)
    strong = (magnitude > high_threshold).to(x.dtype)
    weak = weak * (1 - strong)

    # Hysteresis: grow strong edges into 8-connected weak pixels until nothing changes.
    edges = strong
    while True:
        grown = F.max_pool2d(edges, kernel_size=3, stride=1, padding=1)
        new_edges = torch.maximum(edges, grown * weak)
        if torch.equal(new_edges, edges):
            break
        edges = new_edges
    return magnitude, edges


class Canny:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "low_threshold": ("FLOAT", {"default": 0.4, "min": 0.01, "max": 0.99, "step": 0.01}),
                "high_threshold": ("FLOAT", {"default": 0.8, "min": 0.01, "max": 0.99, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "detect_edge"
    CATEGORY = "image/preprocessors"

    def detect_edge(self, image, low_threshold, high_threshold):
        check_image(image)
        if low_threshold > high_threshold:
            raise ValueError(f"Canny: low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold})")
        _, edges = canny(image.movedim(-1, 1), low_threshold, high_threshold)
        return (edges.to(image.dtype).repeat(1, 3, 1, 1).movedim(1, -1),)


NODE_CLASS_MAPPINGS = {"Canny": Canny}
NODE_DISPLAY_NAME_MAPPINGS = {"Canny": "Canny"}
