"""The rest of ComfyUI's custom-sampling nodes (``nodes_custom_sampler``; the common ones live
in ``sampling``): sampler objects with their options, the Laplace scheduler, sigma edits,
AddNoise; the table schedulers (``nodes_align_your_steps``, ``nodes_gits``,
``nodes_optimalsteps``) and ``nodes_advanced_samplers`` (SamplerLCMUpscale,
SamplerEulerCFGpp). Algorithms live in ``comfyui.sampling``."""
from __future__ import annotations

import math

from ._lazy import lazy

torch = lazy("torch")
kd = lazy("comfyui.sampling.k_diffusion")
smp = lazy("comfyui.sampling.samplers")
_extra = lazy("comfyui.sampling.extra_samplers")
_tables = lazy("comfyui.sampling.step_tables")
_latent = lazy("comfyui.nodes.builtin.latent")

SAMPLERS = "sampling/custom_sampling/samplers"
SCHEDULERS = "sampling/custom_sampling/schedulers"
SIGMAS = "sampling/custom_sampling/sigmas"


def _f(default, lo, hi, step=0.01, rnd=False, **extra):
    spec = {"default": default, "min": lo, "max": hi, "step": step}
    if rnd is not None:
        spec["round"] = rnd
    return ("FLOAT", {**spec, **extra})


_ETA = _f(1.0, 0.0, 100.0)
_S_NOISE = _f(1.0, 0.0, 100.0)
_NOISE_DEVICE = (["gpu", "cpu"],)


class _SamplerNode:
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = SAMPLERS


# ----------------------------------------------------------------------------------------
# sampler objects
# ----------------------------------------------------------------------------------------
class SamplerEulerAncestral(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE}}

    def get_sampler(self, eta, s_noise):
        return (smp.ksampler("euler_ancestral", {"eta": eta, "s_noise": s_noise}),)


class SamplerEulerAncestralCFGPP(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _f(1.0, 0.0, 1.0), "s_noise": _f(1.0, 0.0, 10.0)}}

    def get_sampler(self, eta, s_noise):
        return (smp.ksampler("euler_ancestral_cfg_pp", {"eta": eta, "s_noise": s_noise}),)


class SamplerLMS(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"order": ("INT", {"default": 4, "min": 1, "max": 100})}}

    def get_sampler(self, order):
        return (smp.ksampler("lms", {"order": order}),)


class SamplerDPMPP_3M_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE, "noise_device": _NOISE_DEVICE}}

    def get_sampler(self, eta, s_noise, noise_device):
        name = "dpmpp_3m_sde" if noise_device == "cpu" else "dpmpp_3m_sde_gpu"
        return (smp.ksampler(name, {"eta": eta, "s_noise": s_noise}),)


class SamplerDPMPP_2M_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"solver_type": (["midpoint", "heun"],), "eta": _ETA, "s_noise": _S_NOISE,
                             "noise_device": _NOISE_DEVICE}}

    def get_sampler(self, solver_type, eta, s_noise, noise_device):
        name = "dpmpp_2m_sde" if noise_device == "cpu" else "dpmpp_2m_sde_gpu"
        return (smp.ksampler(name, {"eta": eta, "s_noise": s_noise, "solver_type": solver_type}),)


class SamplerDPMPP_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE, "r": _f(0.5, 0.0, 100.0),
                             "noise_device": _NOISE_DEVICE}}

    def get_sampler(self, eta, s_noise, r, noise_device):
        name = "dpmpp_sde" if noise_device == "cpu" else "dpmpp_sde_gpu"
        return (smp.ksampler(name, {"eta": eta, "s_noise": s_noise, "r": r}),)


class SamplerDPMPP_2S_Ancestral(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE}}

    def get_sampler(self, eta, s_noise):
        return (smp.ksampler("dpmpp_2s_ancestral", {"eta": eta, "s_noise": s_noise}),)


class SamplerDPMAdaptative(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "order": ("INT", {"default": 3, "min": 2, "max": 3}),
            "rtol": _f(0.05, 0.0, 100.0),
            "atol": _f(0.0078, 0.0, 100.0),
            "h_init": _f(0.05, 0.0, 100.0),
            "pcoeff": _f(0.0, 0.0, 100.0),
            "icoeff": _f(1.0, 0.0, 100.0),
            "dcoeff": _f(0.0, 0.0, 100.0),
            "accept_safety": _f(0.81, 0.0, 100.0),
            "eta": _f(0.0, 0.0, 100.0),
            "s_noise": _S_NOISE,
        }}

    def get_sampler(self, order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise):
        return (smp.ksampler("dpm_adaptive", {"order": order, "rtol": rtol, "atol": atol, "h_init": h_init,
                                              "pcoeff": pcoeff, "icoeff": icoeff, "dcoeff": dcoeff,
                                              "accept_safety": accept_safety, "eta": eta, "s_noise": s_noise}),)


class SamplerER_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "solver_type": (["ER-SDE", "Reverse-time SDE", "ODE"],),
            "max_stage": ("INT", {"default": 3, "min": 1, "max": 3}),
            "eta": _f(1.0, 0.0, 100.0, tooltip="Stochastic strength of reverse-time SDE.\nWhen eta=0, it reduces to "
                                               "deterministic ODE. This setting doesn't apply to ER-SDE solver type."),
            "s_noise": _S_NOISE,
        }}

    def get_sampler(self, solver_type, max_stage, eta, s_noise):
        if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
            eta, s_noise = 0, 0
        noise_scaler = None  # ER-SDE: sample_er_sde's own noise scaler
        if solver_type != "ER-SDE":
            def noise_scaler(x):
                return x ** (eta + 1)
        return (smp.ksampler("er_sde", {"s_noise": s_noise, "noise_scaler": noise_scaler, "max_stage": max_stage}),)


class SamplerSASolver(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "eta": _f(1.0, 0.0, 10.0),
            "sde_start_percent": _f(0.2, 0.0, 1.0, step=0.001, rnd=None),
            "sde_end_percent": _f(0.8, 0.0, 1.0, step=0.001, rnd=None),
            "s_noise": _S_NOISE,
            "predictor_order": ("INT", {"default": 3, "min": 1, "max": 6}),
            "corrector_order": ("INT", {"default": 4, "min": 0, "max": 6}),
            "use_pece": ("BOOLEAN", {}),
            "simple_order_2": ("BOOLEAN", {}),
        }}

    def get_sampler(self, model, eta, sde_start_percent, sde_end_percent, s_noise, predictor_order,
                    corrector_order, use_pece, simple_order_2):
        ms = smp.get_model_object(model, "model_sampling")
        tau = kd.sa_tau_interval(ms.percent_to_sigma(sde_start_percent), ms.percent_to_sigma(sde_end_percent),
                                 eta=eta)
        return (smp.ksampler("sa_solver", {"tau_func": tau, "s_noise": s_noise, "predictor_order": predictor_order,
                                           "corrector_order": corrector_order, "use_pece": use_pece,
                                           "simple_order_2": simple_order_2}),)


class SamplerLCMUpscale(_SamplerNode):
    UPSCALE_METHODS = ["bislerp", "nearest-exact", "bilinear", "area", "bicubic"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "scale_ratio": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 20.0, "step": 0.01}),
            "scale_steps": ("INT", {"default": -1, "min": -1, "max": 1000, "step": 1}),
            "upscale_method": (cls.UPSCALE_METHODS,),
        }}

    def get_sampler(self, scale_ratio, scale_steps, upscale_method):
        def resize(x, width, height, method):
            return _latent.upscale_latent(x, width, height, method, "disabled")

        options = {"total_upscale": scale_ratio, "upscale_steps": None if scale_steps < 0 else scale_steps,
                   "upscale_method": upscale_method, "resize": resize}
        return (smp.KSAMPLER(_extra.sample_lcm_upscale, extra_options=options),)


class SamplerEulerCFGpp(_SamplerNode):
    EXPERIMENTAL = True
    CATEGORY = "_for_testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"version": (["regular", "alternative"],)}}

    def get_sampler(self, version):
        if version == "alternative":
            return (smp.KSAMPLER(_extra.sample_euler_pp),)
        return (smp.ksampler("euler_cfg_pp"),)


# ----------------------------------------------------------------------------------------
# schedulers
# ----------------------------------------------------------------------------------------
class LaplaceScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "sigma_max": _f(14.614642, 0.0, 5000.0),
            "sigma_min": _f(0.0291675, 0.0, 5000.0),
            "mu": _f(0.0, -10.0, 10.0, step=0.1),
            "beta": _f(0.5, 0.0, 10.0, step=0.1),
        }}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = SCHEDULERS

    def get_sigmas(self, steps, sigma_max, sigma_min, mu, beta):
        return (kd.get_sigmas_laplace(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, mu=mu, beta=beta),)


def _denoise():
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})


class AlignYourStepsScheduler:
    """NVIDIA's Align Your Steps 10-step schedules, log-linearly resampled to other step counts."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_type": (["SD1", "SDXL", "SVD"],),
                             "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
                             "denoise": _denoise()}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = SCHEDULERS

    def get_sigmas(self, model_type, steps, denoise):
        return (_tables.table_schedule(_tables.AYS_NOISE_LEVELS[model_type], steps, denoise),)


class GITSScheduler:
    """GITS (geometry-inspired time scheduling) SD1 schedules for 2-20 steps per coefficient;
    more steps resample the 20-step one."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"coeff": ("FLOAT", {"default": 1.20, "min": 0.80, "max": 1.50, "step": 0.05}),
                             "steps": ("INT", {"default": 10, "min": 2, "max": 1000}),
                             "denoise": _denoise()}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = SCHEDULERS

    def get_sigmas(self, coeff, steps, denoise):
        return (_tables.gits_schedule(coeff, steps, denoise),)


class OptimalStepsScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_type": (["FLUX", "Wan", "Chroma"],),
                             "steps": ("INT", {"default": 20, "min": 3, "max": 1000}),
                             "denoise": _denoise()}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = SCHEDULERS

    def get_sigmas(self, model_type, steps, denoise):
        return (_tables.table_schedule(_tables.OPTIMAL_NOISE_LEVELS[model_type], steps, denoise),)


# ----------------------------------------------------------------------------------------
# sigmas
# ----------------------------------------------------------------------------------------
class SetFirstSigma:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",), "sigma": _f(136.0, 0.0, 20000.0, step=0.001)}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "set_first_sigma"
    CATEGORY = SIGMAS

    def set_first_sigma(self, sigmas, sigma):
        sigmas = sigmas.clone()
        sigmas[0] = sigma
        return (sigmas,)


class ExtendIntermediateSigmas:
    """Inserts ``steps - 1`` sigmas between each pair whose first sigma lies in
    [end_at_sigma, start_at_sigma] (start < 0: no upper bound), spaced linearly, or crowded
    toward the start ("cosine": sin(x pi/2)) or the end ("sine": 1 - cos(x pi/2))."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sigmas": ("SIGMAS",),
            "steps": ("INT", {"default": 2, "min": 1, "max": 100}),
            "start_at_sigma": _f(-1.0, -1.0, 20000.0),
            "end_at_sigma": _f(12.0, 0.0, 20000.0),
            "spacing": (["linear", "cosine", "sine"],),
        }}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "extend"
    CATEGORY = SIGMAS

    def extend(self, sigmas, steps, start_at_sigma, end_at_sigma, spacing):
        if start_at_sigma < 0:
            start_at_sigma = float("inf")
        x = torch.linspace(0, 1, steps + 1, device=sigmas.device)[1:-1]
        if spacing == "cosine":
            x = torch.sin(x * math.pi / 2)
        elif spacing == "sine":
            x = 1 - torch.cos(x * math.pi / 2)
        out: list[float] = []
        for i in range(len(sigmas) - 1):
            cur, nxt = sigmas[i], sigmas[i + 1]
            out.append(float(cur))
            if end_at_sigma <= cur <= start_at_sigma:
                out.extend((x * (nxt - cur) + cur).tolist())
        if len(sigmas) > 0:
            out.append(float(sigmas[-1]))
        return (torch.FloatTensor(out),)


class SamplingPercentToSigma:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "sampling_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.0001}),
            "return_actual_sigma": ("BOOLEAN", {"default": False, "tooltip": "Return the actual sigma value instead of "
                                                "the value used for interval checks.\nThis only affects results at "
                                                "0.0 and 1.0."}),
        }}

    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("sigma_value",)
    FUNCTION = "get_sigma"
    CATEGORY = SIGMAS

    def get_sigma(self, model, sampling_percent, return_actual_sigma):
        ms = smp.get_model_object(model, "model_sampling")
        sigma = ms.percent_to_sigma(sampling_percent)
        if return_actual_sigma:
            if sampling_percent == 0.0:
                sigma = ms.sigma_max.item()
            elif sampling_percent == 1.0:
                sigma = ms.sigma_min.item()
        return (sigma,)


# ----------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------
class AddNoise:
    """Noises a latent to the first sigma's level (to the span of the sigmas when there are
    several), as the model's sampling scales noise; an all-zero latent is left unscaled."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "noise": ("NOISE",), "sigmas": ("SIGMAS",),
                             "latent_image": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "add_noise"
    CATEGORY = "_for_testing/custom_sampling/noise"

    def add_noise(self, model, noise, sigmas, latent_image):
        if len(sigmas) == 0:
            return (latent_image,)
        latent = latent_image["samples"]
        noisy = noise.generate_noise(latent_image)
        ms = smp.get_model_object(model, "model_sampling")
        scale = torch.abs(sigmas[0] - sigmas[-1]) if len(sigmas) > 1 else sigmas[0]
        if torch.count_nonzero(latent) > 0:
            latent = smp.process_latent_in(model.model, latent)
        noisy = ms.noise_scaling(scale, noisy.to(latent), latent)
        noisy = smp.process_latent_out(model.model, noisy)
        out = dict(latent_image)
        out["samples"] = torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)
        return (out,)


NODE_CLASS_MAPPINGS = {
    "LaplaceScheduler": LaplaceScheduler,
    "SamplerEulerAncestral": SamplerEulerAncestral,
    "SamplerEulerAncestralCFGPP": SamplerEulerAncestralCFGPP,
    "SamplerLMS": SamplerLMS,
    "SamplerDPMPP_3M_SDE": SamplerDPMPP_3M_SDE,
    "SamplerDPMPP_2M_SDE": SamplerDPMPP_2M_SDE,
    "SamplerDPMPP_SDE": SamplerDPMPP_SDE,
    "SamplerDPMPP_2S_Ancestral": SamplerDPMPP_2S_Ancestral,
    "SamplerDPMAdaptative": SamplerDPMAdaptative,
    "SamplerER_SDE": SamplerER_SDE,
    "SamplerSASolver": SamplerSASolver,
    "SetFirstSigma": SetFirstSigma,
    "ExtendIntermediateSigmas": ExtendIntermediateSigmas,
    "SamplingPercentToSigma": SamplingPercentToSigma,
    "AddNoise": AddNoise,
    "AlignYourStepsScheduler": AlignYourStepsScheduler,
    "GITSScheduler": GITSScheduler,
    "OptimalStepsScheduler": OptimalStepsScheduler,
    "SamplerLCMUpscale": SamplerLCMUpscale,
    "SamplerEulerCFGpp": SamplerEulerCFGpp,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerEulerAncestralCFGPP": "SamplerEulerAncestralCFG++",
    "SamplerEulerCFGpp": "SamplerEulerCFG++",
}
