"""Model wrappers: functions that run around one stage of sampling and may replace it, kept
in ``transformer_options["wrappers"][kind][key]`` (upstream's layout, so a clone copies them
with the options). A wrapper is called ``wrapper(executor, *args, **kwargs)``; calling
``executor(*args, **kwargs)`` runs the next wrapper and, after the last, the stage itself;
``executor.class_obj`` is the object the stage belongs to.

Stages (upstream's names and arguments):
  outer_sample     CFGGuider.outer_sample(noise, latent_image, sampler, sigmas, denoise_mask,
                   callback, disable_pbar, seed); class_obj: the guider
  predict_noise    CFGGuider.predict_noise(x, timestep, model_options, seed)
  calc_cond_batch  calc_cond_batch(model, conds, x_in, timestep, model_options)
  apply_model      BaseModel.apply_model(x, t, **conditioning); class_obj: the BaseModel
  diffusion_model  the network's forward(x, timesteps, ..., transformer_options=...);
                   class_obj: the network
Torch-free."""
from __future__ import annotations

from typing import Any, Callable

OUTER_SAMPLE = "outer_sample"
PREDICT_NOISE = "predict_noise"
CALC_COND_BATCH = "calc_cond_batch"
APPLY_MODEL = "apply_model"
DIFFUSION_MODEL = "diffusion_model"


def wrappers_of(kind: str, transformer_options: dict | None) -> list[Callable]:
    by_key = (transformer_options or {}).get("wrappers", {}).get(kind, {})
    return [w for ws in by_key.values() for w in ws]


class WrapperExecutor:
    """One position in a chain of wrappers around ``original``."""

    def __init__(self, original: Callable, class_obj: Any, wrappers: list[Callable], idx: int = 0):
        self.original = original
        self.class_obj = class_obj
        self.wrappers = wrappers
        self.idx = idx
        self.is_last = idx == len(wrappers)

    def __call__(self, *args, **kwargs):
        return type(self)(self.original, self.class_obj, self.wrappers, self.idx + 1).execute(*args, **kwargs)

    def execute(self, *args, **kwargs):
        if self.is_last:
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)


def call_wrapped(kind: str, transformer_options: dict | None, original: Callable, class_obj: Any, /,
                 *args, **kwargs):
    """``original(*args, **kwargs)`` through the wrappers of ``kind`` (a plain call when none)."""
    wrappers = wrappers_of(kind, transformer_options)
    if not wrappers:
        return original(*args, **kwargs)
    return WrapperExecutor(original, class_obj, wrappers).execute(*args, **kwargs)


def copy_wrappers(wrappers: dict) -> dict:
    return {kind: {key: list(ws) for key, ws in by_key.items()} for kind, by_key in wrappers.items()}
