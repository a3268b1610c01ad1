"""Noise schedules and prediction types ("model sampling") for diffusion models.

This is the contract between a model (``comfyui.models``) and the samplers
(``comfyui.sampling``). Everything works in the k-diffusion "sigma" view:
``x_t = x_0 + sigma * eps`` (variance exploding), and the model is wrapped into a
denoiser ``D(x, sigma) -> x_0 estimate``.

A model-sampling object is the combination of two pieces (mixins), exactly as in ComfyUI:

* a **prediction type** that says how the raw network output becomes a denoised image:
  :class:`EPS` (epsilon, SD1.x / SDXL), :class:`V_PREDICTION` (SD2.x-768, v-pred SDXL),
  :class:`EDM`, :class:`X0`, :class:`IMG_TO_IMG`, :class:`LCM` (latent consistency),
  :class:`CONST` (rectified flow);
* a **schedule** that maps between sigmas and the network's timestep input:
  :class:`ModelSamplingDiscrete` (1000 DDPM steps; "linear" = SD's scaled-linear betas
  ``linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2``; optional zero-terminal-SNR rescale)
  and :class:`ModelSamplingDiscreteDistilled` (LCM: 50 of the 1000 steps).

Use :func:`model_sampling` to build one::

    ms = model_sampling("eps")                                # SD1.x
    ms = model_sampling("v_prediction", {"zsnr": True})       # v-pred + zsnr
    ms = model_sampling("eps", model_config)                  # object with .sampling_settings

The resulting object (a ``torch.nn.Module``, buffers ``sigmas`` / ``log_sigmas`` in
ascending order) provides:

``sigmas``, ``log_sigmas``, ``sigma_min``, ``sigma_max`` (0-dim tensors), ``num_timesteps``
``timestep(sigma) -> t``            nearest discrete timestep (long tensor, same shape)
``sigma(t) -> sigma``               log-linear interpolation between discrete sigmas
``percent_to_sigma(p) -> float``    0.0 -> huge (start of sampling), 1.0 -> 0.0 (end)
``calculate_input(sigma, x)``       scale the noisy latent before it enters the network
                                    (``x / sqrt(sigma^2 + sigma_data^2)`` for EPS/V)
``calculate_denoised(sigma, out, x)`` network output -> x_0 estimate
``noise_scaling(sigma, noise, latent, max_denoise)``  the initial noisy latent
``inverse_noise_scaling(sigma, latent)``              undo it at the end (identity for VE)

``sigma`` arguments to these methods are 1-D tensors of batch size (or 0-dim); they are
reshaped to broadcast against ``[B, C, H, W]``.

Contract with ``comfyui.models`` (ComfyUI semantics, which custom nodes rely on through
``model_function_wrapper``): ``BaseModel.apply_model(x, t, c_crossattn=..., c_concat=...,
y=..., control=..., transformer_options=...)`` receives ``t`` = **sigma** (shape [B]) and
returns the **denoised** estimate, i.e. it does::

    xc = ms.calculate_input(sigma, x)               # (+ cat c_concat on channels)
    out = unet(xc, ms.timestep(sigma).float(), context=c_crossattn, y=y, ...)
    return ms.calculate_denoised(sigma, out.float(), x)

The samplers (``comfyui.sampling.samplers``) call it that way. Optional model hooks the
sampler uses when present: ``extra_conds(**kw) -> dict`` (build c_crossattn / y / c_concat
from a conditioning entry), ``process_latent_in/out``, ``memory_required(shape)``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

__all__ = [
    "EPS", "V_PREDICTION", "EDM", "X0", "IMG_TO_IMG", "LCM", "CONST",
    "ModelSamplingDiscrete", "ModelSamplingDiscreteDistilled",
    "make_beta_schedule", "rescale_zero_terminal_snr_sigmas", "model_sampling", "model_sampling_from_settings",
    "ModelSamplingDiscreteFlow", "ModelSamplingFlux", "ModelSamplingContinuousEDM", "ModelSamplingContinuousV",
    "continuous_model_sampling", "flow_model_sampling", "flux_shift_for_size",
    "time_snr_shift", "flux_time_shift",
    "PREDICTION_TYPES",
]


def _bcast(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-batch sigma to broadcast against ``like`` ([B, ...])."""
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.view(sigma.shape[:1] + (1,) * (like.ndim - 1))


# ----------------------------------------------------------------------------------------
# prediction types
# ----------------------------------------------------------------------------------------
class EPS:
    """Epsilon prediction: the network predicts the noise."""

    sigma_data = 1.0

    def calculate_input(self, sigma, noise):
        sigma = _bcast(sigma, noise)
        return noise / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = _bcast(sigma, model_output)
        return model_input - model_output * sigma

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = _bcast(sigma, noise)
        if max_denoise:
            noise = noise * torch.sqrt(1.0 + sigma ** 2.0)
        else:
            noise = noise * sigma
        return noise + latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class V_PREDICTION(EPS):
    """v prediction (Salimans & Ho): v = alpha * eps - sigma_t * x0 (in VE units)."""

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = _bcast(sigma, model_output)
        sd = self.sigma_data
        return (model_input * sd ** 2 / (sigma ** 2 + sd ** 2)
                - model_output * sigma * sd / (sigma ** 2 + sd ** 2) ** 0.5)


class EDM(V_PREDICTION):
    """EDM preconditioning (Karras et al.): D = c_skip x + c_out F."""

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = _bcast(sigma, model_output)
        sd = self.sigma_data
        return (model_input * sd ** 2 / (sigma ** 2 + sd ** 2)
                + model_output * sigma * sd / (sigma ** 2 + sd ** 2) ** 0.5)


class X0(EPS):
    """The network predicts the clean sample directly."""

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_output


class IMG_TO_IMG(X0):
    """x0 prediction with the raw (unscaled) latent as input."""

    def calculate_input(self, sigma, noise):
        return noise


class LCM(EPS):
    """Latent consistency models: eps prediction followed by the consistency boundary
    condition ``c_skip * x + c_out * x0`` with sigma_data 0.5 and timestep scaling 10."""

    def calculate_denoised(self, sigma, model_output, model_input):
        timestep = _bcast(self.timestep(sigma), model_output)
        sigma = _bcast(sigma, model_output)
        x0 = model_input - model_output * sigma
        sigma_data = 0.5
        scaled_timestep = timestep * 10.0
        c_skip = sigma_data ** 2 / (scaled_timestep ** 2 + sigma_data ** 2)
        c_out = scaled_timestep / (scaled_timestep ** 2 + sigma_data ** 2) ** 0.5
        return c_out * x0 + c_skip * model_input


class CONST:
    """Rectified flow: x_t = (1 - sigma) x0 + sigma * noise; the network predicts velocity."""

    sigma_data = 1.0

    def calculate_input(self, sigma, noise):
        return noise

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = _bcast(sigma, model_output)
        return model_input - model_output * sigma

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = _bcast(sigma, noise)
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma, latent):
        sigma = _bcast(sigma, latent)
        return latent / (1.0 - sigma)


PREDICTION_TYPES: dict[str, type] = {
    "eps": EPS,
    "v_prediction": V_PREDICTION,
    "edm": EDM,
    "x0": X0,
    "img_to_img": IMG_TO_IMG,
    "lcm": LCM,
    "const": CONST,
}


# ----------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------
def make_beta_schedule(schedule: str, n_timestep: int, linear_start: float = 1e-4,
                       linear_end: float = 2e-2, cosine_s: float = 8e-3) -> torch.Tensor:
    """DDPM beta schedules (float64). ``"linear"`` is Stable Diffusion's scaled-linear."""
    if schedule == "linear":
        return torch.linspace(linear_start ** 0.5, linear_end ** 0.5, n_timestep, dtype=torch.float64) ** 2
    if schedule == "cosine":
        t = torch.arange(n_timestep + 1, dtype=torch.float64) / n_timestep + cosine_s
        alphas = torch.cos(t / (1 + cosine_s) * math.pi / 2).pow(2)
        alphas = alphas / alphas[0]
        betas = 1 - alphas[1:] / alphas[:-1]
        return torch.clamp(betas, min=0, max=0.999)
    if schedule == "squaredcos_cap_v2":
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - alpha_bar((i + 1) / n_timestep) / alpha_bar(i / n_timestep), 0.999)
                 for i in range(n_timestep)]
        return torch.tensor(betas, dtype=torch.float64)
    if schedule == "sqrt_linear":
        return torch.linspace(linear_start, linear_end, n_timestep, dtype=torch.float64)
    if schedule == "sqrt":
        return torch.linspace(linear_start, linear_end, n_timestep, dtype=torch.float64) ** 0.5
    raise ValueError(f"unknown beta schedule {schedule!r}")


def rescale_zero_terminal_snr_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """Zero terminal SNR (Lin et al. 2023): shift/scale sqrt(alphas_cumprod) so the last
    step has (almost) zero signal. The last alpha_bar is pinned to 4.8973451890853435e-08
    as ComfyUI does, so the top sigma stays finite (~4500)."""
    alphas_cumprod = 1 / ((sigmas * sigmas) + 1)
    a = alphas_cumprod.sqrt()
    a0 = a[0].clone()
    aT = a[-1].clone()
    a = a - aT
    a = a * (a0 / (a0 - aT))
    alphas_bar = a ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


def _settings(model_config: Any) -> Mapping[str, Any]:
    if model_config is None:
        return {}
    if isinstance(model_config, Mapping):
        return model_config
    return getattr(model_config, "sampling_settings", None) or {}


class ModelSamplingDiscrete(torch.nn.Module):
    """Discrete-time DDPM schedule seen as sigmas.

    ``model_config``: ``None``, a mapping of sampling settings, or an object with a
    ``sampling_settings`` mapping. Keys: ``beta_schedule`` ("linear"), ``linear_start``
    (0.00085), ``linear_end`` (0.012), ``timesteps`` (1000), ``zsnr`` (False).
    """

    def __init__(self, model_config: Any = None, zsnr: bool | None = None):
        super().__init__()
        s = _settings(model_config)
        if zsnr is None:
            zsnr = bool(s.get("zsnr", False))
        self._register_schedule(
            given_betas=None,
            beta_schedule=s.get("beta_schedule", "linear"),
            timesteps=int(s.get("timesteps", 1000)),
            linear_start=float(s.get("linear_start", 0.00085)),
            linear_end=float(s.get("linear_end", 0.012)),
            cosine_s=8e-3,
            zsnr=zsnr,
        )
        self.sigma_data = 1.0

    def _register_schedule(self, given_betas=None, beta_schedule="linear", timesteps=1000,
                           linear_start=1e-4, linear_end=2e-2, cosine_s=8e-3, zsnr=False):
        if given_betas is not None:
            betas = torch.as_tensor(given_betas, dtype=torch.float64)
        else:
            betas = make_beta_schedule(beta_schedule, timesteps, linear_start=linear_start,
                                       linear_end=linear_end, cosine_s=cosine_s)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.num_timesteps = int(betas.shape[0])
        self.linear_start = linear_start
        self.linear_end = linear_end
        self.zsnr = bool(zsnr)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        if zsnr:
            sigmas = rescale_zero_terminal_snr_sigmas(sigmas)
        self.set_sigmas(sigmas)

    def set_sigmas(self, sigmas: torch.Tensor) -> None:
        self.register_buffer("sigmas", sigmas.float())
        self.register_buffer("log_sigmas", sigmas.log().float())

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.log()
        dists = log_sigma.to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(timestep)
        t = torch.clamp(timestep.float().to(self.log_sigmas.device), min=0, max=(len(self.sigmas) - 1))
        low_idx = t.floor().long()
        high_idx = t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        percent = 1.0 - percent
        return self.sigma(torch.tensor(percent * 999.0)).item()


class ModelSamplingDiscreteDistilled(ModelSamplingDiscrete):
    """LCM's schedule: 50 evenly spaced of the 1000 training timesteps."""

    original_timesteps = 50

    def __init__(self, model_config: Any = None, zsnr: bool | None = None):
        super().__init__(model_config, zsnr=zsnr)
        self.skip_steps = self.num_timesteps // self.original_timesteps
        valid = torch.zeros((self.original_timesteps,), dtype=torch.float32)
        for x in range(self.original_timesteps):
            valid[self.original_timesteps - 1 - x] = self.sigmas[self.num_timesteps - 1 - x * self.skip_steps]
        self.set_sigmas(valid)

    def timestep(self, sigma):
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.log()
        dists = log_sigma.to(self.log_sigmas.device) - self.log_sigmas[:, None]
        idx = dists.abs().argmin(dim=0).view(sigma.shape)
        return (idx * self.skip_steps + (self.skip_steps - 1)).to(sigma.device)

    def sigma(self, timestep):
        timestep = torch.as_tensor(timestep)
        t = torch.clamp(((timestep.float().to(self.log_sigmas.device) - (self.skip_steps - 1)) / self.skip_steps).float(),
                        min=0, max=(len(self.sigmas) - 1))
        low_idx = t.floor().long()
        high_idx = t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp().to(timestep.device)


class ModelSamplingContinuousEDM(torch.nn.Module):
    """Continuous log-sigma schedule between sigma_min and sigma_max (EDM-style models, or
    any model re-timed by the ModelSamplingContinuousEDM node): timestep = log(sigma) / 4.
    ``sigmas`` holds 1000 log-spaced values for the schedulers that read a table."""

    def __init__(self, model_config: Any = None, zsnr: bool | None = None):
        super().__init__()
        s = _settings(model_config)
        self.set_parameters(float(s.get("sigma_min", 0.002)), float(s.get("sigma_max", 120.0)),
                            float(s.get("sigma_data", 1.0)))

    def set_parameters(self, sigma_min: float, sigma_max: float, sigma_data: float) -> None:
        self.sigma_data = sigma_data
        sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma):
        return 0.25 * torch.as_tensor(sigma).log()

    def sigma(self, timestep):
        return (torch.as_tensor(timestep) / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        lo = math.log(float(self.sigma_min))
        return math.exp((math.log(float(self.sigma_max)) - lo) * (1.0 - percent) + lo)


class ModelSamplingContinuousV(ModelSamplingContinuousEDM):
    """The same sigma range with timestep = 2 atan(sigma) / pi (in [0, 1))."""

    def timestep(self, sigma):
        return torch.as_tensor(sigma).atan() / math.pi * 2

    def sigma(self, timestep):
        return (torch.as_tensor(timestep) * math.pi / 2).tan()


def continuous_model_sampling(base: type, prediction: str | type, model_config: Any, sigma_min: float,
                              sigma_max: float, sigma_data: float) -> torch.nn.Module:
    """A ModelSamplingContinuousEDM / V schedule with a prediction type and set parameters."""
    pred_cls = PREDICTION_TYPES[prediction] if isinstance(prediction, str) else prediction
    ms = _combined(base, pred_cls)(model_config)
    ms.set_parameters(sigma_min, sigma_max, sigma_data)
    return ms


_CLASS_CACHE: dict[tuple[type, type], type] = {}


def _combined(base: type, prediction: type) -> type:
    key = (base, prediction)
    cls = _CLASS_CACHE.get(key)
    if cls is None:
        cls = type(f"ModelSampling_{base.__name__}_{prediction.__name__}", (base, prediction), {})
        _CLASS_CACHE[key] = cls
    return cls


def model_sampling(prediction: str | type = "eps", model_config: Any = None,
                   zsnr: bool | None = None) -> ModelSamplingDiscrete:
    """Build a model-sampling object for a prediction type on a discrete schedule.

    ``prediction``: "eps", "v_prediction", "edm", "x0", "img_to_img", "lcm", "const", or
    one of the prediction classes. "lcm" uses the distilled (50 step) schedule.
    ``model_config``: ``None``, a sampling-settings mapping or an object with
    ``.sampling_settings`` (see :class:`ModelSamplingDiscrete`).
    """
    if isinstance(prediction, str):
        key = prediction.lower()
        if key not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction type {prediction!r}")
        pred_cls = PREDICTION_TYPES[key]
    else:
        pred_cls = prediction
    base = ModelSamplingDiscreteDistilled if pred_cls is LCM else ModelSamplingDiscrete
    return _combined(base, pred_cls)(model_config, zsnr=zsnr)


# ----------------------------------------------------------------------------------------
# flow-matching schedules (rectified flow: sigma in [0, 1], used with CONST)
# ----------------------------------------------------------------------------------------
def time_snr_shift(shift: float, t):
    """SD3's timestep shift: t -> shift*t / (1 + (shift-1)*t) (identity for shift 1)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def flux_time_shift(mu: float, exponent: float, t):
    """Flux's resolution-dependent shift: exp(mu) / (exp(mu) + (1/t - 1)^exponent)."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** exponent)


class _FlowSchedule(torch.nn.Module):
    """The sigma table and its bounds; subclasses give ``sigma(t)`` and ``timestep(sigma)``."""

    def _set_sigmas(self, sigmas: torch.Tensor) -> None:
        self.register_buffer("sigmas", sigmas.float())

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def _shifted(self, t: float) -> float:
        raise NotImplementedError

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self._shifted(1.0 - percent))


class ModelSamplingDiscreteFlow(_FlowSchedule):
    """SD3 / AuraFlow / Lumina 2 / Wan ...: ``timesteps`` (1000) evenly spaced flow times, SD3's
    ``shift``; the network's timestep input is ``sigma * multiplier`` (1000 for SD3, 1 for
    AuraFlow / Lumina 2). Settings: ``shift`` (1.0), ``multiplier`` (1000)."""

    def __init__(self, model_config: Any = None, zsnr: bool | None = None):
        super().__init__()
        s = _settings(model_config)
        self.set_parameters(shift=float(s.get("shift", 1.0)), multiplier=float(s.get("multiplier", 1000)))

    def set_parameters(self, shift: float = 1.0, timesteps: int = 1000, multiplier: float = 1000) -> None:
        self.shift = shift
        self.multiplier = multiplier
        self._set_sigmas(self.sigma(torch.arange(1, timesteps + 1, 1) / timesteps * multiplier))

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        return time_snr_shift(self.shift, timestep / self.multiplier)

    def _shifted(self, t: float) -> float:
        return time_snr_shift(self.shift, t)


class ModelSamplingFlux(_FlowSchedule):
    """Flux.1: 10000 flow times through :func:`flux_time_shift` with ``shift`` = mu (1.15 by
    default; ModelSamplingFlux sets it from the image size); the timestep input is sigma."""

    def __init__(self, model_config: Any = None, zsnr: bool | None = None):
        super().__init__()
        self.set_parameters(shift=float(_settings(model_config).get("shift", 1.15)))

    def set_parameters(self, shift: float = 1.15, timesteps: int = 10000) -> None:
        self.shift = shift
        self._set_sigmas(self.sigma(torch.arange(1, timesteps + 1, 1) / timesteps))

    def timestep(self, sigma):
        return sigma

    def sigma(self, timestep):
        return flux_time_shift(self.shift, 1.0, timestep)

    def _shifted(self, t: float) -> float:
        return flux_time_shift(self.shift, 1.0, t)


def flux_shift_for_size(width: int, height: int, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """Flux's mu for an image of ``width`` x ``height`` pixels: linear in its number of 2x2
    latent patches, ``base_shift`` at 256 patches and ``max_shift`` at 4096."""
    x1, x2 = 256, 4096
    slope = (max_shift - base_shift) / (x2 - x1)
    return (width * height / (8 * 8 * 2 * 2)) * slope + (base_shift - slope * x1)


# the sampling "type" of a model family -> (schedule, prediction)
FLOW_SCHEDULES: dict[str, type] = {"flow": ModelSamplingDiscreteFlow, "flux": ModelSamplingFlux}


def flow_model_sampling(schedule: type, settings: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """A flow schedule combined with the CONST (velocity) prediction."""
    return _combined(schedule, CONST)(settings or {})


def model_sampling_from_settings(settings: Mapping[str, Any]) -> torch.nn.Module:
    """The model-sampling object a model family asks for: ``settings`` = {"type": prediction
    type ("eps", "v_prediction", ...) or flow schedule ("flow": SD3-style, "flux"), plus the
    schedule's settings (``zsnr``, ``shift``, ``multiplier`` ...)}."""
    kind = settings.get("type", "eps")
    rest = {k: v for k, v in settings.items() if k != "type"}
    if kind in FLOW_SCHEDULES:
        return flow_model_sampling(FLOW_SCHEDULES[kind], rest)
    return model_sampling(kind, rest)
