"""``comfy.hooks``: upstream's conditioning hooks (LoRA / patches that apply only to some conds
or steps). Weight hooks, keyframes and the conditioning helpers are ours
(``comfyui.models.hooks``); the other hook kinds (object patches, wrappers, injections, extra
models) exist so packs import, and raise NotSupportedError when used."""
import enum

from comfyui.compat import _unsupported
from comfyui.models.hooks import (EnumWeightTarget, HookGroup, HookKeyframe, HookKeyframeGroup,  # noqa: F401
                                  InterpolationMethod, WeightHook, create_hook_lora, create_hook_model_as_lora,
                                  get_patch_weights_from_model, set_conds_props, set_conds_props_and_combine,
                                  set_default_conds_and_combine, set_hooks_for_conditioning,
                                  set_mask_for_conditioning, set_timesteps_for_conditioning)


class EnumHookMode(enum.Enum):
    MinVram = "minvram"
    MaxSpeed = "maxspeed"


class EnumHookType(enum.Enum):
    Weight = "weight"
    ObjectPatch = "object_patch"
    AdditionalModels = "add_models"
    TransformerOptions = "transformer_options"
    Injections = "add_injections"


class EnumHookScope(enum.Enum):
    AllConditioning = "all_conditioning"
    HookedOnly = "hooked_only"


__getattr__ = _unsupported.module_getattr(__name__, {
    "Hook", "ObjectPatchHook", "AdditionalModelsHook", "TransformerOptionsHook", "InjectionsHook",
    "WrapperHook", "SetInjectionsHook", "create_target_dict", "default_should_register", "get_sorted_list_via_attr",
    "create_transformer_options_from_hooks", "load_hook_lora_for_models", "conditioning_set_values_with_hooks",
    "combine_conditioning", "combine_with_new_conds",
}, "comfyui's sampler implements weight hooks (WeightHook) only")
