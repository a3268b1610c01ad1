"""Speed-ups that keep the model's weights: step caching (ComfyUI's nodes_easycache: EasyCache,
Zhou et al. 2025, and its simpler LazyCache) and torch.compile (nodes_torch_compile). They run
as model wrappers (:mod:`comfyui.models.wrappers`).

Step caching: the change of a model call's output tracks the change of its input with a ratio
(the transformation rate) that is nearly constant over neighbouring steps. Once the ratio is
known, each step's output change is estimated from the input change alone; while the summed
estimates stay below ``reuse_threshold`` (relative to the last output's mean magnitude) the
call is skipped and answered with the new input plus the last (output - input)."""
from __future__ import annotations

import logging

from ._lazy import lazy

torch = lazy("torch")
wrappers = lazy("comfyui.models.wrappers")
patcher_mod = lazy("comfyui.models.patcher")

log = logging.getLogger(__name__)

SUBSAMPLE = 8  # change rates are measured on every 8th row and column


def _mean_abs(t) -> float:
    return float(t.abs().mean())


class StepCache:
    """One sampling run's cache state. EasyCache (``per_uuid``) caches each conditioning's
    network output and decides on the first conditioning's; LazyCache caches the guided
    prediction as a whole."""

    def __init__(self, name: str, reuse_threshold: float, start_percent: float, end_percent: float,
                 verbose: bool, per_uuid: bool):
        self.name = name
        self.reuse_threshold = reuse_threshold
        self.start_percent = start_percent
        self.end_percent = end_percent
        self.verbose = verbose
        self.per_uuid = per_uuid
        self.start_sigma = 0.0
        self.end_sigma = 0.0
        self.reset()

    def fresh(self, model_sampling) -> "StepCache":
        c = StepCache(self.name, self.reuse_threshold, self.start_percent, self.end_percent, self.verbose,
                      self.per_uuid)
        c.start_sigma = model_sampling.percent_to_sigma(self.start_percent)
        c.end_sigma = model_sampling.percent_to_sigma(self.end_percent)
        return c

    def reset(self) -> None:
        self.rate = None  # output change / input change, last measured
        self.accumulated = 0.0  # estimated relative output change since the last real call
        self.prev_x = None  # subsampled input and output of the last real call
        self.prev_out = None
        self.prev_out_norm = None
        self.diffs: dict = {}  # output - input of the last real call (per uuid for EasyCache)
        self.first_uuid = None
        self.skip_this_step = False
        self.metadata = None
        self.skipped = 0

    # ------------------------------------------------------------------ decisions
    def past_end(self, sigma) -> bool:
        return not float(sigma[0]) > self.end_sigma

    def started(self, sigma) -> bool:
        return float(sigma[0]) <= self.start_sigma

    def check_input(self, x) -> None:
        """A new kind of input (shape, dtype, device) starts the cache afresh."""
        meta = (x.device, x.dtype, tuple(x.shape[1:] if self.per_uuid else x.shape))
        if self.metadata is not None and meta != self.metadata:
            log.warning("%s - tensor shape, dtype or device changed, resetting state", self.name)
            self.reset()
        self.metadata = meta

    def decide_skip(self, x_sub) -> tuple[bool, float | None]:
        """(skip this call?, input change) from the subsampled new input."""
        if self.prev_x is None:
            return False, None
        input_change = _mean_abs(x_sub - self.prev_x)
        if self.prev_out_norm is None or self.rate is None:
            return False, input_change
        self.accumulated += self.rate * input_change / self.prev_out_norm
        if self.accumulated < self.reuse_threshold:
            if self.verbose:
                log.info("%s [verbose] - skipping step; accumulated change %.4f < %s", self.name, self.accumulated,
                         self.reuse_threshold)
            return True, input_change
        if self.verbose:
            log.info("%s [verbose] - not skipping; accumulated change %.4f", self.name, self.accumulated)
        self.accumulated = 0.0
        return False, input_change

    def record(self, x_sub, out_sub, out, input_change) -> None:
        if self.prev_out is not None and input_change:
            self.rate = _mean_abs(out_sub - self.prev_out) / input_change
        self.prev_x = x_sub.clone()
        self.prev_out = out_sub.clone()
        self.prev_out_norm = _mean_abs(out)


def _sub(x):
    return x[..., ::SUBSAMPLE, ::SUBSAMPLE]


def _leading(x, like):
    """``x`` cut to ``like``'s shape from the start of each dimension past the batch (the noisy
    latent leads an input that has image channels concatenated)."""
    if x.shape[1:] == like.shape[1:]:
        return x
    return x[(slice(None),) + tuple(slice(0, s) for s in like.shape[1:])]


# -------------------------------------------------------------------------- wrappers
def _sample_wrapper(executor, *args, **kwargs):
    """Around outer_sample: a fresh cache for this run on a copy of the guider's options."""
    guider = executor.class_obj
    original = guider.model_options
    options = patcher_mod.copy_model_options(original)
    to = options["transformer_options"]
    cache = to["easycache"] = to["easycache"].fresh(guider.model_patcher.get_model_object("model_sampling"))
    guider.model_options = options
    log.info("%s enabled - threshold: %s, start_percent: %s, end_percent: %s", cache.name, cache.reuse_threshold,
             cache.start_percent, cache.end_percent)
    try:
        return executor(*args, **kwargs)
    finally:
        total = len(args[3]) - 1
        speedup = total / (total - cache.skipped) if total > cache.skipped else 1.0
        log.info("%s - skipped %d/%d steps (%.2fx speedup).", cache.name, cache.skipped, total, speedup)
        guider.model_options = original


def _calc_cond_batch_wrapper(executor, *args, **kwargs):
    args[-1]["transformer_options"]["easycache"].skip_this_step = False
    return executor(*args, **kwargs)


def _easycache_forward(executor, x, *args, transformer_options, **kwargs):
    """Around the network's forward: one batch of conditionings (``uuids``)."""
    cache: StepCache = transformer_options["easycache"]
    sigma, uuids = transformer_options["sigmas"], transformer_options["uuids"]
    if cache.past_end(sigma):
        return executor(x, *args, transformer_options=transformer_options, **kwargs)
    per = x.shape[0] // len(uuids)

    def first_chunk(t):
        i = uuids.index(cache.first_uuid)
        return t[i * per:(i + 1) * per]

    input_change = None
    leads = cache.first_uuid in uuids
    if cache.started(sigma):
        cache.check_input(x)
        leads = cache.first_uuid in uuids
        if cache.skip_this_step:  # the first conditioning decided for this whole step
            return _apply_diffs(cache, x, uuids, per)
        if cache.first_uuid is None:
            cache.first_uuid = uuids[0]
            leads = True
        if leads:
            skip, input_change = cache.decide_skip(_sub(first_chunk(x)))
            if skip:
                cache.skip_this_step = True
                return _apply_diffs(cache, x, uuids, per)
    out = executor(x, *args, transformer_options=transformer_options, **kwargs)
    diff = out - _leading(x, out)
    for i, u in enumerate(uuids):
        cache.diffs[u] = diff[i * per:(i + 1) * per]
    if leads:
        cache.record(_sub(first_chunk(x)), _sub(first_chunk(out)), out, input_change)
    return out


def _apply_diffs(cache: StepCache, x, uuids, per):
    if cache.first_uuid in uuids:
        cache.skipped += 1
    first = cache.diffs[uuids[0]]
    out = _leading(x, first).clone()
    for i, u in enumerate(uuids):
        out[i * per:(i + 1) * per] += cache.diffs[u].to(out.device)
    return out


def _lazycache_predict_noise(executor, x, timestep, model_options, seed=None):
    """Around the guided prediction of one step."""
    cache: StepCache = model_options["transformer_options"]["easycache"]
    if cache.past_end(timestep):
        return executor(x, timestep, model_options, seed)
    input_change = None
    if cache.started(timestep):
        cache.check_input(x)
        skip, input_change = cache.decide_skip(_sub(x))
        if skip:
            cache.skipped += 1
            return x + cache.diffs["all"].to(x.device)
    out = executor(x, timestep, model_options, seed)
    cache.diffs["all"] = out - x
    cache.record(_sub(x), _sub(out), out, input_change)
    return out


def _cache_inputs(what: str):
    f = {"min": 0.0, "max": 1.0, "step": 0.01}
    return {"required": {
        "model": ("MODEL", {"tooltip": f"The model to add {what} to."}),
        "reuse_threshold": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 3.0, "step": 0.01,
                                      "tooltip": "The threshold for reusing cached steps."}),
        "start_percent": ("FLOAT", {"default": 0.15, **f,
                                    "tooltip": f"The relative sampling step to begin use of {what}."}),
        "end_percent": ("FLOAT", {"default": 0.95, **f,
                                  "tooltip": f"The relative sampling step to end use of {what}."}),
        "verbose": ("BOOLEAN", {"default": False, "tooltip": "Whether to log verbose information."})}}


class EasyCache:
    DESCRIPTION = "Native EasyCache implementation."
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with EasyCache.",)
    FUNCTION = "patch"
    CATEGORY = "advanced/debug/model"

    @classmethod
    def INPUT_TYPES(cls):
        return _cache_inputs("EasyCache")

    def patch(self, model, reuse_threshold, start_percent, end_percent, verbose):
        m = model.clone()
        m.model_options["transformer_options"]["easycache"] = StepCache(
            "EasyCache", reuse_threshold, start_percent, end_percent, verbose, per_uuid=True)
        m.add_wrapper_with_key(wrappers.OUTER_SAMPLE, "easycache", _sample_wrapper)
        m.add_wrapper_with_key(wrappers.CALC_COND_BATCH, "easycache", _calc_cond_batch_wrapper)
        m.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, "easycache", _easycache_forward)
        return (m,)


class LazyCache:
    DESCRIPTION = ("A homebrew version of EasyCache - even 'easier' version of EasyCache to implement. Overall "
                   "works worse than EasyCache, but better in some rare cases AND universal compatibility with "
                   "everything in ComfyUI.")
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with LazyCache.",)
    FUNCTION = "patch"
    CATEGORY = "advanced/debug/model"

    @classmethod
    def INPUT_TYPES(cls):
        return _cache_inputs("LazyCache")

    def patch(self, model, reuse_threshold, start_percent, end_percent, verbose):
        m = model.clone()
        m.model_options["transformer_options"]["easycache"] = StepCache(
            "LazyCache", reuse_threshold, start_percent, end_percent, verbose, per_uuid=False)
        m.add_wrapper_with_key(wrappers.OUTER_SAMPLE, "lazycache", _sample_wrapper)
        m.add_wrapper_with_key(wrappers.PREDICT_NOISE, "lazycache", _lazycache_predict_noise)
        return (m,)


# -------------------------------------------------------------------------- torch.compile
COMPILE_KEY = "torch.compile"


class TorchCompileModel:
    """The diffusion model runs through ``torch.compile`` (compiled on its first call, again
    when input shapes change); the compiled module stands in for the network only during
    each model call, so weights, patches and offloading are untouched."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "backend": (["inductor", "cudagraphs"],)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    def patch(self, model, backend):
        m = model.clone()
        m.remove_wrappers_with_key(wrappers.APPLY_MODEL, COMPILE_KEY)
        compiled = torch.compile(model.get_model_object("diffusion_model"), backend=backend)

        def run_compiled(executor, *args, **kwargs):
            base_model = executor.class_obj
            network = base_model.diffusion_model
            base_model.diffusion_model = compiled
            try:
                return executor(*args, **kwargs)
            finally:
                base_model.diffusion_model = network

        m.add_wrapper_with_key(wrappers.APPLY_MODEL, COMPILE_KEY, run_compiled)
        m.model_options["torch_compile_kwargs"] = {"backend": backend, "options": None, "mode": None,
                                                   "fullgraph": False, "dynamic": None}
        return (m,)


NODE_CLASS_MAPPINGS = {
    "EasyCache": EasyCache,
    "LazyCache": LazyCache,
    "TorchCompileModel": TorchCompileModel,
}
