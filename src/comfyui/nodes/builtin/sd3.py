"""SD3 / SD3.5 nodes (ComfyUI's nodes_sd3): the three-prompt text encode, skip-layer
guidance and the (deprecated) ControlNet apply node with a required VAE. (TripleCLIPLoader is
in loaders.py, EmptySD3LatentImage in flux.py.)"""
from __future__ import annotations

import re

from ._lazy import lazy
from .controlnet import ControlNetApplyAdvanced

_conditioning = lazy("comfyui.sampling.conditioning")


class CLIPTextEncodeSD3:
    @classmethod
    def INPUT_TYPES(cls):
        text = ("STRING", {"multiline": True, "dynamicPrompts": True})
        return {"required": {"clip": ("CLIP",), "clip_l": text, "clip_g": text, "t5xxl": text,
                             "empty_padding": (["none", "empty_prompt"],)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning"

    def encode(self, clip, clip_l, clip_g, t5xxl, empty_padding):
        """Each encoder reads its own prompt; with ``empty_padding`` "none" an empty prompt gives
        that encoder no tokens (its empty-prompt encoding) instead of a padded one. CLIP-L and
        CLIP-G chunk lists are evened out with empty chunks, their features join per token."""
        no_padding = empty_padding == "none"
        tokens = {}
        for key, text in (("g", clip_g), ("l", clip_l), ("t5xxl", t5xxl)):
            encoded = clip.tokenize(text)
            if key in encoded:
                tokens[key] = [] if (not text and no_padding) else encoded[key]
        if "l" in tokens and "g" in tokens and len(tokens["l"]) != len(tokens["g"]):
            empty = clip.tokenize("")
            while len(tokens["l"]) < len(tokens["g"]):
                tokens["l"] += empty["l"]
            while len(tokens["g"]) < len(tokens["l"]):
                tokens["g"] += empty["g"]
        return (clip.encode_from_tokens_scheduled(tokens),)


def _skip_blocks(model_options: dict, layers: list[int]) -> dict:
    """A copy of ``model_options`` whose DiT replaces these joint blocks by the identity."""
    transformer_options = dict(model_options.get("transformer_options", {}))
    patches = dict(transformer_options.get("patches_replace", {}))
    dit = dict(patches.get("dit", {}))
    for layer in layers:
        dit[("double_block", layer)] = lambda args, extra: args
    patches["dit"] = dit
    transformer_options["patches_replace"] = patches
    return {**model_options, "transformer_options": transformer_options}


class SkipLayerGuidanceSD3:
    """Another guidance term: between ``start_percent`` and ``end_percent`` of the schedule,
    the positive prediction is run again with the listed joint blocks skipped, and the result
    is pushed away from it: ``cfg + (cond - cond_without_layers) * scale``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "layers": ("STRING", {"default": "7, 8, 9", "multiline": False}),
                             "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 10.0, "step": 0.1}),
                             "start_percent": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end_percent": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.001})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "skip_guidance_sd3"
    CATEGORY = "advanced/guidance"
    EXPERIMENTAL = True
    DESCRIPTION = "Generic version of SkipLayerGuidance node that can be used on every DiT model."

    def skip_guidance_sd3(self, model, layers, scale, start_percent, end_percent):
        skipped = [int(n) for n in re.findall(r"\d+", layers)]
        if not skipped:
            return (model,)
        model_sampling = model.get_model_object("model_sampling")
        sigma_start = model_sampling.percent_to_sigma(start_percent)
        sigma_end = model_sampling.percent_to_sigma(end_percent)

        def post_cfg(args):
            result = args["denoised"]
            sigma = args["sigma"]
            if scale > 0 and sigma_end <= sigma[0].item() <= sigma_start:
                options = _skip_blocks(args["model_options"], skipped)
                (without,) = _conditioning.calc_cond_batch(args["model"], [args["cond"]], args["input"], sigma, options)
                result = result + (args["cond_denoised"] - without) * scale
            return result

        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(post_cfg)
        return (patched,)


class ControlNetApplySD3(ControlNetApplyAdvanced):
    """ControlNetApplyAdvanced with the VAE as a required input (the latent-space
    ControlNets: SD3.5, SD3, Flux InstantX encode their hint with it)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",),
                             "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",),
                             "vae": ("VAE",),
                             "image": ("IMAGE",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                             "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})}}

    DEPRECATED = True

    def apply_controlnet(self, positive, negative, control_net, image, strength, start_percent, end_percent,
                         vae=None):
        return super().apply_controlnet(positive, negative, control_net, image, strength, start_percent,
                                        end_percent, vae=vae)


NODE_CLASS_MAPPINGS = {"CLIPTextEncodeSD3": CLIPTextEncodeSD3, "SkipLayerGuidanceSD3": SkipLayerGuidanceSD3,
                       "ControlNetApplySD3": ControlNetApplySD3}
NODE_DISPLAY_NAME_MAPPINGS = {"ControlNetApplySD3": "Apply Controlnet with VAE"}
