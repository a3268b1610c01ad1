"""``comfy`` package for custom nodes.

In a running ComfyUI the server has imported most ``comfy.*`` modules before any custom node
loads, so a bare ``import comfy`` followed by ``comfy.samplers.KSampler.SAMPLERS`` works there.
Here the sub-modules are imported on first attribute access, with the same effect.
"""
import importlib

# the sub-modules a running ComfyUI has imported by the time custom nodes load
_PRELOADED = frozenset({
    "cli_args", "clip_vision", "comfy_types", "conds", "controlnet", "diffusers_convert", "float", "hooks",
    "k_diffusion", "latent_formats", "ldm", "lora", "model_base", "model_detection", "model_management",
    "model_patcher", "model_sampling", "ops", "patcher_extension", "sample", "sampler_helpers", "samplers", "sd",
    "sdxl_clip", "taesd", "utils",
})


def __getattr__(name: str):
    if name in _PRELOADED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'comfy' has no attribute {name!r}")
