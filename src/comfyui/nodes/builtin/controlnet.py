"""ControlNet nodes: ControlNetLoader, DiffControlNetLoader, ControlNetApply (old),
ControlNetApplyAdvanced, SetUnionControlNetType, ControlNetInpaintingAliMamaApply. ControlNets, control-LoRAs and T2I-Adapters
all load through ControlNetLoader and chain on a conditioning's ``control`` entry."""
from __future__ import annotations

from comfyui import known_models, paths

from ._lazy import lazy

cn = lazy("comfyui.models.controlnet")

UNION_CONTROLNET_TYPES = {
    "openpose": 0,
    "depth": 1,
    "hed/pidi/scribble/ted": 2,
    "canny/lineart/anime_lineart/mlsd": 3,
    "normal": 4,
    "segment": 5,
    "tile": 6,
    "repaint": 7,
}


class ControlNetLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"control_net_name": (known_models.filename_list("controlnet"),)}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    def load_controlnet(self, control_net_name):
        return (cn.load_controlnet(paths.get_full_path_or_raise("controlnet", control_net_name)),)


class DiffControlNetLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "control_net_name": (known_models.filename_list("controlnet"),)}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    def load_controlnet(self, model, control_net_name):
        return (cn.load_controlnet(paths.get_full_path_or_raise("controlnet", control_net_name), model=model),)


class ControlNetApply:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"
    DEPRECATED = True
    CATEGORY = "conditioning/controlnet"

    def apply_controlnet(self, conditioning, control_net, image, strength):
        if strength == 0:
            return (conditioning,)
        hint = image.movedim(-1, 1)
        out = []
        for t in conditioning:
            d = t[1].copy()
            c_net = control_net.copy().set_cond_hint(hint, strength)
            if "control" in t[1]:
                c_net.set_previous_controlnet(t[1]["control"])
            d["control"] = c_net
            d["control_apply_to_uncond"] = True
            out.append([t[0], d])
        return (out,)


class ControlNetApplyAdvanced:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",),
                             "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                             "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})},
                "optional": {"vae": ("VAE",)}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"
    CATEGORY = "conditioning/controlnet"

    def apply_controlnet(self, positive, negative, control_net, image, strength, start_percent, end_percent,
                         vae=None, extra_concat=()):
        if strength == 0:
            return (positive, negative)
        hint = image.movedim(-1, 1)
        made: dict[int, tuple] = {}
        out = []
        for conditioning in (positive, negative):
            c = []
            for t in conditioning:
                d = t[1].copy()
                prev = d.get("control")
                key = id(prev)
                if key in made:
                    c_net = made[key][0]
                else:
                    c_net = control_net.copy().set_cond_hint(hint, strength, (start_percent, end_percent), vae=vae,
                                                             extra_concat=list(extra_concat))
                    c_net.set_previous_controlnet(prev)
                    made[key] = (c_net, prev)  # keep prev alive so its id stays unique
                d["control"] = c_net
                d["control_apply_to_uncond"] = False
                c.append([t[0], d])
            out.append(c)
        return (out[0], out[1])


class SetUnionControlNetType:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"control_net": ("CONTROL_NET",),
                             "type": (["auto"] + list(UNION_CONTROLNET_TYPES.keys()),)}}

    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "set_controlnet_type"

    def set_controlnet_type(self, control_net, type):
        control_net = control_net.copy()
        n = UNION_CONTROLNET_TYPES.get(type, -1)
        control_net.union_type = [n] if n >= 0 else []
        return (control_net,)


class ControlNetInpaintingAliMamaApply(ControlNetApplyAdvanced):
    """Inpainting ControlNets (a mask channel after the encoded hint: ``concat_mask``): the
    masked area of the image is blacked out and the inverted mask goes with the hint. Other
    ControlNets get the image as it is."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",),
                             "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",),
                             "vae": ("VAE",),
                             "image": ("IMAGE",),
                             "mask": ("MASK",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                             "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})}}

    FUNCTION = "apply_inpaint_controlnet"
    CATEGORY = "conditioning/controlnet"

    def apply_inpaint_controlnet(self, positive, negative, control_net, vae, image, mask, strength, start_percent,
                                 end_percent):
        extra_concat = []
        if getattr(control_net, "concat_mask", False):
            keep = 1.0 - mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
            keep_img = cn.common_upscale(keep, image.shape[2], image.shape[1], "bilinear", "center").round()
            image = image * keep_img.movedim(1, -1).repeat(1, 1, 1, image.shape[3])
            extra_concat = [keep]
        return self.apply_controlnet(positive, negative, control_net, image, strength, start_percent, end_percent,
                                     vae=vae, extra_concat=extra_concat)


NODE_CLASS_MAPPINGS = {
    "ControlNetLoader": ControlNetLoader,
    "DiffControlNetLoader": DiffControlNetLoader,
    "ControlNetApply": ControlNetApply,
    "ControlNetApplyAdvanced": ControlNetApplyAdvanced,
    "SetUnionControlNetType": SetUnionControlNetType,
    "ControlNetInpaintingAliMamaApply": ControlNetInpaintingAliMamaApply,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ControlNetLoader": "Load ControlNet Model",
    "DiffControlNetLoader": "Load ControlNet Model (diff)",
    "ControlNetApply": "Apply ControlNet (OLD)",
    "ControlNetApplyAdvanced": "Apply ControlNet",
    "SetUnionControlNetType": "SetUnionControlNetType",
    "ControlNetInpaintingAliMamaApply": "ControlNetInpaintingAliMamaApply",
}
