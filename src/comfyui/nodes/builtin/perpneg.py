"""Perp-Neg (Armandpour et al. 2023; ComfyUI's nodes_perpneg): the negative prompt's guidance
enters only through its part perpendicular to the positive's, both measured from an empty
prompt's prediction. PerpNegGuider runs the three predictions in one batch; PerpNeg is the
older model patch doing the same through a CFG function."""
from __future__ import annotations

import math

from ._lazy import lazy

torch = lazy("torch")
smp = lazy("comfyui.sampling.samplers")
cnd = lazy("comfyui.sampling.conditioning")


def perp_neg(x, pred_pos, pred_neg, pred_empty, neg_scale, cond_scale):
    """empty + cfg * (pos - neg_scale * perp), pos/neg relative to the empty prediction, perp =
    neg minus its projection on pos (over the whole batch, as upstream)."""
    pos = pred_pos - pred_empty
    neg = pred_neg - pred_empty
    perp = neg - (torch.mul(neg, pos).sum() / (torch.norm(pos) ** 2)) * pos
    return pred_empty + cond_scale * (pos - perp * neg_scale)


class PerpNeg:
    EXPERIMENTAL = True
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "empty_conditioning": ("CONDITIONING",),
                             "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"

    def patch(self, model, empty_conditioning, neg_scale):
        m = model.clone()
        nocond = cnd.convert_cond(empty_conditioning)

        def cfg_function(args):
            inner = args["model"]
            x = args["input"]
            processed = cnd.encode_model_conds(inner, [dict(c) for c in nocond], x, x.device, "negative")
            (pred_empty,) = cnd.calc_cond_batch(inner, [processed], x, args["sigma"], args["model_options"])
            return x - perp_neg(x, args["cond_denoised"], args["uncond_denoised"], pred_empty, neg_scale,
                                args["cond_scale"])

        m.set_model_sampler_cfg_function(cfg_function)
        return (m,)


def _guider_class():
    """The guider subclasses samplers.CFGGuider, which loads torch: built on first use."""
    global _GUIDER
    if _GUIDER is None:
        class GuiderPerpNeg(smp.CFGGuider):
            def set_conds(self, positive, negative, empty_negative_prompt):
                empty = [[c[0], {**c[1], "prompt_type": "negative"}] for c in empty_negative_prompt]
                self.inner_set_conds({"positive": positive, "empty_negative_prompt": empty, "negative": negative})

            def set_cfg(self, cfg, neg_scale):
                self.cfg = cfg
                self.neg_scale = neg_scale

            def predict_noise(self, x, timestep, model_options=None, seed=None):
                model_options = model_options or {}
                positive = self.conds.get("positive")
                negative = self.conds.get("negative")
                empty = self.conds.get("empty_negative_prompt")
                if not model_options.get("disable_cfg1_optimization", False):
                    if math.isclose(self.neg_scale, 0.0):
                        negative = None
                        if math.isclose(self.cfg, 1.0):
                            empty = None
                conds = [positive, negative, empty]
                out = cnd.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
                for fn in model_options.get("sampler_pre_cfg_function", []):
                    out = fn({"conds": conds, "conds_out": out, "cond_scale": self.cfg, "timestep": timestep,
                              "input": x, "sigma": timestep, "model": self.inner_model,
                              "model_options": model_options})
                pred_pos, pred_neg, pred_empty = out
                result = perp_neg(x, pred_pos, pred_neg, pred_empty, self.neg_scale, self.cfg)
                for fn in model_options.get("sampler_post_cfg_function", []):
                    result = fn({"denoised": result, "cond": positive, "uncond": negative, "cond_scale": self.cfg,
                                 "model": self.inner_model, "uncond_denoised": pred_neg, "cond_denoised": pred_pos,
                                 "sigma": timestep, "model_options": model_options, "input": x,
                                 "empty_cond": empty, "empty_cond_denoised": pred_empty})
                return result

        _GUIDER = GuiderPerpNeg
    return _GUIDER


_GUIDER = None


class PerpNegGuider:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "empty_conditioning": ("CONDITIONING",),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "_for_testing"

    def get_guider(self, model, positive, negative, empty_conditioning, cfg, neg_scale):
        guider = _guider_class()(model)
        guider.set_conds(positive, negative, empty_conditioning)
        guider.set_cfg(cfg, neg_scale)
        return (guider,)


NODE_CLASS_MAPPINGS = {"PerpNeg": PerpNeg, "PerpNegGuider": PerpNegGuider}
NODE_DISPLAY_NAME_MAPPINGS = {"PerpNeg": "Perp-Neg (DEPRECATED by PerpNegGuider)"}
