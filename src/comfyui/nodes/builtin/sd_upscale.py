"""SD_4XUpscale_Conditioning (ComfyUI's nodes_sdupscale): the inputs of the Stable Diffusion x4
upscaler. The low-resolution image (in -1..1, resized so that 4x it is the target size) rides
on both conditionings as ``concat_image`` with its ``noise_augmentation`` level; the latent to
sample is empty at a quarter of the target size. The x4 upscaler model itself (a 7-channel
SD2-style UNet with noise-level class labels) is not a supported family yet, so these
conditionings drive no model of ours for now."""
from __future__ import annotations

from ._image_utils import common_upscale
from ._lazy import lazy

torch = lazy("torch")


class SD_4XUpscale_Conditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
            "scale_ratio": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            "noise_augmentation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001})}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"
    CATEGORY = "conditioning/upscale_diffusion"

    def encode(self, images, positive, negative, scale_ratio, noise_augmentation):
        width = max(1, round(images.shape[-2] * scale_ratio))
        height = max(1, round(images.shape[-3] * scale_ratio))
        if width < 4 or height < 4:
            raise ValueError(f"SD_4XUpscale_Conditioning: the target size {width}x{height} is under 4 pixels; "
                             "raise scale_ratio")
        pixels = common_upscale(images.movedim(-1, 1) * 2.0 - 1.0, width // 4, height // 4, "bilinear", "center")
        extra = {"concat_image": pixels, "noise_augmentation": noise_augmentation}
        pos = [[t[0], {**t[1], **extra}] for t in positive]
        neg = [[t[0], {**t[1], **extra}] for t in negative]
        latent = torch.zeros([images.shape[0], 4, height // 4, width // 4])
        return (pos, neg, {"samples": latent})


NODE_CLASS_MAPPINGS = {"SD_4XUpscale_Conditioning": SD_4XUpscale_Conditioning}
