"""SD3 / SD3.5 nodes (ComfyUI's nodes_sd3): the three-prompt text encode. (TripleCLIPLoader is
in loaders.py, EmptySD3LatentImage in flux.py.)"""
from __future__ import annotations


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


NODE_CLASS_MAPPINGS = {"CLIPTextEncodeSD3": CLIPTextEncodeSD3}
