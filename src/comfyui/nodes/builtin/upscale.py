"""Upscale-model nodes: UpscaleModelLoader, ImageUpscaleWithModel (spandrel, tiled)."""
from __future__ import annotations

from comfyui import known_models, paths

from ._lazy import lazy

up = lazy("comfyui.models.upscale")


class UpscaleModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (known_models.filename_list("upscale_models"),)}}

    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"
    CATEGORY = "loaders"

    def load_model(self, model_name):
        return (up.load_upscale_model(paths.get_full_path_or_raise("upscale_models", model_name)),)


class ImageUpscaleWithModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, upscale_model, image):
        return (up.upscale_image(upscale_model, image, tile=512, overlap=32),)


NODE_CLASS_MAPPINGS = {
    "UpscaleModelLoader": UpscaleModelLoader,
    "ImageUpscaleWithModel": ImageUpscaleWithModel,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "UpscaleModelLoader": "Load Upscale Model",
    "ImageUpscaleWithModel": "Upscale Image (using Model)",
}
