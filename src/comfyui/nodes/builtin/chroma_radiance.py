"""Chroma Radiance nodes (ComfyUI's nodes_chroma_radiance): EmptyChromaRadianceLatentImage (the
pixel-space "latent": zeros [B, 3, H, W]) and ChromaRadianceOptions (the NeRF head's tile size
for a sigma range)."""
from __future__ import annotations

from ._lazy import lazy

torch = lazy("torch")
memory = lazy("comfyui.models.memory")

MAX_RESOLUTION = 16384


class EmptyChromaRadianceLatentImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"
    CATEGORY = "latent/chroma_radiance"

    def execute(self, width, height, batch_size=1):
        return ({"samples": torch.zeros((batch_size, 3, height, width), device=memory.intermediate_device())},)


class ChromaRadianceOptions:
    """Between ``start_sigma`` and ``end_sigma`` (inclusive) the model runs with these options:
    ``nerf_tile_size`` patches decoded at a time (-1: the model's default, 0: all at once). The
    image does not change, only the memory the NeRF head needs. ``preserve_wrapper``: call an
    existing model function wrapper instead of the model."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "preserve_wrapper": ("BOOLEAN", {"default": True, "tooltip": (
                "When enabled, will delegate to an existing model function wrapper if it exists. "
                "Generally should be left enabled.")}),
            "start_sigma": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0,
                                      "tooltip": "First sigma that these options will be in effect."}),
            "end_sigma": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0,
                                    "tooltip": "Last sigma that these options will be in effect."}),
            "nerf_tile_size": ("INT", {"default": -1, "min": -1, "tooltip": (
                "Allows overriding the default NeRF tile size. -1 means use the default (32). 0 means use "
                "non-tiling mode (may require a lot of VRAM).")})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "execute"
    CATEGORY = "model_patches/chroma_radiance"
    DESCRIPTION = "Allows setting advanced options for the Chroma Radiance model."

    def execute(self, model, preserve_wrapper, start_sigma, end_sigma, nerf_tile_size):
        options = {"nerf_tile_size": nerf_tile_size} if nerf_tile_size >= 0 else {}
        if not options:
            return (model,)
        previous = model.model_options.get("model_function_wrapper")

        def wrapper(apply_model, args):
            c = dict(args["c"])
            sigma = float(args["timestep"].max())
            if end_sigma <= sigma <= start_sigma:
                c["transformer_options"] = {**c.get("transformer_options", {}), "chroma_radiance_options": options}
            if preserve_wrapper and previous is not None:
                return previous(apply_model, {**args, "c": c})
            return apply_model(args["input"], args["timestep"], **c)

        patched = model.clone()
        patched.set_model_unet_function_wrapper(wrapper)
        return (patched,)


NODE_CLASS_MAPPINGS = {
    "EmptyChromaRadianceLatentImage": EmptyChromaRadianceLatentImage,
    "ChromaRadianceOptions": ChromaRadianceOptions,
}
