"""Text-encoding nodes: CLIPTextEncode, CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner."""
from __future__ import annotations

MAX_RESOLUTION = 16384

_NO_CLIP = ("ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node your checkpoint "
            "does not contain a valid clip or text encoder model.")


class CLIPTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"
    DESCRIPTION = ("Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
                   "diffusion model towards generating specific images.")

    def encode(self, clip, text):
        if clip is None:
            raise RuntimeError(_NO_CLIP)
        tokens = clip.tokenize(text)
        return (clip.encode_from_tokens_scheduled(tokens),)


class CLIPTextEncodeSDXL:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP",),
            "width": ("INT", {"default": 1024.0, "min": 0, "max": MAX_RESOLUTION}),
            "height": ("INT", {"default": 1024.0, "min": 0, "max": MAX_RESOLUTION}),
            "crop_w": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION}),
            "crop_h": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION}),
            "target_width": ("INT", {"default": 1024.0, "min": 0, "max": MAX_RESOLUTION}),
            "target_height": ("INT", {"default": 1024.0, "min": 0, "max": MAX_RESOLUTION}),
            "text_g": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "text_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning"

    def encode(self, clip, width, height, crop_w, crop_h, target_width, target_height, text_g, text_l):
        if clip is None:
            raise RuntimeError(_NO_CLIP)
        tokens = clip.tokenize(text_g)
        if "l" in tokens and "g" in tokens:
            tokens["l"] = clip.tokenize(text_l)["l"]
            if len(tokens["l"]) != len(tokens["g"]):
                empty = clip.tokenize("")
                while len(tokens["l"]) < len(tokens["g"]):
                    tokens["l"] += empty["l"]
                while len(tokens["l"]) > len(tokens["g"]):
                    tokens["g"] += empty["g"]
        return (clip.encode_from_tokens_scheduled(tokens, add_dict={
            "width": width, "height": height, "crop_w": crop_w, "crop_h": crop_h,
            "target_width": target_width, "target_height": target_height}),)


class CLIPTextEncodeSDXLRefiner:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
            "width": ("INT", {"default": 1024.0, "min": 0, "max": MAX_RESOLUTION}),
            "height": ("INT", {"default": 1024.0, "min": 0, "max": MAX_RESOLUTION}),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "clip": ("CLIP",),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning"

    def encode(self, clip, ascore, width, height, text):
        if clip is None:
            raise RuntimeError(_NO_CLIP)
        tokens = clip.tokenize(text)
        return (clip.encode_from_tokens_scheduled(tokens, add_dict={
            "aesthetic_score": ascore, "width": width, "height": height}),)


NODE_CLASS_MAPPINGS = {
    "CLIPTextEncode": CLIPTextEncode,
    "CLIPTextEncodeSDXL": CLIPTextEncodeSDXL,
    "CLIPTextEncodeSDXLRefiner": CLIPTextEncodeSDXLRefiner,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "CLIPTextEncodeSDXL": "CLIPTextEncodeSDXL",
    "CLIPTextEncodeSDXLRefiner": "CLIPTextEncodeSDXLRefiner",
}
