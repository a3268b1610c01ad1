"""Hook nodes (upstream's ``comfy_extras/nodes_hooks``): LoRA / checkpoint-as-LoRA weight hooks
that apply only to the conds they are attached to, scheduled by keyframes over the sampling
steps, on CLIP (SetClipHooks) and on conds (the Cond Set Props nodes). The engine side is
``comfyui.models.hooks``."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from comfyui import paths

from ._lazy import lazy

hooks_mod = lazy("comfyui.models.hooks")
sdm = lazy("comfyui.models.sd")
_loading = lazy("comfyui.models.loading")

log = logging.getLogger(__name__)

_STRENGTH = ("FLOAT", {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.01})
_PROP_STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})
_PERCENT_START = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001})
_PERCENT_END = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})
_SET_COND_AREA = (["default", "mask bounds"],)
_PROPS_OPTIONAL = {"mask": ("MASK",), "hooks": ("HOOKS",), "timesteps": ("TIMESTEPS_RANGE",)}
_INTERPOLATIONS = ["linear", "ease_in", "ease_out", "ease_in_out"]  # hooks.InterpolationMethod._LIST


class _HookNode:
    EXPERIMENTAL = True


# ------------------------------------------------------------------- conds and CLIP
class PairConditioningSetProperties(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive_NEW": ("CONDITIONING",), "negative_NEW": ("CONDITIONING",),
                             "strength": _PROP_STRENGTH, "set_cond_area": _SET_COND_AREA},
                "optional": dict(_PROPS_OPTIONAL)}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    CATEGORY = "advanced/hooks/cond pair"
    FUNCTION = "set_properties"

    def set_properties(self, positive_NEW, negative_NEW, strength, set_cond_area, mask=None, hooks=None,
                       timesteps=None):
        return tuple(hooks_mod.set_conds_props([positive_NEW, negative_NEW], strength, set_cond_area, mask, hooks,
                                               timesteps))


class PairConditioningSetPropertiesAndCombine(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "positive_NEW": ("CONDITIONING",), "negative_NEW": ("CONDITIONING",),
                             "strength": _PROP_STRENGTH, "set_cond_area": _SET_COND_AREA},
                "optional": dict(_PROPS_OPTIONAL)}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    CATEGORY = "advanced/hooks/cond pair"
    FUNCTION = "set_properties"

    def set_properties(self, positive, negative, positive_NEW, negative_NEW, strength, set_cond_area, mask=None,
                       hooks=None, timesteps=None):
        return tuple(hooks_mod.set_conds_props_and_combine([positive, negative], [positive_NEW, negative_NEW],
                                                           strength, set_cond_area, mask, hooks, timesteps))


class ConditioningSetProperties(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cond_NEW": ("CONDITIONING",), "strength": _PROP_STRENGTH,
                             "set_cond_area": _SET_COND_AREA},
                "optional": dict(_PROPS_OPTIONAL)}

    RETURN_TYPES = ("CONDITIONING",)
    CATEGORY = "advanced/hooks/cond single"
    FUNCTION = "set_properties"

    def set_properties(self, cond_NEW, strength, set_cond_area, mask=None, hooks=None, timesteps=None):
        return tuple(hooks_mod.set_conds_props([cond_NEW], strength, set_cond_area, mask, hooks, timesteps))


class ConditioningSetPropertiesAndCombine(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cond": ("CONDITIONING",), "cond_NEW": ("CONDITIONING",), "strength": _PROP_STRENGTH,
                             "set_cond_area": _SET_COND_AREA},
                "optional": dict(_PROPS_OPTIONAL)}

    RETURN_TYPES = ("CONDITIONING",)
    CATEGORY = "advanced/hooks/cond single"
    FUNCTION = "set_properties"

    def set_properties(self, cond, cond_NEW, strength, set_cond_area, mask=None, hooks=None, timesteps=None):
        return tuple(hooks_mod.set_conds_props_and_combine([cond], [cond_NEW], strength, set_cond_area, mask, hooks,
                                                           timesteps))


class PairConditioningCombine(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive_A": ("CONDITIONING",), "negative_A": ("CONDITIONING",),
                             "positive_B": ("CONDITIONING",), "negative_B": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    CATEGORY = "advanced/hooks/cond pair"
    FUNCTION = "combine"

    def combine(self, positive_A, negative_A, positive_B, negative_B):
        return tuple(hooks_mod.set_conds_props_and_combine([positive_A, negative_A], [positive_B, negative_B]))


class PairConditioningSetDefaultAndCombine(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "positive_DEFAULT": ("CONDITIONING",), "negative_DEFAULT": ("CONDITIONING",)},
                "optional": {"hooks": ("HOOKS",)}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    CATEGORY = "advanced/hooks/cond pair"
    FUNCTION = "set_default_and_combine"

    def set_default_and_combine(self, positive, negative, positive_DEFAULT, negative_DEFAULT, hooks=None):
        return tuple(hooks_mod.set_default_conds_and_combine([positive, negative],
                                                             [positive_DEFAULT, negative_DEFAULT], hooks))


class ConditioningSetDefaultAndCombine(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cond": ("CONDITIONING",), "cond_DEFAULT": ("CONDITIONING",)},
                "optional": {"hooks": ("HOOKS",)}}

    RETURN_TYPES = ("CONDITIONING",)
    CATEGORY = "advanced/hooks/cond single"
    FUNCTION = "set_default_and_combine"

    def set_default_and_combine(self, cond, cond_DEFAULT, hooks=None):
        return tuple(hooks_mod.set_default_conds_and_combine([cond], [cond_DEFAULT], hooks))


class SetClipHooks(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "apply_to_conds": ("BOOLEAN", {"default": True}),
                             "schedule_clip": ("BOOLEAN", {"default": False})},
                "optional": {"hooks": ("HOOKS",)}}

    RETURN_TYPES = ("CLIP",)
    CATEGORY = "advanced/hooks/clip"
    FUNCTION = "apply_hooks"

    def apply_hooks(self, clip, schedule_clip, apply_to_conds, hooks=None):
        if hooks is None:
            return (clip,)
        clip = clip.clone()
        if apply_to_conds:
            clip.apply_hooks_to_conds = hooks
        forced = hooks.clone()
        clip.use_clip_schedule = schedule_clip
        if not schedule_clip:
            forced.set_keyframes_on_hooks(None)  # unscheduled: every hook at its full CLIP strength
        clip.patcher.forced_hooks = forced
        clip.patcher.register_hooks(forced, hooks_mod.EnumWeightTarget.Clip)
        return (clip,)


class ConditioningTimestepsRange(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"start_percent": _PERCENT_START, "end_percent": _PERCENT_END}}

    RETURN_TYPES = ("TIMESTEPS_RANGE", "TIMESTEPS_RANGE", "TIMESTEPS_RANGE")
    RETURN_NAMES = ("TIMESTEPS_RANGE", "BEFORE_RANGE", "AFTER_RANGE")
    CATEGORY = "advanced/hooks"
    FUNCTION = "create_range"

    def create_range(self, start_percent, end_percent):
        return (start_percent, end_percent), (0.0, start_percent), (end_percent, 1.0)


# --------------------------------------------------------------------- creating hooks
class CreateHookLora(_HookNode):
    def __init__(self):
        self.loaded_lora = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (paths.get_filename_list("loras"),), "strength_model": _STRENGTH,
                             "strength_clip": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    RETURN_TYPES = ("HOOKS",)
    CATEGORY = "advanced/hooks/create"
    FUNCTION = "create_hook"

    def create_hook(self, lora_name, strength_model, strength_clip, prev_hooks=None):
        if prev_hooks is None:
            prev_hooks = hooks_mod.HookGroup()
        if strength_model == 0 and strength_clip == 0:
            return (prev_hooks,)
        lora_path = paths.get_full_path_or_raise("loras", lora_name)
        if self.loaded_lora is None or self.loaded_lora[0] != lora_path:
            self.loaded_lora = (lora_path, _loading.load_torch_file(lora_path, safe_load=True))
        hooks = hooks_mod.create_hook_lora(self.loaded_lora[1], strength_model, strength_clip)
        return (prev_hooks.clone_and_combine(hooks),)


class CreateHookLoraModelOnly(CreateHookLora):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (paths.get_filename_list("loras"),), "strength_model": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    FUNCTION = "create_hook_model_only"

    def create_hook_model_only(self, lora_name, strength_model, prev_hooks=None):
        return self.create_hook(lora_name, strength_model, 0, prev_hooks)


class CreateHookModelAsLora(_HookNode):
    def __init__(self):
        self.loaded_weights = None  # (path, model weights, clip weights)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (paths.get_filename_list("checkpoints"),), "strength_model": _STRENGTH,
                             "strength_clip": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    RETURN_TYPES = ("HOOKS",)
    CATEGORY = "advanced/hooks/create"
    FUNCTION = "create_hook"

    def create_hook(self, ckpt_name, strength_model, strength_clip, prev_hooks=None):
        if prev_hooks is None:
            prev_hooks = hooks_mod.HookGroup()
        ckpt_path = paths.get_full_path_or_raise("checkpoints", ckpt_name)
        if self.loaded_weights is None or self.loaded_weights[0] != ckpt_path:
            model, clip = sdm.load_checkpoint_guess_config(ckpt_path, output_vae=True, output_clip=True,
                                                           embedding_directory=paths.get_folder_paths("embeddings"))[:2]
            self.loaded_weights = (ckpt_path, hooks_mod.get_patch_weights_from_model(model),
                                   hooks_mod.get_patch_weights_from_model(clip.patcher if clip else None))
        hooks = hooks_mod.create_hook_model_as_lora(self.loaded_weights[1], self.loaded_weights[2], strength_model,
                                                    strength_clip)
        return (prev_hooks.clone_and_combine(hooks),)


class CreateHookModelAsLoraModelOnly(CreateHookModelAsLora):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (paths.get_filename_list("checkpoints"),), "strength_model": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    FUNCTION = "create_hook_model_only"

    def create_hook_model_only(self, ckpt_name, strength_model, prev_hooks=None):
        return self.create_hook(ckpt_name, strength_model, 0.0, prev_hooks)


# ------------------------------------------------------------------------- scheduling
class SetHookKeyframes(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"hooks": ("HOOKS",)}, "optional": {"hook_kf": ("HOOK_KEYFRAMES",)}}

    RETURN_TYPES = ("HOOKS",)
    CATEGORY = "advanced/hooks/scheduling"
    FUNCTION = "set_hook_keyframes"

    def set_hook_keyframes(self, hooks, hook_kf=None):
        if hook_kf is not None:
            hooks = hooks.clone()
            hooks.set_keyframes_on_hooks(hook_kf)
        return (hooks,)


class CreateHookKeyframe(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"strength_mult": _STRENGTH, "start_percent": _PERCENT_START},
                "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    CATEGORY = "advanced/hooks/scheduling"
    FUNCTION = "create_hook_keyframe"

    def create_hook_keyframe(self, strength_mult, start_percent, prev_hook_kf=None):
        kf = prev_hook_kf.clone() if prev_hook_kf is not None else hooks_mod.HookKeyframeGroup()
        kf.add(hooks_mod.HookKeyframe(strength=strength_mult, start_percent=start_percent))
        return (kf,)


def _add_keyframes(prev_hook_kf, percents, strengths, print_keyframes):
    """Keyframes at ``percents``; the first is guaranteed one step, the others none."""
    kf = prev_hook_kf.clone() if prev_hook_kf is not None else hooks_mod.HookKeyframeGroup()
    for i, (percent, strength) in enumerate(zip(percents, strengths)):
        percent, strength = float(percent), float(strength)
        kf.add(hooks_mod.HookKeyframe(strength=strength, start_percent=percent, guarantee_steps=1 if i == 0 else 0))
        if print_keyframes:
            log.info("Hook Keyframe - start_percent:%s = %s", percent, strength)
    return kf


class CreateHookKeyframesInterpolated(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "strength_start": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
            "strength_end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
            "interpolation": (list(_INTERPOLATIONS),),
            "start_percent": _PERCENT_START,
            "end_percent": _PERCENT_END,
            "keyframes_count": ("INT", {"default": 5, "min": 2, "max": 100, "step": 1}),
            "print_keyframes": ("BOOLEAN", {"default": False}),
        }, "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    CATEGORY = "advanced/hooks/scheduling"
    FUNCTION = "create_hook_keyframes"

    def create_hook_keyframes(self, strength_start, strength_end, interpolation, start_percent, end_percent,
                              keyframes_count, print_keyframes=False, prev_hook_kf=None):
        im = hooks_mod.InterpolationMethod
        percents = im.get_weights(start_percent, end_percent, keyframes_count, im.LINEAR)
        strengths = im.get_weights(strength_start, strength_end, keyframes_count, interpolation)
        return (_add_keyframes(prev_hook_kf, percents, strengths, print_keyframes),)


class CreateHookKeyframesFromFloats(_HookNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "floats_strength": ("FLOATS", {"default": -1, "min": -1, "step": 0.001, "forceInput": True}),
            "start_percent": _PERCENT_START,
            "end_percent": _PERCENT_END,
            "print_keyframes": ("BOOLEAN", {"default": False}),
        }, "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    CATEGORY = "advanced/hooks/scheduling"
    FUNCTION = "create_hook_keyframes"

    def create_hook_keyframes(self, floats_strength, start_percent, end_percent, prev_hook_kf=None,
                              print_keyframes=False):
        if isinstance(floats_strength, (float, int)):
            floats_strength = [float(floats_strength)]
        elif not isinstance(floats_strength, Iterable):
            raise TypeError("floats_strength must be a float or a list of floats, "
                            f"not {type(floats_strength).__name__}")
        floats_strength = list(floats_strength)
        im = hooks_mod.InterpolationMethod
        percents = im.get_weights(start_percent, end_percent, len(floats_strength), im.LINEAR)
        return (_add_keyframes(prev_hook_kf, percents, floats_strength, print_keyframes),)


# ---------------------------------------------------------------------------- combine
class CombineHooks(_HookNode):
    LETTERS = "AB"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "optional": {f"hooks_{c}": ("HOOKS",) for c in cls.LETTERS}}

    RETURN_TYPES = ("HOOKS",)
    CATEGORY = "advanced/hooks/combine"
    FUNCTION = "combine_hooks"

    def combine_hooks(self, **hooks):
        return (hooks_mod.HookGroup.combine_all_hooks([hooks.get(f"hooks_{c}") for c in self.LETTERS]),)


class CombineHooksFour(CombineHooks):
    LETTERS = "ABCD"


class CombineHooksEight(CombineHooks):
    LETTERS = "ABCDEFGH"


NODE_CLASS_MAPPINGS = {
    "CreateHookLora": CreateHookLora,
    "CreateHookLoraModelOnly": CreateHookLoraModelOnly,
    "CreateHookModelAsLora": CreateHookModelAsLora,
    "CreateHookModelAsLoraModelOnly": CreateHookModelAsLoraModelOnly,
    "SetHookKeyframes": SetHookKeyframes,
    "CreateHookKeyframe": CreateHookKeyframe,
    "CreateHookKeyframesInterpolated": CreateHookKeyframesInterpolated,
    "CreateHookKeyframesFromFloats": CreateHookKeyframesFromFloats,
    "CombineHooks2": CombineHooks,
    "CombineHooks4": CombineHooksFour,
    "CombineHooks8": CombineHooksEight,
    "ConditioningSetProperties": ConditioningSetProperties,
    "ConditioningSetPropertiesAndCombine": ConditioningSetPropertiesAndCombine,
    "PairConditioningSetProperties": PairConditioningSetProperties,
    "PairConditioningSetPropertiesAndCombine": PairConditioningSetPropertiesAndCombine,
    "ConditioningSetDefaultCombine": ConditioningSetDefaultAndCombine,
    "PairConditioningSetDefaultCombine": PairConditioningSetDefaultAndCombine,
    "PairConditioningCombine": PairConditioningCombine,
    "SetClipHooks": SetClipHooks,
    "ConditioningTimestepsRange": ConditioningTimestepsRange,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CreateHookLora": "Create Hook LoRA",
    "CreateHookLoraModelOnly": "Create Hook LoRA (MO)",
    "CreateHookModelAsLora": "Create Hook Model as LoRA",
    "CreateHookModelAsLoraModelOnly": "Create Hook Model as LoRA (MO)",
    "SetHookKeyframes": "Set Hook Keyframes",
    "CreateHookKeyframe": "Create Hook Keyframe",
    "CreateHookKeyframesInterpolated": "Create Hook Keyframes Interp.",
    "CreateHookKeyframesFromFloats": "Create Hook Keyframes From Floats",
    "CombineHooks2": "Combine Hooks [2]",
    "CombineHooks4": "Combine Hooks [4]",
    "CombineHooks8": "Combine Hooks [8]",
    "ConditioningSetProperties": "Cond Set Props",
    "ConditioningSetPropertiesAndCombine": "Cond Set Props Combine",
    "PairConditioningSetProperties": "Cond Pair Set Props",
    "PairConditioningSetPropertiesAndCombine": "Cond Pair Set Props Combine",
    "ConditioningSetDefaultCombine": "Cond Set Default Combine",
    "PairConditioningSetDefaultCombine": "Cond Pair Set Default Combine",
    "PairConditioningCombine": "Cond Pair Combine",
    "SetClipHooks": "Set CLIP Hooks",
    "ConditioningTimestepsRange": "Timesteps Range",
}
