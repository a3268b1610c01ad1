"""CONDITIONING nodes of ComfyUI's nodes.py.

CONDITIONING is a list of ``[tensor [B,T,C], dict]``; the dict carries ``pooled_output``
and the options these nodes set (``area``, ``strength``, ``mask``, ``mask_strength``,
``set_area_to_bounds``, ``start_percent``, ``end_percent``) that the sampler honours.
"""
from __future__ import annotations

import logging

from ._image_utils import MAX_RESOLUTION
from ._lazy import lazy

torch = lazy("torch")

log = logging.getLogger(__name__)


def conditioning_set_values(conditioning, values: dict, append: bool = False):
    out = []
    for t in conditioning:
        n = [t[0], dict(t[1])]
        for k, val in values.items():
            if append:
                old = n[1].get(k)
                if old is not None:
                    val = old + val
            n[1][k] = val
        out.append(n)
    return out


class ConditioningCombine:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"
    CATEGORY = "conditioning"

    def combine(self, conditioning_1, conditioning_2):
        return (conditioning_1 + conditioning_2,)


class ConditioningAverage:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning_to": ("CONDITIONING",),
                "conditioning_from": ("CONDITIONING",),
                "conditioning_to_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "addWeighted"
    CATEGORY = "conditioning"

    def addWeighted(self, conditioning_to, conditioning_from, conditioning_to_strength):
        out = []
        if len(conditioning_from) > 1:
            log.warning("ConditioningAverage conditioning_from contains more than 1 cond, only the first one "
                        "will actually be applied to conditioning_to.")
        cond_from = conditioning_from[0][0]
        pooled_from = conditioning_from[0][1].get("pooled_output", None)
        w = conditioning_to_strength
        for t in conditioning_to:
            t1 = t[0]
            pooled_to = t[1].get("pooled_output", pooled_from)
            t0 = cond_from[:, :t1.shape[1]].to(t1)
            if t0.shape[1] < t1.shape[1]:
                pad = torch.zeros((t0.shape[0], t1.shape[1] - t0.shape[1], t1.shape[2]), dtype=t1.dtype,
                                  device=t1.device)
                t0 = torch.cat([t0, pad], dim=1)
            tw = t1 * w + t0 * (1.0 - w)
            d = dict(t[1])
            if pooled_from is not None and pooled_to is not None:
                d["pooled_output"] = pooled_to * w + pooled_from * (1.0 - w)
            elif pooled_from is not None:
                d["pooled_output"] = pooled_from
            out.append([tw, d])
        return (out,)


class ConditioningConcat:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "concat"
    CATEGORY = "conditioning"

    def concat(self, conditioning_to, conditioning_from):
        if len(conditioning_from) > 1:
            log.warning("ConditioningConcat conditioning_from contains more than 1 cond, only the first one "
                        "will actually be applied to conditioning_to.")
        cond_from = conditioning_from[0][0]
        return ([[torch.cat((t[0], cond_from.to(t[0])), 1), dict(t[1])] for t in conditioning_to],)


class ConditioningSetArea:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "width": ("INT", {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, width, height, x, y, strength):
        return (conditioning_set_values(conditioning, {"area": (height // 8, width // 8, y // 8, x // 8),
                                                       "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaPercentage:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "width": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01}),
                "height": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01}),
                "x": ("FLOAT", {"default": 0, "min": 0, "max": 1.0, "step": 0.01}),
                "y": ("FLOAT", {"default": 0, "min": 0, "max": 1.0, "step": 0.01}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, width, height, x, y, strength):
        return (conditioning_set_values(conditioning, {"area": ("percentage", height, width, y, x),
                                                       "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaStrength:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, strength):
        return (conditioning_set_values(conditioning, {"strength": strength}),)


class ConditioningSetMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "mask": ("MASK",),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                "set_cond_area": (["default", "mask bounds"],),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, mask, set_cond_area, strength):
        if mask.ndim < 3:
            mask = mask.unsqueeze(0)
        return (conditioning_set_values(conditioning, {"mask": mask,
                                                       "set_area_to_bounds": set_cond_area != "default",
                                                       "mask_strength": strength}),)


class ConditioningZeroOut:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "zero_out"
    CATEGORY = "advanced/conditioning"

    def zero_out(self, conditioning):
        out = []
        for t in conditioning:
            d = dict(t[1])
            for key in ("pooled_output", "conditioning_lyrics"):
                if d.get(key) is not None:
                    d[key] = torch.zeros_like(d[key])
            out.append([torch.zeros_like(t[0]), d])
        return (out,)


class ConditioningSetTimestepRange:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                "end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_range"
    CATEGORY = "advanced/conditioning"

    def set_range(self, conditioning, start, end):
        return (conditioning_set_values(conditioning, {"start_percent": start, "end_percent": end}),)


NODE_CLASS_MAPPINGS = {
    "ConditioningCombine": ConditioningCombine,
    "ConditioningAverage": ConditioningAverage,
    "ConditioningConcat": ConditioningConcat,
    "ConditioningSetArea": ConditioningSetArea,
    "ConditioningSetAreaPercentage": ConditioningSetAreaPercentage,
    "ConditioningSetAreaStrength": ConditioningSetAreaStrength,
    "ConditioningSetMask": ConditioningSetMask,
    "ConditioningZeroOut": ConditioningZeroOut,
    "ConditioningSetTimestepRange": ConditioningSetTimestepRange,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ConditioningCombine": "Conditioning (Combine)",
    "ConditioningAverage": "ConditioningAverage",
    "ConditioningConcat": "Conditioning (Concat)",
    "ConditioningSetArea": "Conditioning (Set Area)",
    "ConditioningSetAreaPercentage": "Conditioning (Set Area with Percentage)",
    "ConditioningSetMask": "Conditioning (Set Mask)",
}
