"""MASK nodes (ComfyUI's comfy_extras/nodes_mask.py, minus the latent one) and ImageCompositeMasked."""
from __future__ import annotations

from ._image_utils import MAX_RESOLUTION, check_image, image_alpha_fix, mask_3d, repeat_to_batch_size
from ._lazy import lazy
from .image import PreviewImage

torch = lazy("torch")
F = lazy("torch.nn.functional")


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask=None, multiplier: int = 8,
              resize_source: bool = False) -> torch.Tensor:
    """Paste channel-first ``source`` [B,C,h,w] into ``destination`` [B,C,H,W] (modified in place) at
    (x, y) / multiplier, blended by ``mask`` (resized to the source size). Parts falling outside the
    destination are dropped."""
    source = source.to(destination.device, destination.dtype)
    if resize_source:
        source = F.interpolate(source, size=(destination.shape[-2], destination.shape[-1]), mode="bilinear")
    source = repeat_to_batch_size(source, destination.shape[0])

    x = max(-source.shape[-1] * multiplier, min(x, destination.shape[-1] * multiplier))
    y = max(-source.shape[-2] * multiplier, min(y, destination.shape[-2] * multiplier))
    left, top = x // multiplier, y // multiplier
    right, bottom = left + source.shape[-1], top + source.shape[-2]

    if mask is None:
        mask = torch.ones_like(source)
    else:
        mask = mask.to(destination.device, destination.dtype, copy=True)
        mask = F.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])), size=(source.shape[-2], source.shape[-1]), mode="bilinear")
        mask = repeat_to_batch_size(mask, source.shape[0])

    # Negative offsets: skip the source rows/cols that land left of / above the destination.
    src_x0, src_y0 = max(0, -left), max(0, -top)
    dst_x0, dst_y0 = max(0, left), max(0, top)
    dst_x1, dst_y1 = min(destination.shape[-1], right), min(destination.shape[-2], bottom)
    if dst_x1 <= dst_x0 or dst_y1 <= dst_y0:
        return destination
    w, h = dst_x1 - dst_x0, dst_y1 - dst_y0
    m = mask[..., src_y0:src_y0 + h, src_x0:src_x0 + w]
    src = source[..., src_y0:src_y0 + h, src_x0:src_x0 + w]
    dst = destination[..., dst_y0:dst_y1, dst_x0:dst_x1]
    destination[..., dst_y0:dst_y1, dst_x0:dst_x1] = m * src + (1.0 - m) * dst
    return destination


class ImageCompositeMasked:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "destination": ("IMAGE",),
                "source": ("IMAGE",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "resize_source": ("BOOLEAN", {"default": False}),
            },
            "optional": {"mask": ("MASK",)},
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"
    CATEGORY = "image"

    def composite(self, destination, source, x, y, resize_source, mask=None):
        check_image(destination, "destination")
        check_image(source, "source")
        destination, source = image_alpha_fix(destination, source)
        destination = destination.clone().movedim(-1, 1)
        output = composite(destination, source.movedim(-1, 1), x, y, mask, 1, resize_source).movedim(1, -1)
        return (output,)


class MaskToImage:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"mask": ("MASK",)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    def mask_to_image(self, mask):
        mask = mask_3d(mask)
        return (mask.unsqueeze(-1).expand(-1, -1, -1, 3).clone(),)


class ImageToMask:
    channels = ["red", "green", "blue", "alpha"]

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",), "channel": (s.channels,)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    def image_to_mask(self, image, channel):
        check_image(image)
        idx = self.channels.index(channel)
        if idx >= image.shape[-1]:
            raise ValueError(f"ImageToMask: the image has {image.shape[-1]} channels, it has no {channel} channel")
        return (image[:, :, :, idx],)


class ImageColorToMask:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    def image_to_mask(self, image, color):
        check_image(image)
        rgb = (torch.clamp(image[..., :3], 0, 1.0) * 255.0).round().to(torch.int64)
        packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
        return ((packed == int(color)).float(),)


class SolidMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    def solid(self, value, width, height):
        return (torch.full((1, height, width), float(value), dtype=torch.float32),)


class InvertMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    def invert(self, mask):
        return (1.0 - mask,)


class CropMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mask": ("MASK",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "crop"

    def crop(self, mask, x, y, width, height):
        mask = mask_3d(mask)
        return (mask[:, y:y + height, x:x + width],)


class MaskComposite:
    operations = ["multiply", "add", "subtract", "and", "or", "xor"]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "destination": ("MASK",),
                "source": ("MASK",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "operation": (cls.operations,),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "combine"

    def combine(self, destination, source, x, y, operation):
        if operation not in self.operations:
            raise ValueError(f"MaskComposite: unknown operation {operation!r}; expected one of {self.operations}")
        output = mask_3d(destination, "destination").clone()
        source = mask_3d(source, "source").to(output)
        left, top = x, y
        right = min(left + source.shape[-1], output.shape[-1])
        bottom = min(top + source.shape[-2], output.shape[-2])
        if right <= left or bottom <= top:
            return (torch.clamp(output, 0.0, 1.0),)
        src = source[:, : bottom - top, : right - left]
        dst = output[:, top:bottom, left:right]
        if operation == "multiply":
            res = dst * src
        elif operation == "add":
            res = dst + src
        elif operation == "subtract":
            res = dst - src
        else:
            a, b = dst.round().bool(), src.round().bool()
            res = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[operation](a, b).float()
        output[:, top:bottom, left:right] = res
        return (torch.clamp(output, 0.0, 1.0),)


class FeatherMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mask": ("MASK",),
                "left": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "top": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "right": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "bottom": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "feather"

    def feather(self, mask, left, top, right, bottom):
        output = mask_3d(mask).clone()
        h, w = output.shape[-2:]
        left, right = min(left, w), min(right, w)
        top, bottom = min(top, h), min(bottom, h)
        # Linear ramp: the outermost row/column of a feathered edge is scaled by 1/n, the n-th by n/n.
        kw = {"dtype": output.dtype, "device": output.device}
        if left:
            output[:, :, :left] *= torch.arange(1, left + 1, **kw) / left
        if right:
            output[:, :, w - right:] *= torch.arange(right, 0, -1, **kw) / right
        if top:
            output[:, :top, :] *= (torch.arange(1, top + 1, **kw) / top)[:, None]
        if bottom:
            output[:, h - bottom:, :] *= (torch.arange(bottom, 0, -1, **kw) / bottom)[:, None]
        return (output,)


def grow_mask(mask: torch.Tensor, expand: int, tapered_corners: bool) -> torch.Tensor:
    """Grey dilation (expand > 0) or erosion (expand < 0) by |expand| pixels with a 3x3 footprint:
    a cross when tapered_corners (rounded growth), a full square otherwise."""
    out = mask_3d(mask).to(torch.float32).unsqueeze(1)
    if expand == 0:
        return out.squeeze(1).clone()
    sign = 1.0 if expand > 0 else -1.0
    out = out * sign  # erosion of x == -dilation(-x)
    for _ in range(abs(expand)):
        p = F.pad(out, (1, 1, 1, 1), mode="replicate")
        if tapered_corners:
            c = p[..., 1:-1, 1:-1]
            out = torch.stack([c, p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]]).amax(0)
        else:
            out = F.max_pool2d(p, kernel_size=3, stride=1)
    return (out * sign).squeeze(1)


class GrowMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mask": ("MASK",),
                "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
                "tapered_corners": ("BOOLEAN", {"default": True}),
            },
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "expand_mask"

    def expand_mask(self, mask, expand, tapered_corners):
        return (grow_mask(mask, int(expand), bool(tapered_corners)),)


class ThresholdMask:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "mask": ("MASK",),
                "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    def image_to_mask(self, mask, value):
        return ((mask > value).float(),)


class MaskPreview(PreviewImage):
    """Shows a mask as a greyscale preview image."""

    def __init__(self):
        super().__init__()
        self.compress_level = 4

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"mask": ("MASK",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    FUNCTION = "execute"
    CATEGORY = "mask"
    DESCRIPTION = ""

    def execute(self, mask, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        preview = mask_3d(mask).unsqueeze(-1).expand(-1, -1, -1, 3)
        return self.save_images(preview, filename_prefix, prompt, extra_pnginfo)


NODE_CLASS_MAPPINGS = {
    "ImageCompositeMasked": ImageCompositeMasked,
    "MaskToImage": MaskToImage,
    "ImageToMask": ImageToMask,
    "ImageColorToMask": ImageColorToMask,
    "SolidMask": SolidMask,
    "InvertMask": InvertMask,
    "CropMask": CropMask,
    "MaskComposite": MaskComposite,
    "FeatherMask": FeatherMask,
    "GrowMask": GrowMask,
    "ThresholdMask": ThresholdMask,
    "MaskPreview": MaskPreview,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageToMask": "Convert Image to Mask",
    "MaskToImage": "Convert Mask to Image",
}
