"""Nodes of the Flux tutorials (ComfyUI's nodes_flux, nodes_sd3's empty latent, nodes_ip2p,
nodes_differential_diffusion, nodes_edit_model): guidance, the two-prompt text encode, the
16-channel empty latent, the Canny/Depth image conditioning, differential diffusion and the
Kontext reference latents.
"""
from __future__ import annotations

from ._image_utils import MAX_RESOLUTION, common_upscale
from ._lazy import lazy
from .conditioning import conditioning_set_values

torch = lazy("torch")


class CLIPTextEncodeFlux:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",),
                             "clip_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "t5xxl": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning/flux"

    def encode(self, clip, clip_l, t5xxl, guidance):
        tokens = clip.tokenize(clip_l)
        t5_tokens = clip.tokenize(t5xxl)
        if "t5xxl" not in t5_tokens:
            raise ValueError("CLIPTextEncodeFlux needs a CLIP with a T5-XXL text encoder "
                             "(DualCLIPLoader type flux)")
        tokens["t5xxl"] = t5_tokens["t5xxl"]
        return (clip.encode_from_tokens_scheduled(tokens, add_dict={"guidance": guidance}),)


class FluxGuidance:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "advanced/conditioning/flux"

    def append(self, conditioning, guidance):
        return (conditioning_set_values(conditioning, {"guidance": guidance}),)


class FluxDisableGuidance:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "advanced/conditioning/flux"
    DESCRIPTION = "This node completely disables the guidance embed on Flux and Flux like models"

    def append(self, conditioning):
        return (conditioning_set_values(conditioning, {"guidance": None}),)


# (width, height) Flux Kontext was trained on, about one megapixel each
PREFERRED_KONTEXT_RESOLUTIONS = [
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672),
]


class FluxKontextImageScale:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "scale"
    CATEGORY = "advanced/conditioning/flux"
    DESCRIPTION = "This node resizes the image to one that is more optimal for flux kontext."

    def scale(self, image):
        aspect = image.shape[2] / image.shape[1]
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
        return (common_upscale(image.movedim(-1, 1), width, height, "lanczos", "center").movedim(1, -1),)


class FluxKontextMultiReferenceLatentMethod:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "reference_latents_method": (["offset", "index", "uxo/uno"],)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "advanced/conditioning/flux"
    EXPERIMENTAL = True

    def append(self, conditioning, reference_latents_method):
        method = "uxo" if "uxo" in reference_latents_method else reference_latents_method
        return (conditioning_set_values(conditioning, {"reference_latents_method": method}),)


class ReferenceLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)},
                "optional": {"latent": ("LATENT",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "advanced/conditioning/edit_models"
    DESCRIPTION = ("This node sets the guiding latent for an edit model. If the model supports it you can chain "
                   "multiple to set multiple reference images.")

    def append(self, conditioning, latent=None):
        if latent is not None:
            conditioning = conditioning_set_values(conditioning, {"reference_latents": [latent["samples"]]},
                                                   append=True)
        return (conditioning,)


class EmptySD3LatentImage:
    """Zeros in the 16-channel latent space (SD3, Flux, Z-Image ...)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
                             "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"
    CATEGORY = "latent/sd3"

    def generate(self, width, height, batch_size=1):
        from comfyui.models import memory
        latent = torch.zeros([batch_size, 16, height // 8, width // 8], device=memory.intermediate_device())
        return ({"samples": latent},)


class InstructPixToPixConditioning:
    """The image's latent on both conditionings (``concat_latent_image``: what Flux Canny/Depth
    and InstructPix2Pix models take beside the noise) and an empty latent of its size."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",),
                             "pixels": ("IMAGE",)}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"
    CATEGORY = "conditioning/instructpix2pix"

    def encode(self, positive, negative, pixels, vae):
        h = (pixels.shape[1] // 8) * 8
        w = (pixels.shape[2] // 8) * 8
        if (pixels.shape[1], pixels.shape[2]) != (h, w):  # centre crop to a multiple of 8
            top, left = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
            pixels = pixels[:, top:top + h, left:left + w, :]
        concat_latent = vae.encode(pixels)
        out = [conditioning_set_values(c, {"concat_latent_image": concat_latent}) for c in (positive, negative)]
        return (out[0], out[1], {"samples": torch.zeros_like(concat_latent)})


class DifferentialDiffusion:
    """Inpainting with a soft mask: at each step only the part of the mask at or above the
    current progress (1 at the first sigma, 0 at the last) is denoised, so grey mask values
    change less than white ones. ``strength`` < 1 blends that binary mask with the original."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)},
                "optional": {"strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    def apply(self, model, strength=1.0):
        model = model.clone()
        model.set_model_denoise_mask_function(
            lambda sigma, denoise_mask, extra_options: differential_mask(sigma, denoise_mask, extra_options, strength))
        return (model,)


def differential_mask(sigma, denoise_mask, extra_options: dict, strength: float):
    sampling = extra_options["model"].inner_model.model_sampling
    sigmas = extra_options["sigmas"]
    sigma_to = max(float(sampling.sigma_min), float(sigmas[-1]))
    ts_from = sampling.timestep(sigmas[0])
    ts_to = sampling.timestep(torch.tensor(sigma_to))
    threshold = (sampling.timestep(sigma[0]) - ts_to) / (ts_from - ts_to)
    binary = (denoise_mask >= threshold).to(denoise_mask.dtype)
    if strength and strength < 1:
        return strength * binary + (1 - strength) * denoise_mask
    return binary


NODE_CLASS_MAPPINGS = {
    "CLIPTextEncodeFlux": CLIPTextEncodeFlux,
    "FluxGuidance": FluxGuidance,
    "FluxDisableGuidance": FluxDisableGuidance,
    "FluxKontextImageScale": FluxKontextImageScale,
    "FluxKontextMultiReferenceLatentMethod": FluxKontextMultiReferenceLatentMethod,
    "ReferenceLatent": ReferenceLatent,
    "EmptySD3LatentImage": EmptySD3LatentImage,
    "InstructPixToPixConditioning": InstructPixToPixConditioning,
    "DifferentialDiffusion": DifferentialDiffusion,
}

NODE_DISPLAY_NAME_MAPPINGS = {"DifferentialDiffusion": "Differential Diffusion"}
