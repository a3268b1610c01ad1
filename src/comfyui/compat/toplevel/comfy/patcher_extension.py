"""``comfy.patcher_extension``: upstream's names for model wrappers, callbacks and injections.

Our sampler does not run wrappers or callbacks registered in ``transformer_options``, so
registering one raises NotSupportedError (a pack's patch node fails with a clear message
instead of silently doing nothing). The name constants, the lookups (which find nothing),
``WrapperExecutor`` and the nested-dict helpers work as upstream's.
"""
from __future__ import annotations

from typing import Callable

from comfyui.compat._unsupported import NotSupportedError


class CallbacksMP:
    ON_CLONE = "on_clone"
    ON_LOAD = "on_load_after"
    ON_DETACH = "on_detach_after"
    ON_CLEANUP = "on_cleanup"
    ON_PRE_RUN = "on_pre_run"
    ON_PREPARE_STATE = "on_prepare_state"
    ON_APPLY_HOOKS = "on_apply_hooks"
    ON_REGISTER_ALL_HOOK_PATCHES = "on_register_all_hook_patches"
    ON_INJECT_MODEL = "on_inject_model"
    ON_EJECT_MODEL = "on_eject_model"

    @classmethod
    def init_callbacks(cls) -> dict[str, dict[str, list[Callable]]]:
        return {}


class WrappersMP:
    OUTER_SAMPLE = "outer_sample"
    PREPARE_SAMPLING = "prepare_sampling"
    SAMPLER_SAMPLE = "sampler_sample"
    PREDICT_NOISE = "predict_noise"
    CALC_COND_BATCH = "calc_cond_batch"
    APPLY_MODEL = "apply_model"
    DIFFUSION_MODEL = "diffusion_model"

    @classmethod
    def init_wrappers(cls) -> dict[str, dict[str, list[Callable]]]:
        return {}


def _registered(options: dict, kind: str, is_model_options: bool) -> dict:
    if is_model_options:
        options = options.get("transformer_options", {})
    return options.get(kind, {})


def add_callback(call_type: str, callback: Callable, transformer_options: dict, is_model_options=False):
    add_callback_with_key(call_type, None, callback, transformer_options, is_model_options)


def add_callback_with_key(call_type: str, key: str, callback: Callable, transformer_options: dict,
                          is_model_options=False):
    raise NotSupportedError(f"model patcher callbacks ({call_type!r}) are not run by comfyui's sampler")


def get_callbacks_with_key(call_type: str, key: str, transformer_options: dict, is_model_options=False) -> list:
    return list(_registered(transformer_options, "callbacks", is_model_options).get(call_type, {}).get(key, []))


def get_all_callbacks(call_type: str, transformer_options: dict, is_model_options=False) -> list:
    by_key = _registered(transformer_options, "callbacks", is_model_options).get(call_type, {})
    return [c for callbacks in by_key.values() for c in callbacks]


def add_wrapper(wrapper_type: str, wrapper: Callable, transformer_options: dict, is_model_options=False):
    add_wrapper_with_key(wrapper_type, None, wrapper, transformer_options, is_model_options)


def add_wrapper_with_key(wrapper_type: str, key: str, wrapper: Callable, transformer_options: dict,
                         is_model_options=False):
    raise NotSupportedError(f"model wrappers ({wrapper_type!r}) are not run by comfyui's sampler")


def get_wrappers_with_key(wrapper_type: str, key: str, transformer_options: dict, is_model_options=False) -> list:
    return list(_registered(transformer_options, "wrappers", is_model_options).get(wrapper_type, {}).get(key, []))


def get_all_wrappers(wrapper_type: str, transformer_options: dict, is_model_options=False) -> list:
    by_key = _registered(transformer_options, "wrappers", is_model_options).get(wrapper_type, {})
    return [w for wrappers in by_key.values() for w in wrappers]


class WrapperExecutor:
    """Calls ``wrappers[idx](executor, *args)``; calling the executor runs the next wrapper, and
    past the last one ``original`` (``class_obj`` is the instance a wrapped method belongs to)."""

    def __init__(self, original: Callable, class_obj: object, wrappers: list[Callable], idx: int):
        self.original = original
        self.class_obj = class_obj
        self.wrappers = list(wrappers)
        self.idx = idx
        self.is_last = idx == len(self.wrappers)

    def __call__(self, *args, **kwargs):
        return type(self)(self.original, self.class_obj, self.wrappers, self.idx + 1).execute(*args, **kwargs)

    def execute(self, *args, **kwargs):
        if self.is_last:
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)

    @classmethod
    def new_executor(cls, original: Callable, wrappers: list[Callable], idx=0) -> "WrapperExecutor":
        return cls(original, None, wrappers, idx)

    @classmethod
    def new_class_executor(cls, original: Callable, class_obj: object, wrappers: list[Callable],
                           idx=0) -> "WrapperExecutor":
        return cls(original, class_obj, wrappers, idx)


class PatcherInjection:
    def __init__(self, inject: Callable, eject: Callable):
        self.inject = inject
        self.eject = eject


def copy_nested_dicts(input_dict: dict) -> dict:
    """A copy in which nested dicts and lists are copies too (other values are shared)."""
    return {k: copy_nested_dicts(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
            for k, v in input_dict.items()}


def merge_nested_dicts(dict1: dict, dict2: dict, copy_dict1=True) -> dict:
    """``dict1`` updated with ``dict2``: nested dicts merged, lists extended."""
    merged = copy_nested_dicts(dict1) if copy_dict1 else dict1
    for key, value in dict2.items():
        if isinstance(value, dict):
            merged[key] = merge_nested_dicts(value, merged.get(key, {}))
        elif isinstance(value, list):
            merged.setdefault(key, []).extend(value)
        else:
            merged[key] = value
    return merged
