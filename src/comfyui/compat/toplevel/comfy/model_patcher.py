"""``comfy.model_patcher``: :class:`comfyui.models.patcher.ModelPatcher` (the MODEL object; packs
patch and subclass that very class) and upstream's model_options helpers."""
from __future__ import annotations

from comfy.patcher_extension import PatcherInjection, copy_nested_dicts  # noqa: F401
from comfy.utils import string_to_seed  # noqa: F401
from comfyui.models.patcher import ModelPatcher  # noqa: F401


def create_model_options_clone(orig_model_options: dict) -> dict:
    return copy_nested_dicts(orig_model_options)


def set_model_options_patch_replace(model_options: dict, patch, name: str, block_name: str, number: int,
                                    transformer_index: int | None = None) -> dict:
    """Put ``patch`` in ``model_options["transformer_options"]["patches_replace"][name]`` under
    ``(block_name, number[, transformer_index])``, copying the dicts it changes."""
    options = dict(model_options["transformer_options"])
    replace = options["patches_replace"] = dict(options.get("patches_replace", {}))
    by_block = replace[name] = dict(replace.get(name, {}))
    by_block[(block_name, number) if transformer_index is None else (block_name, number, transformer_index)] = patch
    model_options["transformer_options"] = options
    return model_options


def set_model_options_post_cfg_function(model_options: dict, post_cfg_function, disable_cfg1_optimization=False):
    functions = model_options.get("sampler_post_cfg_function", [])
    model_options["sampler_post_cfg_function"] = functions + [post_cfg_function]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def set_model_options_pre_cfg_function(model_options: dict, pre_cfg_function, disable_cfg1_optimization=False):
    model_options["sampler_pre_cfg_function"] = model_options.get("sampler_pre_cfg_function", []) + [pre_cfg_function]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options
