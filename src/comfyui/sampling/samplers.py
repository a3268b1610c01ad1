"""The sampling pipeline: sampler objects, guiders (CFG), KSampler and the helpers the
sampling nodes call (``common_ksampler``, ``sample``, ``sample_custom``).

The MODEL is a ModelPatcher-like object from ``comfyui.models``:
``.model`` (BaseModel: ``model_sampling``, ``latent_format``, ``apply_model(x, sigma, **c)``
returning the denoised x0, optional ``extra_conds``/``process_latent_in``/``memory_required``),
``.model_options`` (``sampler_cfg_function``, ``sampler_post_cfg_function``,
``model_function_wrapper``, ``transformer_options``), ``.load_device`` and optionally
``.get_model_object(name)`` / ``.object_patches``. It is loaded with
``comfyui.models.memory.load_models_gpu`` when it looks like a real patcher.
"""
from __future__ import annotations

import abc
import contextlib
import math
from typing import Any, Callable

import torch

from comfyui.engine.progress import throw_if_interrupted
from comfyui.models.wrappers import OUTER_SAMPLE, PREDICT_NOISE, call_wrapped

from . import k_diffusion as kd
from .conditioning import (calc_cond_batch, cfg_function, convert_cond, process_conds, repeat_to_batch_size,
                           sampling_function)
# re-exported for ``comfy.samplers`` compatibility (custom nodes use these names)
from .conditioning import (can_concat_cond, cond_cat, create_cond_with_same_area_if_none,  # noqa: F401
                           encode_model_conds, get_area_and_mult, calculate_start_end_timesteps,
                           resolve_areas_and_cond_masks, apply_empty_x_to_equal_area)
from .names import KSAMPLER_NAMES, SAMPLER_NAMES  # one definition, torch-free (the nodes read it)
from .schedulers import SCHEDULER_NAMES, calculate_sigmas
from .schedulers import (SCHEDULER_HANDLERS, SchedulerHandler, beta_scheduler, ddim_scheduler,  # noqa: F401
                         kl_optimal_scheduler, linear_quadratic_schedule, normal_scheduler, simple_scheduler)

resolve_areas_and_cond_masks_multidim = resolve_areas_and_cond_masks

DISCARD_PENULTIMATE_SIGMA_SAMPLERS = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}

__all__ = ["KSAMPLER_NAMES", "SAMPLER_NAMES", "SCHEDULER_NAMES", "calculate_sigmas", "KSAMPLER", "ksampler",
           "sampler_object", "CFGGuider", "KSampler", "sample", "sample_custom", "common_ksampler",
           "prepare_noise", "calc_cond_batch", "cfg_function", "sampling_function"]

from .noise import prepare_noise  # noqa: E402  (re-export)


# ----------------------------------------------------------------------------------------
# model helpers
# ----------------------------------------------------------------------------------------
def get_model_object(patcher: Any, name: str):
    fn = getattr(patcher, "get_model_object", None)
    if fn is not None:
        return fn(name)
    patches = getattr(patcher, "object_patches", None) or {}
    if name in patches:
        return patches[name]
    return getattr(patcher.model, name)


def process_latent_in(model, latent):
    fn = getattr(model, "process_latent_in", None)
    if fn is not None:
        return fn(latent)
    lf = getattr(model, "latent_format", None)
    return lf.process_in(latent) if lf is not None else latent


def process_latent_out(model, latent):
    fn = getattr(model, "process_latent_out", None)
    if fn is not None:
        return fn(latent)
    lf = getattr(model, "latent_format", None)
    return lf.process_out(latent) if lf is not None else latent


def fix_empty_latent_channels(patcher, latent_image: torch.Tensor) -> torch.Tensor:
    """An all-zero latent with the wrong channel count becomes zeros with the model's; an
    all-zero image latent [B,C,H,W] for a video model (latent_dimensions 3) gets a time axis of
    one frame."""
    lf = getattr(getattr(patcher, "model", None), "latent_format", None)
    channels = getattr(lf, "latent_channels", None)
    if lf is None or torch.count_nonzero(latent_image) != 0:
        return latent_image
    if channels is not None and latent_image.shape[1] != channels:
        shape = list(latent_image.shape)
        shape[1] = channels
        latent_image = torch.zeros(shape, dtype=latent_image.dtype, device=latent_image.device)
    if getattr(lf, "latent_dimensions", 2) == 3 and latent_image.ndim == 4:
        latent_image = latent_image.unsqueeze(2)
    return latent_image


def prepare_mask(noise_mask: torch.Tensor, shape, device) -> torch.Tensor:
    """Resize a noise mask ([B,H,W] / [B,1,H,W] / [H,W]) to the latent's shape.

    For a video latent [B,C,T,H,W] the mask's first dimension is time: its N frames are
    stretched over the T latent frames (trilinear), so one frame applies to all of them; a
    5-D mask [B,1,T',H',W'] is resized as it is."""
    dims = len(shape) - 2
    if dims == 3:
        mask = noise_mask.float()
        if mask.ndim < 5:
            mask = mask.reshape((1, 1, -1, mask.shape[-2], mask.shape[-1]))
        mask = torch.nn.functional.interpolate(mask, size=tuple(shape[2:]), mode="trilinear")
    else:
        mask = noise_mask.reshape((-1, 1, noise_mask.shape[-2], noise_mask.shape[-1])).float()
        mask = torch.nn.functional.interpolate(mask, size=tuple(shape[2:]), mode="bilinear")
    if mask.shape[1] < shape[1]:
        mask = mask.repeat((1, shape[1]) + (1,) * dims)[:, :shape[1]]
    mask = repeat_to_batch_size(mask, shape[0])
    return mask.to(device)


def _looks_like_patcher(obj) -> bool:
    return hasattr(obj, "model_size") and hasattr(obj, "patch_model")


def prepare_sampling(patcher, noise_shape, conds, model_options=None):
    """Load the model (and models the conds reference, e.g. ControlNets, and those of the
    model's transformer patches, e.g. a model patch's network) on its device."""
    models = [patcher]
    for k in conds:
        for c in conds[k]:
            ctrl = c.get("control")
            if ctrl is not None and hasattr(ctrl, "get_models"):
                models += list(ctrl.get_models())
    options = model_options if model_options is not None else getattr(patcher, "model_options", {})
    for patch_list in options.get("transformer_options", {}).get("patches", {}).values():
        models += [m for p in patch_list if hasattr(p, "models") for m in p.models()]
    real = [m for m in models if _looks_like_patcher(m)]
    if real:
        from comfyui.models import memory
        inner = patcher.model
        mem = 0
        if hasattr(inner, "memory_required"):
            shape = [noise_shape[0] * 2] + list(noise_shape[1:])
            mem = int(inner.memory_required(shape))
        memory.load_models_gpu(real, memory_required=mem)
    return real


def _register_cond_hooks(patcher, conds: dict) -> bool:
    """Register the weight hooks attached to the conds on the (loaded) model patcher, which
    ``calc_cond_batch`` then reaches as ``model.current_patcher``. False when there are none."""
    from comfyui.models import hooks as hooks_mod
    group = hooks_mod.hooks_in_conds(conds)
    if len(group) == 0:
        return False
    if not hasattr(patcher, "register_hooks"):
        raise ValueError("conditioning hooks need a model loaded by a checkpoint or model loader")
    patcher.register_hooks(group, hooks_mod.EnumWeightTarget.Model)
    patcher.model.current_patcher = patcher
    return True


@contextlib.contextmanager
def _object_patches_applied(patcher):
    """Make sure the BaseModel uses the patcher's ``model_sampling`` object patch while
    sampling (in case the patcher did not apply object patches itself)."""
    model = patcher.model
    patched = (getattr(patcher, "object_patches", None) or {}).get("model_sampling")
    if patched is None or getattr(model, "model_sampling", None) is patched:
        yield
        return
    old = model.model_sampling
    model.model_sampling = patched
    try:
        yield
    finally:
        model.model_sampling = old


# ----------------------------------------------------------------------------------------
# sampler objects
# ----------------------------------------------------------------------------------------
class KSamplerX0Inpaint:
    """Wraps the guider: blends the known (unmasked) region with the noised original at
    every model call and restores it in the output (``noise_mask`` inpainting)."""

    def __init__(self, model, sigmas):
        self.inner_model = model
        self.sigmas = sigmas
        self.noise = None
        self.latent_image = None

    def __call__(self, x, sigma, denoise_mask=None, model_options=None, seed=None):
        model_options = model_options or {}
        throw_if_interrupted()
        if denoise_mask is not None:
            if "denoise_mask_function" in model_options:
                denoise_mask = model_options["denoise_mask_function"](
                    sigma, denoise_mask, extra_options={"model": self.inner_model, "sigmas": self.sigmas})
            latent_mask = 1.0 - denoise_mask
            base = self.inner_model.inner_model
            ms = base.model_sampling
            keep = getattr(base, "scale_latent_inpaint", None)  # Wan 2.2, LTXV: the kept frames stay clean
            noised = keep(sigma=sigma, noise=self.noise, latent_image=self.latent_image) if keep is not None else \
                ms.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1)), self.noise,
                                 self.latent_image)
            x = x * denoise_mask + noised * latent_mask
        out = self.inner_model(x, sigma, model_options=model_options, seed=seed)
        if denoise_mask is not None:
            out = out * denoise_mask + self.latent_image * latent_mask
        return out


class Sampler(abc.ABC):
    """Base of SAMPLER values (custom nodes subclass it, as in ComfyUI)."""

    def max_denoise(self, model_wrap, sigmas) -> bool:
        max_sigma = float(model_wrap.inner_model.model_sampling.sigma_max)
        sigma = float(sigmas[0])
        return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma

    @abc.abstractmethod
    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        """Run the sampler; returns the final latent (model space)."""


class KSAMPLER(Sampler):
    """A SAMPLER value: a k-diffusion style function plus its options."""

    def __init__(self, sampler_function: Callable, extra_options: dict | None = None,
                 inpaint_options: dict | None = None):
        self.sampler_function = sampler_function
        self.extra_options = dict(extra_options or {})
        self.inpaint_options = dict(inpaint_options or {})

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        extra_args["denoise_mask"] = denoise_mask
        model_k = KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image = latent_image
        if self.inpaint_options.get("random", False):
            seed = extra_args.get("seed")
            generator = torch.manual_seed((41 if seed is None else int(seed)) + 1)
            model_k.noise = torch.randn(noise.shape, generator=generator, device="cpu").to(noise.dtype).to(noise.device)
        else:
            model_k.noise = noise
        ms = model_wrap.inner_model.model_sampling
        noise = ms.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        total_steps = len(sigmas) - 1

        def k_callback(d):
            callback(d["i"], d["denoised"], d["x"], total_steps)

        samples = self.sampler_function(model_k, noise, sigmas, extra_args=extra_args,
                                        callback=k_callback if callback is not None else None,
                                        disable=disable_pbar, **self.extra_options)
        return ms.inverse_noise_scaling(sigmas[-1], samples)


def _wrap_dpm_fast(model, noise, sigmas, extra_args=None, callback=None, disable=None, **options):
    if len(sigmas) <= 1:
        return noise
    sigma_min = sigmas[-1]
    if sigma_min == 0:
        sigma_min = sigmas[-2]
    return kd.sample_dpm_fast(model, noise, sigma_min, sigmas[0], len(sigmas) - 1, extra_args=extra_args,
                              callback=callback, disable=disable, **options)


def _wrap_dpm_adaptive(model, noise, sigmas, extra_args=None, callback=None, disable=None, **options):
    if len(sigmas) <= 1:
        return noise
    sigma_min = sigmas[-1]
    if sigma_min == 0:
        sigma_min = sigmas[-2]
    return kd.sample_dpm_adaptive(model, noise, sigma_min, sigmas[0], extra_args=extra_args, callback=callback,
                                  disable=disable, **options)


def get_sampler_function(name: str) -> Callable:
    if name == "dpm_fast":
        return _wrap_dpm_fast
    if name == "dpm_adaptive":
        return _wrap_dpm_adaptive
    fn = getattr(kd, f"sample_{name}", None)
    if fn is None:
        raise ValueError(f"unknown sampler {name!r}")
    return fn


def ksampler(sampler_name: str, extra_options: dict | None = None, inpaint_options: dict | None = None) -> KSAMPLER:
    return KSAMPLER(get_sampler_function(sampler_name), extra_options, inpaint_options)


def sampler_object(name: str) -> KSAMPLER:
    if name == "uni_pc":
        return KSAMPLER(kd.sample_unipc)
    if name == "uni_pc_bh2":
        return KSAMPLER(kd.sample_unipc_bh2)
    if name == "ddim":
        return ksampler("euler", inpaint_options={"random": True})
    # names custom nodes add come with a ``k_diffusion.sample_<name>`` function
    return ksampler(name)


# ----------------------------------------------------------------------------------------
# guiders
# ----------------------------------------------------------------------------------------
class CFGGuider:
    """A GUIDER value: model + conds + cfg; ``sample(noise, latent, sampler, sigmas, ...)``."""

    def __init__(self, model_patcher):
        self.model_patcher = model_patcher
        self.model_options = getattr(model_patcher, "model_options", None) or {}
        self.original_conds: dict[str, list] = {}
        self.cfg = 1.0
        self.inner_model = None
        self.conds: dict[str, list] = {}

    def set_conds(self, positive, negative):
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg):
        self.cfg = cfg

    def inner_set_conds(self, conds: dict):
        for k, v in conds.items():
            self.original_conds[k] = convert_cond(v)

    def __call__(self, x, timestep, model_options=None, seed=None):
        to = (model_options or {}).get("transformer_options")
        return call_wrapped(PREDICT_NOISE, to, self.predict_noise, self, x, timestep, model_options, seed)

    def predict_noise(self, x, timestep, model_options=None, seed=None):
        return sampling_function(self.inner_model, x, timestep, self.conds.get("negative"),
                                 self.conds.get("positive"), self.cfg, model_options=model_options, seed=seed)

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed):
        if latent_image is not None and torch.count_nonzero(latent_image) > 0:
            latent_image = process_latent_in(self.inner_model, latent_image)
        self.conds = process_conds(self.inner_model, noise, self.conds, device, latent_image, denoise_mask, seed)
        model_options = dict(self.model_options)
        to = dict(model_options.get("transformer_options", {}))
        to["sample_sigmas"] = sigmas
        model_options["transformer_options"] = to
        extra_args = {"model_options": model_options, "seed": seed}
        samples = sampler.sample(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        return process_latent_out(self.inner_model, samples.to(torch.float32))

    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None):
        prepare_sampling(self.model_patcher, noise.shape, self.conds, self.model_options)
        self.inner_model = self.model_patcher.model
        hooked = _register_cond_hooks(self.model_patcher, self.conds)
        device = getattr(self.model_patcher, "load_device", None) or torch.device("cpu")
        if denoise_mask is not None:
            denoise_mask = prepare_mask(denoise_mask, noise.shape, device)
        noise = noise.to(device=device, dtype=torch.float32)
        latent_image = latent_image.to(device=device, dtype=torch.float32)
        sigmas = sigmas.to(device)
        try:
            with _object_patches_applied(self.model_patcher):
                return self.inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback,
                                         disable_pbar, seed)
        finally:
            for k in self.conds:
                for c in self.conds[k]:
                    ctrl = c.get("control")
                    if ctrl is not None and hasattr(ctrl, "cleanup"):
                        ctrl.cleanup()
            if hooked:
                self.model_patcher.clear_hooks()
                self.inner_model.current_patcher = None
            self.inner_model = None

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        if sigmas.shape[-1] == 0:
            return latent_image
        self.conds = {k: [dict(c) for c in v] for k, v in self.original_conds.items()}
        try:
            return call_wrapped(OUTER_SAMPLE, self.model_options.get("transformer_options"), self.outer_sample, self,
                                noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
        finally:
            self.conds = {}


class Guider_Basic(CFGGuider):
    """No guidance: only the positive conditioning."""

    def set_conds(self, positive):
        self.inner_set_conds({"positive": positive})


class Guider_DualCFG(CFGGuider):
    """Two positive conds: cfg_conds between cond1 and cond2, cfg_cond2_negative between
    cond2 and the negative ("regular"), or nested guidance ("nested")."""

    def set_cfg(self, cfg1, cfg2, nested=False):
        self.cfg1 = cfg1
        self.cfg2 = cfg2
        self.nested = nested

    def set_conds(self, positive, middle, negative):
        middle = [[c[0], {**c[1], "prompt_type": "negative"}] for c in middle]
        self.inner_set_conds({"positive": positive, "middle": middle, "negative": negative})

    def predict_noise(self, x, timestep, model_options=None, seed=None):
        model_options = model_options or {}
        negative = self.conds.get("negative")
        middle = self.conds.get("middle")
        positive = self.conds.get("positive")
        if self.nested:
            out = calc_cond_batch(self.inner_model, [negative, middle, positive], x, timestep, model_options)
            pred_text = cfg_function(self.inner_model, out[2], out[1], self.cfg1, x, timestep,
                                     model_options=model_options, cond=positive, uncond=middle)
            return out[0] + self.cfg2 * (pred_text - out[0])
        if not model_options.get("disable_cfg1_optimization", False):
            if math.isclose(self.cfg2, 1.0):
                negative = None
                if math.isclose(self.cfg1, 1.0):
                    middle = None
        out = calc_cond_batch(self.inner_model, [negative, middle, positive], x, timestep, model_options)
        return cfg_function(self.inner_model, out[1], out[0], self.cfg2, x, timestep, model_options=model_options,
                            cond=middle, uncond=negative) + (out[2] - out[1]) * self.cfg1


# ----------------------------------------------------------------------------------------
# KSampler
# ----------------------------------------------------------------------------------------
class KSampler:
    SCHEDULERS = SCHEDULER_NAMES
    SAMPLERS = SAMPLER_NAMES
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = DISCARD_PENULTIMATE_SIGMA_SAMPLERS

    def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options=None):
        self.model = model
        self.device = device
        if scheduler not in self.SCHEDULERS:
            scheduler = self.SCHEDULERS[0]
        if sampler not in self.SAMPLERS:
            sampler = self.SAMPLERS[0]
        self.scheduler = scheduler
        self.sampler = sampler
        self.model_options = model_options if model_options is not None else getattr(model, "model_options", {})
        self.set_steps(steps, denoise)
        self.denoise = denoise

    def calculate_sigmas(self, steps: int) -> torch.Tensor:
        discard_penultimate = self.sampler in self.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
        if discard_penultimate:
            steps += 1
        sigmas = calculate_sigmas(get_model_object(self.model, "model_sampling"), self.scheduler, steps)
        if discard_penultimate:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas

    def set_steps(self, steps: int, denoise=None):
        self.steps = steps
        if denoise is None or denoise > 0.9999:
            self.sigmas = self.calculate_sigmas(steps)
        elif denoise <= 0.0:
            self.sigmas = torch.FloatTensor([])
        else:
            new_steps = int(steps / denoise)
            self.sigmas = self.calculate_sigmas(new_steps)[-(steps + 1):]

    def sample(self, noise, positive, negative, cfg, latent_image=None, start_step=None, last_step=None,
               force_full_denoise=False, denoise_mask=None, sigmas=None, callback=None, disable_pbar=False,
               seed=None):
        if sigmas is None:
            sigmas = self.sigmas
        if last_step is not None and last_step < (len(sigmas) - 1):
            sigmas = sigmas[:last_step + 1].clone()
            if force_full_denoise:
                sigmas[-1] = 0
        if start_step is not None:
            if start_step < (len(sigmas) - 1):
                sigmas = sigmas[start_step:]
            else:
                return latent_image if latent_image is not None else torch.zeros_like(noise)
        return sample(self.model, noise, positive, negative, cfg, self.device, sampler_object(self.sampler), sigmas,
                      self.model_options, latent_image=latent_image, denoise_mask=denoise_mask, callback=callback,
                      disable_pbar=disable_pbar, seed=seed)


def sample(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options=None, latent_image=None,
           denoise_mask=None, callback=None, disable_pbar=False, seed=None):
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)


def _intermediate_device():
    try:
        from comfyui.models import memory
        return memory.intermediate_device()
    except Exception:
        return torch.device("cpu")


def sample_with_ksampler(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                         denoise=1.0, disable_noise=False, start_step=None, last_step=None, force_full_denoise=False,
                         noise_mask=None, sigmas=None, callback=None, disable_pbar=False, seed=None):
    """ComfyUI's ``comfy.sample.sample``."""
    device = getattr(model, "load_device", None) or torch.device("cpu")
    ks = KSampler(model, steps=steps, device=device, sampler=sampler_name, scheduler=scheduler, denoise=denoise,
                  model_options=getattr(model, "model_options", {}))
    samples = ks.sample(noise, positive, negative, cfg=cfg, latent_image=latent_image, start_step=start_step,
                        last_step=last_step, force_full_denoise=force_full_denoise, denoise_mask=noise_mask,
                        sigmas=sigmas, callback=callback, disable_pbar=disable_pbar, seed=seed)
    return samples.to(_intermediate_device())


def sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image, noise_mask=None,
                  callback=None, disable_pbar=False, seed=None):
    device = getattr(model, "load_device", None) or torch.device("cpu")
    samples = sample(model, noise, positive, negative, cfg, device, sampler, sigmas,
                     model_options=getattr(model, "model_options", {}), latent_image=latent_image,
                     denoise_mask=noise_mask, callback=callback, disable_pbar=disable_pbar, seed=seed)
    return samples.to(_intermediate_device())


def common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0,
                    disable_noise=False, start_step=None, last_step=None, force_full_denoise=False):
    """What the KSampler / KSamplerAdvanced nodes run."""
    from .preview import prepare_callback

    latent_image = fix_empty_latent_channels(model, latent["samples"])
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")
    else:
        noise = prepare_noise(latent_image, seed, latent.get("batch_index"))
    noise_mask = latent.get("noise_mask")
    callback = prepare_callback(model, steps)
    samples = sample_with_ksampler(model, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                   latent_image, denoise=denoise, disable_noise=disable_noise, start_step=start_step,
                                   last_step=last_step, force_full_denoise=force_full_denoise, noise_mask=noise_mask,
                                   callback=callback, seed=seed)
    out = dict(latent)
    out["samples"] = samples
    return (out,)
