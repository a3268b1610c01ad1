"""``comfy.hooks``: upstream's conditioning hooks (LoRA / patches that apply only to some conds
or steps). Our sampler does not implement hooks: the enums and names exist so packs import,
and every hook class and function raises NotSupportedError when used."""
import enum

from comfyui.compat import _unsupported


class EnumHookMode(enum.Enum):
    MinVram = "minvram"
    MaxSpeed = "maxspeed"


class EnumHookType(enum.Enum):
    Weight = "weight"
    ObjectPatch = "object_patch"
    AdditionalModels = "add_models"
    TransformerOptions = "transformer_options"
    Injections = "add_injections"


class EnumWeightTarget(enum.Enum):
    Model = "model"
    Clip = "clip"


class EnumHookScope(enum.Enum):
    AllConditioning = "all_conditioning"
    HookedOnly = "hooked_only"


class InterpolationMethod:
    LINEAR = "linear"
    EASE_IN = "ease_in"
    EASE_OUT = "ease_out"
    EASE_IN_OUT = "ease_in_out"
    _LIST = [LINEAR, EASE_IN, EASE_OUT, EASE_IN_OUT]


__getattr__ = _unsupported.module_getattr(__name__, {
    "Hook", "WeightHook", "ObjectPatchHook", "AdditionalModelsHook", "TransformerOptionsHook", "InjectionsHook",
    "WrapperHook", "SetInjectionsHook", "HookGroup", "HookKeyframe", "HookKeyframeGroup", "create_target_dict",
    "default_should_register", "get_sorted_list_via_attr", "create_transformer_options_from_hooks",
    "create_hook_lora", "create_hook_model_as_lora", "get_patch_weights_from_model", "load_hook_lora_for_models",
    "conditioning_set_values_with_hooks", "set_hooks_for_conditioning", "set_timesteps_for_conditioning",
    "set_mask_for_conditioning", "combine_conditioning", "combine_with_new_conds", "set_conds_props",
    "set_conds_props_and_combine", "set_default_conds_and_combine",
}, "conditioning hooks are not implemented by comfyui's sampler")
