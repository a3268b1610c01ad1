"""Sampling nodes: KSampler, KSamplerAdvanced, the custom-sampling nodes (samplers,
schedulers, sigmas, guiders, noise) and the model-sampling patches (ModelSamplingDiscrete,
RescaleCFG). Algorithms live in ``comfyui.sampling``."""
from __future__ import annotations

from comfyui.sampling.names import SAMPLER_NAMES, SCHEDULER_NAMES

from ._image_utils import MAX_RESOLUTION
from ._lazy import lazy

torch = lazy("torch")
kd = lazy("comfyui.sampling.k_diffusion")
msmod = lazy("comfyui.sampling.model_sampling")
smp = lazy("comfyui.sampling.samplers")
_noise = lazy("comfyui.sampling.noise")
_preview = lazy("comfyui.sampling.preview")
_schedulers = lazy("comfyui.sampling.schedulers")

SEED_MAX = 0xffffffffffffffff


def _float(default, lo, hi, step=0.01, **extra):
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra})


# ----------------------------------------------------------------------------------------
# KSampler
# ----------------------------------------------------------------------------------------
class KSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                                 "tooltip": "The random seed used for creating the noise."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                                  "tooltip": "The number of steps used in the denoising process."}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "The Classifier-Free Guidance scale balances creativity and adherence "
                                             "to the prompt. Higher values result in images more closely matching "
                                             "the prompt however too high values will negatively impact quality."}),
                "sampler_name": (SAMPLER_NAMES, {"tooltip": "The algorithm used when sampling, this can affect "
                                                            "the quality, speed, and style of the generated output."}),
                "scheduler": (SCHEDULER_NAMES, {"tooltip": "The scheduler controls how noise is gradually removed to "
                                                           "form the image."}),
                "positive": ("CONDITIONING", {"tooltip": "The conditioning describing the attributes you want to "
                                                         "include in the image."}),
                "negative": ("CONDITIONING", {"tooltip": "The conditioning describing the attributes you want to "
                                                         "exclude from the image."}),
                "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "The amount of denoising applied, lower values will maintain the "
                                                 "structure of the initial image allowing for image to image sampling."}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"
    CATEGORY = "sampling"
    DESCRIPTION = "Uses the provided model, positive and negative conditioning to denoise the latent image."

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        return smp.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                                   denoise=denoise)


class KSamplerAdvanced:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "add_noise": (["enable", "disable"],),
                "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (SAMPLER_NAMES,),
                "scheduler": (SCHEDULER_NAMES,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
                "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
                "return_with_leftover_noise": (["disable", "enable"],),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0):
        force_full_denoise = return_with_leftover_noise != "enable"
        disable_noise = add_noise == "disable"
        return smp.common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                   latent_image, denoise=denoise, disable_noise=disable_noise,
                                   start_step=start_at_step, last_step=end_at_step,
                                   force_full_denoise=force_full_denoise)


# ----------------------------------------------------------------------------------------
# custom sampling
# ----------------------------------------------------------------------------------------
def _run_custom(model_patcher, latent, sigmas, run):
    latent = dict(latent)
    latent_image = smp.fix_empty_latent_channels(model_patcher, latent["samples"])
    latent["samples"] = latent_image
    noise_mask = latent.get("noise_mask")
    x0_output: dict = {}
    callback = _preview.prepare_callback(model_patcher, sigmas.shape[-1] - 1, x0_output)
    samples = run(latent, latent_image, noise_mask, callback)
    out = dict(latent)
    out["samples"] = samples
    if "x0" in x0_output:
        out_denoised = dict(latent)
        out_denoised["samples"] = smp.process_latent_out(model_patcher.model, x0_output["x0"].cpu())
    else:
        out_denoised = out
    return (out, out_denoised)


class SamplerCustom:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "add_noise": ("BOOLEAN", {"default": True}),
                "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "sampler": ("SAMPLER",),
                "sigmas": ("SIGMAS",),
                "latent_image": ("LATENT",),
            }
        }

    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = "sampling/custom_sampling"

    def sample(self, model, add_noise, noise_seed, cfg, positive, negative, sampler, sigmas, latent_image):
        def run(latent, latent_image, noise_mask, callback):
            noise = (_noise.Noise_RandomNoise(noise_seed) if add_noise else _noise.Noise_EmptyNoise()).generate_noise(latent)
            return smp.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image,
                                     noise_mask=noise_mask, callback=callback, seed=noise_seed)
        return _run_custom(model, latent_image, sigmas, run)


class SamplerCustomAdvanced:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "noise": ("NOISE",),
                "guider": ("GUIDER",),
                "sampler": ("SAMPLER",),
                "sigmas": ("SIGMAS",),
                "latent_image": ("LATENT",),
            }
        }

    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = "sampling/custom_sampling"

    def sample(self, noise, guider, sampler, sigmas, latent_image):
        def run(latent, latent_image, noise_mask, callback):
            samples = guider.sample(noise.generate_noise(latent), latent_image, sampler, sigmas,
                                    denoise_mask=noise_mask, callback=callback, seed=noise.seed)
            return samples.to(smp._intermediate_device())
        return _run_custom(guider.model_patcher, latent_image, sigmas, run)


class KSamplerSelect:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sampler_name": (SAMPLER_NAMES,)}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"

    def get_sampler(self, sampler_name):
        return (smp.sampler_object(sampler_name),)


class BasicScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "scheduler": (SCHEDULER_NAMES,),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, model, scheduler, steps, denoise):
        total_steps = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.FloatTensor([]),)
            total_steps = int(steps / denoise)
        sigmas = _schedulers.calculate_sigmas(smp.get_model_object(model, "model_sampling"), scheduler, total_steps).cpu()
        return (sigmas[-(steps + 1):],)


_SIGMA_MAX = ("FLOAT", {"default": 14.614642, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_SIGMA_MIN = ("FLOAT", {"default": 0.0291675, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})


class KarrasScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "sigma_max": _SIGMA_MAX,
                "sigma_min": _SIGMA_MIN,
                "rho": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        return (kd.get_sigmas_karras(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho),)


class ExponentialScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                             "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, steps, sigma_max, sigma_min):
        return (kd.get_sigmas_exponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max),)


class PolyexponentialScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "sigma_max": _SIGMA_MAX,
                "sigma_min": _SIGMA_MIN,
                "rho": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        return (kd.get_sigmas_polyexponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho),)


class SDTurboScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, model, steps, denoise):
        start_step = 10 - int(10 * denoise)
        timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start_step:start_step + steps]
        sigmas = smp.get_model_object(model, "model_sampling").sigma(timesteps)
        return (torch.cat([sigmas, sigmas.new_zeros([1])]),)


class BetaSamplingScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "alpha": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 50.0, "step": 0.01, "round": False}),
                "beta": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 50.0, "step": 0.01, "round": False}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, model, steps, alpha, beta):
        return (_schedulers.beta_scheduler(smp.get_model_object(model, "model_sampling"), steps, alpha=alpha, beta=beta),)


class VPScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "beta_d": ("FLOAT", {"default": 19.9, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}),
                "beta_min": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}),
                "eps_s": ("FLOAT", {"default": 0.001, "min": 0.0, "max": 1.0, "step": 0.0001, "round": False}),
            }
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, steps, beta_d, beta_min, eps_s):
        return (kd.get_sigmas_vp(n=steps, beta_d=beta_d, beta_min=beta_min, eps_s=eps_s),)


class SplitSigmas:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",), "step": ("INT", {"default": 0, "min": 0, "max": 10000})}}

    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/sigmas"

    def get_sigmas(self, sigmas, step):
        return (sigmas[:step + 1], sigmas[step:])


class SplitSigmasDenoise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/sigmas"

    def get_sigmas(self, sigmas, denoise):
        steps = max(sigmas.shape[-1] - 1, 0)
        total_steps = round(steps * denoise)
        return (sigmas[:-total_steps], sigmas[-(total_steps + 1):])


class FlipSigmas:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",)}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/sigmas"

    def get_sigmas(self, sigmas):
        if len(sigmas) == 0:
            return (sigmas,)
        sigmas = sigmas.flip(0)
        if sigmas[0] == 0:
            sigmas[0] = 0.0001
        return (sigmas,)


class RandomNoise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX,
                                                    "control_after_generate": True})}}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = "sampling/custom_sampling/noise"

    def get_noise(self, noise_seed):
        return (_noise.Noise_RandomNoise(noise_seed),)


class DisableNoise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = "sampling/custom_sampling/noise"

    def get_noise(self):
        return (_noise.Noise_EmptyNoise(),)


class BasicGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders"

    def get_guider(self, model, conditioning):
        guider = smp.Guider_Basic(model)
        guider.set_conds(conditioning)
        return (guider,)


class CFGGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            }
        }

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders"

    def get_guider(self, model, positive, negative, cfg):
        guider = smp.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return (guider,)


class DualCFGGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "cond1": ("CONDITIONING",),
                "cond2": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "cfg_conds": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "cfg_cond2_negative": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                                 "round": 0.01}),
                "style": (["regular", "nested"],),
            }
        }

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders"

    def get_guider(self, model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, style="regular"):
        guider = smp.Guider_DualCFG(model)
        guider.set_conds(cond1, cond2, negative)
        guider.set_cfg(cfg_conds, cfg_cond2_negative, nested=(style == "nested"))
        return (guider,)


# ----------------------------------------------------------------------------------------
# model patches
# ----------------------------------------------------------------------------------------
class ModelSamplingDiscrete:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "sampling": (["eps", "v_prediction", "lcm", "x0", "img_to_img"],),
                "zsnr": ("BOOLEAN", {"default": False}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, sampling, zsnr):
        m = model.clone()
        config = getattr(model.model, "model_config", None)
        ms = msmod.model_sampling(sampling, config, zsnr=zsnr)
        m.add_object_patch("model_sampling", ms)
        return (m,)


class ModelSamplingSD3:
    """Flow matching with SD3's timestep shift (sigma = shift*t / (1 + (shift-1)*t))."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, shift, multiplier=1000):
        m = model.clone()
        ms = msmod.flow_model_sampling(msmod.ModelSamplingDiscreteFlow, {"shift": shift, "multiplier": multiplier})
        m.add_object_patch("model_sampling", ms)
        return (m,)


class ModelSamplingAuraFlow(ModelSamplingSD3):
    """SD3's flow schedule with the timestep input = sigma (AuraFlow, Lumina 2, Z-Image)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 1.73, "min": 0.0, "max": 100.0, "step": 0.01})}}

    FUNCTION = "patch_aura"

    def patch_aura(self, model, shift):
        return self.patch(model, shift, multiplier=1.0)


class ModelSamplingFlux:
    """Flux's flow schedule with the shift set from the image size (base_shift at 256 latent
    patches, max_shift at 4096)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "max_shift": ("FLOAT", {"default": 1.15, "min": 0.0, "max": 100.0, "step": 0.01}),
                             "base_shift": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01}),
                             "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, max_shift, base_shift, width, height):
        m = model.clone()
        shift = msmod.flux_shift_for_size(width, height, base_shift, max_shift)
        m.add_object_patch("model_sampling", msmod.flow_model_sampling(msmod.ModelSamplingFlux, {"shift": shift}))
        return (m,)


class RescaleCFG:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "multiplier": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, multiplier):
        def rescale_cfg(args):
            cond = args["cond"]
            uncond = args["uncond"]
            cond_scale = args["cond_scale"]
            sigma = args["sigma"]
            sigma = sigma.view(sigma.shape[:1] + (1,) * (cond.ndim - 1))
            x_orig = args["input"]
            # work on the v-prediction view of the outputs
            x = x_orig / (sigma * sigma + 1.0)
            cond = ((x - (x_orig - cond)) * (sigma ** 2 + 1.0) ** 0.5) / sigma
            uncond = ((x - (x_orig - uncond)) * (sigma ** 2 + 1.0) ** 0.5) / sigma
            x_cfg = uncond + cond_scale * (cond - uncond)
            dims = tuple(range(1, cond.ndim))
            ro_pos = torch.std(cond, dim=dims, keepdim=True)
            ro_cfg = torch.std(x_cfg, dim=dims, keepdim=True)
            x_rescaled = x_cfg * (ro_pos / ro_cfg)
            x_final = multiplier * x_rescaled + (1.0 - multiplier) * x_cfg
            return x_orig - (x - x_final * sigma / (sigma * sigma + 1.0) ** 0.5)

        m = model.clone()
        m.set_model_sampler_cfg_function(rescale_cfg)
        return (m,)


NODE_CLASS_MAPPINGS = {
    "KSampler": KSampler,
    "KSamplerAdvanced": KSamplerAdvanced,
    "SamplerCustom": SamplerCustom,
    "SamplerCustomAdvanced": SamplerCustomAdvanced,
    "KSamplerSelect": KSamplerSelect,
    "BasicScheduler": BasicScheduler,
    "KarrasScheduler": KarrasScheduler,
    "ExponentialScheduler": ExponentialScheduler,
    "PolyexponentialScheduler": PolyexponentialScheduler,
    "SDTurboScheduler": SDTurboScheduler,
    "BetaSamplingScheduler": BetaSamplingScheduler,
    "VPScheduler": VPScheduler,
    "SplitSigmas": SplitSigmas,
    "SplitSigmasDenoise": SplitSigmasDenoise,
    "FlipSigmas": FlipSigmas,
    "RandomNoise": RandomNoise,
    "DisableNoise": DisableNoise,
    "BasicGuider": BasicGuider,
    "CFGGuider": CFGGuider,
    "DualCFGGuider": DualCFGGuider,
    "ModelSamplingDiscrete": ModelSamplingDiscrete,
    "ModelSamplingSD3": ModelSamplingSD3,
    "ModelSamplingAuraFlow": ModelSamplingAuraFlow,
    "ModelSamplingFlux": ModelSamplingFlux,
    "RescaleCFG": RescaleCFG,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "KSampler": "KSampler",
    "KSamplerAdvanced": "KSampler (Advanced)",
}
