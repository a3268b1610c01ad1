"""Model-patch nodes (ComfyUI's nodes_model_patch): ModelPatchLoader (a MODEL_PATCH from
models/model_patches), QwenImageDiffsynthControlnet, which attaches a ControlNet patch to a
MODEL (here: the Z-Image Fun ControlNet on a Z-Image model), and USOStyleReference (Flux USO
style tokens from SigLIP features)."""
from __future__ import annotations

from comfyui import paths

from ._lazy import lazy

mp = lazy("comfyui.models.model_patch")
zc = lazy("comfyui.models.lumina2.controlnet")
uso = lazy("comfyui.models.flux.uso")


class ModelPatchLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": (paths.get_filename_list("model_patches"),)}}

    RETURN_TYPES = ("MODEL_PATCH",)
    FUNCTION = "load_model_patch"
    EXPERIMENTAL = True
    CATEGORY = "advanced/loaders"

    def load_model_patch(self, name):
        return (mp.load_model_patch(paths.get_full_path_or_raise("model_patches", name)),)


class USOStyleReference:
    """Flux USO: the style tokens the projector makes from the SigLIP features of
    ``clip_vision_output`` go before the text tokens at every step (a clone of ``model``)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "model_patch": ("MODEL_PATCH",),
                             "clip_vision_output": ("CLIP_VISION_OUTPUT",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply_patch"
    EXPERIMENTAL = True
    CATEGORY = "advanced/model_patches/flux"

    def apply_patch(self, model, model_patch, clip_vision_output):
        if not isinstance(model_patch.model, uso.USOStyleProjector):
            raise ValueError(f"{type(model_patch.model).__name__} is not a USO projector; "
                             "USOStyleReference takes uso-flux1-projector")
        family = getattr(getattr(model.model, "family", None), "name", type(model.model).__name__)
        if family not in ("flux", "flux_schnell"):
            raise ValueError(f"the USO projector patches a Flux.1 model, not {family}")
        patched = model.clone()
        patched.set_model_patch(uso.USOStylePatch(model_patch, uso.siglip_features(clip_vision_output)),
                                "post_input")
        return (patched,)


class QwenImageDiffsynthControlnet:
    """The ControlNet patch on a clone of ``model``: the control ``image`` is VAE-encoded at the
    size of the latent being sampled and steers every step with ``strength``. ``mask`` is for
    the inpainting ControlNets (Qwen-Image's), which this build does not load; a Z-Image Fun
    ControlNet ignores it, as upstream."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "model_patch": ("MODEL_PATCH",),
                             "vae": ("VAE",),
                             "image": ("IMAGE",),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})},
                "optional": {"mask": ("MASK",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "diffsynth_controlnet"
    EXPERIMENTAL = True
    CATEGORY = "advanced/loaders/qwen"

    def diffsynth_controlnet(self, model, model_patch, vae, image, strength, mask=None):
        if not isinstance(model_patch.model, zc.ZImageFunControlNet):
            raise ValueError(f"{type(model_patch.model).__name__} is not a ControlNet patch; "
                             "QwenImageDiffsynthControlnet takes a Z-Image Fun ControlNet")
        family = getattr(getattr(model.model, "family", None), "name", type(model.model).__name__)
        if family != "z_image":
            raise ValueError(f"the Z-Image Fun ControlNet patches a Z-Image model, not {family}")
        patched = model.clone()
        patched.set_model_patch(zc.ZImageFunControlPatch(model_patch, vae, image[..., :3], strength,
                                                         model.model.latent_format.process_in), "double_block")
        return (patched,)


NODE_CLASS_MAPPINGS = {
    "ModelPatchLoader": ModelPatchLoader,
    "QwenImageDiffsynthControlnet": QwenImageDiffsynthControlnet,
    "USOStyleReference": USOStyleReference,
}
