"""Vision conditioning nodes: CLIPVisionLoader, CLIPVisionEncode, unCLIPCheckpointLoader,
unCLIPConditioning, StyleModelLoader, StyleModelApply, GLIGENLoader, GLIGENTextBoxApply, and HypernetworkLoader (a model patch
loaded from models/hypernetworks)."""
from __future__ import annotations

from comfyui import known_models, paths

from ._lazy import lazy

torch = lazy("torch")
cv = lazy("comfyui.models.clip_vision")
gl = lazy("comfyui.models.gligen")
hn = lazy("comfyui.models.hypernetwork")
st = lazy("comfyui.models.style")
sdm = lazy("comfyui.models.sd")


class CLIPVisionLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (known_models.filename_list("clip_vision"),)}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load_clip"
    CATEGORY = "loaders"

    def load_clip(self, clip_name):
        return (cv.load_clip_vision(paths.get_full_path_or_raise("clip_vision", clip_name)),)


class CLIPVisionEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_vision": ("CLIP_VISION",),
                             "image": ("IMAGE",),
                             "crop": (["center", "none"],)}}

    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    def encode(self, clip_vision, image, crop):
        return (clip_vision.encode_image(image, crop=crop == "center"),)


class unCLIPCheckpointLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (known_models.filename_list("checkpoints"),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "CLIP_VISION")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"

    def load_checkpoint(self, ckpt_name, output_vae=True, output_clip=True):
        path = paths.get_full_path_or_raise("checkpoints", ckpt_name)
        return sdm.load_unclip_checkpoint(path, embedding_directory=paths.get_folder_paths("embeddings"))


class unCLIPConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
                             "noise_augmentation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_adm"
    CATEGORY = "conditioning"

    def apply_adm(self, conditioning, clip_vision_output, strength, noise_augmentation):
        if strength == 0:
            return (conditioning,)
        entry = {"clip_vision_output": clip_vision_output, "strength": strength,
                 "noise_augmentation": noise_augmentation}
        out = []
        for t in conditioning:
            d = t[1].copy()
            d["unclip_conditioning"] = list(d.get("unclip_conditioning", [])) + [entry]
            out.append([t[0], d])
        return (out,)


class StyleModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"style_model_name": (known_models.filename_list("style_models"),)}}

    RETURN_TYPES = ("STYLE_MODEL",)
    FUNCTION = "load_style_model"
    CATEGORY = "loaders"

    def load_style_model(self, style_model_name):
        return (st.load_style_model(paths.get_full_path_or_raise("style_models", style_model_name)),)


class StyleModelApply:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "style_model": ("STYLE_MODEL",),
                             "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
                             "strength_type": (["multiply", "attn_bias"],)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_stylemodel"
    CATEGORY = "conditioning/style_model"

    def apply_stylemodel(self, conditioning, style_model, clip_vision_output, strength, strength_type="multiply"):
        """"multiply" scales the style tokens; "attn_bias" keeps them and adds log(strength) to
        the attention scores of every query for them (a conditioning ``attention_mask``)."""
        cond = style_model.get_cond(clip_vision_output).flatten(start_dim=0, end_dim=1).unsqueeze(dim=0)
        if strength_type == "multiply":
            cond = cond * strength
        bias_strength = strength if strength_type == "attn_bias" else 1.0
        out = []
        for txt, keys in conditioning:
            keys = keys.copy()
            # an existing mask always grows by the new tokens (bias 0 for them in "multiply")
            mask = st.insert_style_attention(keys.get("attention_mask"), txt.shape[0], txt.shape[1],
                                             cond.shape[1], keys.get("attention_mask_img_shape"), bias_strength)
            if mask is not None:
                keys["attention_mask"] = mask.to(txt.device)
                keys["attention_mask_img_shape"] = keys.get("attention_mask_img_shape", (1, 1))
            out.append([torch.cat((txt, cond.to(txt)), dim=1), keys])
        return (out,)


MAX_RESOLUTION = 16384


class GLIGENLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"gligen_name": (known_models.filename_list("gligen"),)}}

    RETURN_TYPES = ("GLIGEN",)
    FUNCTION = "load_gligen"
    CATEGORY = "loaders"

    def load_gligen(self, gligen_name):
        return (gl.load_gligen(paths.get_full_path_or_raise("gligen", gligen_name)),)


class GLIGENTextBoxApply:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",),
                             "clip": ("CLIP",),
                             "gligen_textbox_model": ("GLIGEN",),
                             "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "width": ("INT", {"default": 64, "min": 8, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 64, "min": 8, "max": MAX_RESOLUTION, "step": 8}),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning/gligen"

    def append(self, conditioning_to, clip, gligen_textbox_model, text, width, height, x, y):
        _, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled="unprojected")
        out = []
        for t in conditioning_to:
            d = t[1].copy()
            params = [(pooled, height // 8, width // 8, y // 8, x // 8)]
            prev = list(d["gligen"][2]) if "gligen" in d else []
            d["gligen"] = ("position", gligen_textbox_model, prev + params)
            out.append([t[0], d])
        return (out,)


class HypernetworkLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "hypernetwork_name": (known_models.filename_list("hypernetworks"),),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_hypernetwork"
    CATEGORY = "loaders"

    def load_hypernetwork(self, model, hypernetwork_name, strength):
        path = paths.get_full_path_or_raise("hypernetworks", hypernetwork_name)
        out = model.clone()
        patch = hn.load_hypernetwork_patch(path, strength)
        out.set_model_attn1_patch(patch)
        out.set_model_attn2_patch(patch)
        return (out,)


NODE_CLASS_MAPPINGS = {
    "CLIPVisionLoader": CLIPVisionLoader,
    "CLIPVisionEncode": CLIPVisionEncode,
    "unCLIPCheckpointLoader": unCLIPCheckpointLoader,
    "unCLIPConditioning": unCLIPConditioning,
    "StyleModelLoader": StyleModelLoader,
    "StyleModelApply": StyleModelApply,
    "GLIGENLoader": GLIGENLoader,
    "GLIGENTextBoxApply": GLIGENTextBoxApply,
    "HypernetworkLoader": HypernetworkLoader,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CLIPVisionLoader": "Load CLIP Vision",
    "CLIPVisionEncode": "CLIP Vision Encode",
    "unCLIPCheckpointLoader": "unCLIPCheckpointLoader",
    "unCLIPConditioning": "unCLIPConditioning",
    "StyleModelLoader": "Load Style Model",
    "StyleModelApply": "Apply Style Model",
    "GLIGENLoader": "GLIGENLoader",
    "GLIGENTextBoxApply": "GLIGENTextBoxApply",
    "HypernetworkLoader": "HypernetworkLoader",
}
