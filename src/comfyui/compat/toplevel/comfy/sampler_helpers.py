"""``comfy.sampler_helpers``: what the samplers do around a sampling run (masks, conds, loading
the models a conditioning references), over :mod:`comfyui.sampling.samplers`."""
from __future__ import annotations

from comfyui.sampling.conditioning import convert_cond  # noqa: F401
from comfyui.sampling.samplers import prepare_mask  # noqa: F401
from comfyui.sampling.samplers import prepare_sampling as _prepare_sampling


def get_models_from_cond(cond: list[dict], model_type: str) -> list:
    """The ``model_type`` entries ("control", "gligen", "additional_models") of converted conds."""
    models = []
    for c in cond:
        if model_type in c:
            models += c[model_type] if isinstance(c[model_type], list) else [c[model_type]]
    return models


def get_additional_models(conds: dict, dtype) -> tuple[list, int]:
    """``(models, inference_memory)``: the patchers of the ControlNets (and GLIGENs, additional
    models) that ``conds`` reference, and the extra memory the ControlNets need."""
    control_nets = {c for k in conds for c in get_models_from_cond(conds[k], "control")}
    models, memory = [], 0
    for control in control_nets:
        models += control.get_models()
        requirement = getattr(control, "inference_memory_requirements", None)
        memory += requirement(dtype) if requirement is not None else 0
    gligen = [g[1] for k in conds for g in get_models_from_cond(conds[k], "gligen")]
    extra = [m for k in conds for m in get_models_from_cond(conds[k], "additional_models")]
    return models + gligen + extra, memory


def cleanup_additional_models(models) -> None:
    for model in models:
        if hasattr(model, "cleanup"):
            model.cleanup()


def prepare_sampling(model, noise_shape, conds, model_options=None):
    """Load ``model`` and the models ``conds`` reference; ``(BaseModel, conds, models loaded)``."""
    loaded = _prepare_sampling(model, noise_shape, conds, model_options)
    return model.model, conds, [m for m in loaded if m is not model]


def cleanup_models(conds: dict, models) -> None:
    cleanup_additional_models(models)
    cleanup_additional_models({c for k in conds for c in get_models_from_cond(conds[k], "control")})
