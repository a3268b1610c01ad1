"""Alpha compositing nodes (ComfyUI's comfy_extras/nodes_compositing.py).

MASK here means "1 - alpha", as LoadImage produces it: 1 = transparent.
"""
from __future__ import annotations

from ._image_utils import check_image, common_upscale, mask_3d
from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")

PORTER_DUFF_MODES = [
    "ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
    "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR",
]


def porter_duff_composite(src_image, src_mask, dst_image, dst_mask, mode: str):
    """Composite premultiplied colours; inputs/outputs use masks (1 - alpha)."""
    sa = 1 - src_mask
    da = 1 - dst_mask
    s = src_image * sa
    d = dst_image * da
    union = sa + da - sa * da
    if mode == "ADD":
        oa, oi = torch.clamp(sa + da, 0, 1), torch.clamp(s + d, 0, 1)
    elif mode == "CLEAR":
        oa, oi = torch.zeros_like(da), torch.zeros_like(d)
    elif mode == "DARKEN":
        oa, oi = union, (1 - da) * s + (1 - sa) * d + torch.min(s, d)
    elif mode == "DST":
        oa, oi = da, d
    elif mode == "DST_ATOP":
        oa, oi = sa, sa * d + (1 - da) * s
    elif mode == "DST_IN":
        oa, oi = sa * da, d * sa
    elif mode == "DST_OUT":
        oa, oi = (1 - sa) * da, (1 - sa) * d
    elif mode == "DST_OVER":
        oa, oi = da + (1 - da) * sa, d + (1 - da) * s
    elif mode == "LIGHTEN":
        oa, oi = union, (1 - da) * s + (1 - sa) * d + torch.max(s, d)
    elif mode == "MULTIPLY":
        oa, oi = sa * da, s * d
    elif mode == "OVERLAY":
        oa = union
        oi = torch.where(2 * d < da, 2 * s * d, sa * da - 2 * (da - s) * (sa - d))
    elif mode == "SCREEN":
        oa, oi = union, s + d - s * d
    elif mode == "SRC":
        oa, oi = sa, s
    elif mode == "SRC_ATOP":
        oa, oi = da, da * s + (1 - sa) * d
    elif mode == "SRC_IN":
        oa, oi = sa * da, s * da
    elif mode == "SRC_OUT":
        oa, oi = (1 - da) * sa, (1 - da) * s
    elif mode == "SRC_OVER":
        oa, oi = sa + (1 - sa) * da, s + (1 - sa) * d
    elif mode == "XOR":
        oa, oi = (1 - da) * sa + (1 - sa) * da, (1 - da) * s + (1 - sa) * d
    else:
        raise ValueError(f"Unknown Porter-Duff mode {mode!r}; expected one of {PORTER_DUFF_MODES}")
    # un-premultiply
    oi = torch.where(oa > 1e-5, oi / oa.clamp(min=1e-5), torch.zeros_like(oi))
    return torch.clamp(oi, 0, 1), 1 - oa


def _resize_hw(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[H,W,C] -> [h,w,C] with bicubic centre-crop resize."""
    return common_upscale(t.movedim(-1, 0).unsqueeze(0), w, h, "bicubic", "center").squeeze(0).movedim(0, -1)


class PorterDuffImageComposite:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "source": ("IMAGE",),
                "source_alpha": ("MASK",),
                "destination": ("IMAGE",),
                "destination_alpha": ("MASK",),
                "mode": (PORTER_DUFF_MODES, {"default": "DST"}),
            }
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "composite"
    CATEGORY = "mask/compositing"

    def composite(self, source, source_alpha, destination, destination_alpha, mode):
        check_image(source, "source")
        check_image(destination, "destination")
        source_alpha = mask_3d(source_alpha, "source_alpha")
        destination_alpha = mask_3d(destination_alpha, "destination_alpha")
        n = min(len(source), len(source_alpha), len(destination), len(destination_alpha))
        out_images, out_masks = [], []
        for i in range(n):
            src, dst = source[i], destination[i]
            if src.shape[-1] != dst.shape[-1]:
                raise ValueError("PorterDuffImageComposite: source and destination need the same number of channels")
            sa, da = source_alpha[i].unsqueeze(-1), destination_alpha[i].unsqueeze(-1)
            h, w = dst.shape[:2]
            if da.shape[:2] != (h, w):
                da = _resize_hw(da, h, w)
            if src.shape != dst.shape:
                src = _resize_hw(src, h, w)
            if sa.shape != da.shape:
                sa = _resize_hw(sa, h, w)
            img, m = porter_duff_composite(src, sa, dst, da, mode)
            out_images.append(img)
            out_masks.append(m.squeeze(-1))
        return (torch.stack(out_images), torch.stack(out_masks))


class SplitImageWithAlpha:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "split_image_with_alpha"
    CATEGORY = "mask/compositing"

    def split_image_with_alpha(self, image):
        check_image(image)
        rgb = image[..., :3]
        alpha = image[..., 3] if image.shape[-1] > 3 else torch.ones_like(image[..., 0])
        return (rgb, 1.0 - alpha)


class JoinImageWithAlpha:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",), "alpha": ("MASK",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "join_image_with_alpha"
    CATEGORY = "mask/compositing"

    def join_image_with_alpha(self, image, alpha):
        check_image(image)
        alpha = mask_3d(alpha, "alpha").to(image)
        n = min(len(image), len(alpha))
        if alpha.shape[-2:] != image.shape[1:3]:
            alpha = F.interpolate(alpha.unsqueeze(1), size=image.shape[1:3], mode="bilinear").squeeze(1)
        return (torch.cat((image[:n, ..., :3], (1.0 - alpha[:n]).unsqueeze(-1)), dim=-1),)


NODE_CLASS_MAPPINGS = {
    "PorterDuffImageComposite": PorterDuffImageComposite,
    "SplitImageWithAlpha": SplitImageWithAlpha,
    "JoinImageWithAlpha": JoinImageWithAlpha,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "PorterDuffImageComposite": "Porter-Duff Image Composite",
    "SplitImageWithAlpha": "Split Image with Alpha",
    "JoinImageWithAlpha": "Join Image with Alpha",
}
