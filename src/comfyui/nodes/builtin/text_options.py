"""ComfyUI's nodes_cond: T5TokenizerOptions (padding options for the T5-family tokenizers of a
CLIP, used by the Chroma and PixArt workflows) and CLIPTextEncodeControlnet (a separate text
for the ControlNets of a conditioning)."""
from __future__ import annotations

T5_KEYS = ("t5xxl", "pile_t5xl", "t5base", "mt5xl", "umt5xxl")


class T5TokenizerOptions:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",),
                             "min_padding": ("INT", {"default": 0, "min": 0, "max": 10000, "step": 1}),
                             "min_length": ("INT", {"default": 0, "min": 0, "max": 10000, "step": 1})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_options"
    CATEGORY = "_for_testing/conditioning"
    EXPERIMENTAL = True

    def set_options(self, clip, min_padding, min_length):
        """A copy of ``clip`` whose T5 tokenizers add ``min_padding`` <pad> tokens after the
        end token and pad to at least ``min_length`` tokens (0: no minimum)."""
        clip = clip.clone()
        for key in T5_KEYS:
            clip.set_tokenizer_option(f"{key}_min_padding", min_padding)
            clip.set_tokenizer_option(f"{key}_min_length", min_length)
        return (clip,)


class CLIPTextEncodeControlnet:
    """The ControlNets applied to ``conditioning`` see this text's embedding instead of the
    prompt's (``cross_attn_controlnet``; its pooled output rides along)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "conditioning": ("CONDITIONING",),
                             "text": ("STRING", {"multiline": True, "dynamicPrompts": True})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "_for_testing/conditioning"
    EXPERIMENTAL = True

    def encode(self, clip, conditioning, text):
        cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
        return ([[t[0], {**t[1], "cross_attn_controlnet": cond, "pooled_output_controlnet": pooled}]
                 for t in conditioning],)


NODE_CLASS_MAPPINGS = {"T5TokenizerOptions": T5TokenizerOptions, "CLIPTextEncodeControlnet": CLIPTextEncodeControlnet}
