"""Sampler algorithms in the k-diffusion convention.

Every sampler is ``sample_<name>(model, x, sigmas, extra_args=None, callback=None,
disable=None, **options) -> x`` where ``model(x, sigma_batch, **extra_args)`` returns the
denoised estimate (x0), ``x`` is the initial noisy latent at ``sigmas[0]`` (already scaled),
and ``sigmas`` is a decreasing schedule, usually ending with 0. ``callback`` receives
``{"x", "i", "sigma", "sigma_hat", "denoised"}`` once per step. ``extra_args`` may carry
``seed`` (seeds the noise samplers as ComfyUI does) and ``model_options`` (used by the CFG++
samplers to observe the unconditional prediction through a post-CFG hook).

Schedule helpers (Karras, exponential, polyexponential, VP) live here too.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from .model_sampling import CONST
from .noise import BrownianTreeNoiseSampler, default_noise_sampler


# ----------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------
def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0, device="cpu"):
    """Karras et al. (2022): interpolate sigma^(1/rho) linearly."""
    ramp = torch.linspace(0, 1, n, device=device)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas).to(device)


def get_sigmas_exponential(n, sigma_min, sigma_max, device="cpu"):
    """Evenly spaced in log sigma."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, device=device).exp()
    return append_zero(sigmas)


def get_sigmas_polyexponential(n, sigma_min, sigma_max, rho=1.0, device="cpu"):
    """Polynomial in log sigma."""
    ramp = torch.linspace(1, 0, n, device=device) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return append_zero(sigmas)


def get_sigmas_vp(n, beta_d=19.9, beta_min=0.1, eps_s=1e-3, device="cpu"):
    """Continuous VP schedule."""
    t = torch.linspace(1, eps_s, n, device=device)
    sigmas = torch.sqrt(torch.special.expm1(beta_d * t ** 2 / 2 + beta_min * t))
    return append_zero(sigmas)


def get_sigmas_laplace(n, sigma_min, sigma_max, mu=0.0, beta=0.5, device="cpu"):
    """Laplace schedule (Hang et al. 2024): log sigma = mu - beta * sgn(1/2 - x) *
    log(1 - 2|1/2 - x|), x evenly spaced in [0, 1], clamped to [sigma_min, sigma_max]. As in
    ComfyUI, n values and no trailing zero (the last step ends at sigma_min)."""
    x = torch.linspace(0, 1, n, device=device)
    lmb = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(lmb), min=sigma_min, max=sigma_max)


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError("input has more dimensions than the target")
    return x[(...,) + (None,) * dims_to_append]


def to_d(x, sigma, denoised):
    """Karras ODE derivative dx/dsigma."""
    return (x - denoised) / append_dims(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    """Split a step into a deterministic step down to ``sigma_down`` and fresh noise of
    std ``sigma_up`` (sigma_down^2 + sigma_up^2 = sigma_to^2)."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def get_model_sampling(model) -> Any:
    """Find the model-sampling object behind a wrapped denoiser (None when unknown)."""
    obj = model
    for _ in range(4):
        ms = getattr(obj, "model_sampling", None)
        if ms is not None:
            return ms
        obj = getattr(obj, "inner_model", None)
        if obj is None:
            break
    return None


def _is_const(model_sampling) -> bool:
    return isinstance(model_sampling, CONST)


def sigma_to_half_log_snr(sigma, model_sampling=None):
    """lambda = log(alpha / sigma_t)."""
    if _is_const(model_sampling):
        return sigma.logit().neg()
    return sigma.log().neg()


def half_log_snr_to_sigma(half_log_snr, model_sampling=None):
    if _is_const(model_sampling):
        return half_log_snr.neg().sigmoid()
    return half_log_snr.neg().exp()


def offset_first_sigma_for_snr(sigmas, model_sampling, percent_offset=1e-4):
    if len(sigmas) <= 1:
        return sigmas
    if _is_const(model_sampling) and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = model_sampling.percent_to_sigma(percent_offset)
    return sigmas


def set_model_options_post_cfg_function(model_options: dict, fn: Callable, disable_cfg1_optimization=False) -> dict:
    model_options = dict(model_options)
    model_options["sampler_post_cfg_function"] = list(model_options.get("sampler_post_cfg_function", [])) + [fn]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


class _UncondCapture:
    """Installs a post-CFG hook that records the unconditional prediction (CFG++)."""

    def __init__(self, extra_args: dict):
        self.uncond_denoised = None

        def post_cfg(args):
            self.uncond_denoised = args["uncond_denoised"]
            return args["denoised"]

        extra_args["model_options"] = set_model_options_post_cfg_function(
            extra_args.get("model_options", {}), post_cfg, disable_cfg1_optimization=True)

    def get(self, fallback):
        return fallback if self.uncond_denoised is None else self.uncond_denoised


def _steps(sigmas):
    return range(len(sigmas) - 1)


def _cb(callback, x, i, sigma, sigma_hat, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def _brownian(x, sigmas, extra_args, cpu):
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=extra_args.get("seed", None), cpu=cpu)


def _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise):
    if s_churn > 0 and s_tmin <= sigmas[i] <= s_tmax:
        gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1)
    else:
        gamma = 0.0
    sigma_hat = sigmas[i] * (gamma + 1)
    if gamma > 0:
        eps = torch.randn_like(x) * s_noise
        x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


# ----------------------------------------------------------------------------------------
# Euler / Heun / DPM-2 family
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None,
                 s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                           eta=1.0, s_noise=1.0, noise_sampler=None):
    extra_args = {} if extra_args is None else extra_args
    ms = get_model_sampling(model)
    if _is_const(ms):
        return _sample_euler_ancestral_rf(model, x, sigmas, extra_args, callback, eta, s_noise, noise_sampler)
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _sample_euler_ancestral_rf(model, x, sigmas, extra_args, callback, eta, s_noise, noise_sampler):
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        sigma_down = sigmas[i + 1] * (1 + (sigmas[i + 1] / sigmas[i] - 1) * eta)
        alpha_ip1 = 1 - sigmas[i + 1]
        alpha_down = 1 - sigma_down
        renoise = (sigmas[i + 1] ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
        ratio = sigma_down / sigmas[i]
        x = ratio * x + (1 - ratio) * denoised
        if eta > 0:
            x = (alpha_ip1 / alpha_down) * x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None,
                s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, disable=None,
                   s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    """Heun++ (three-point weighted derivative average)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    s_end = sigmas[-1]
    for i in _steps(sigmas):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in, **extra_args))
            w = 3 * sigmas[0]
            w2 = sigmas[i + 1] / w
            w3 = sigmas[i + 2] / w
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None,
                 s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                           eta=1.0, s_noise=1.0, noise_sampler=None):
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(torch.as_tensor(sigma_down).log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


# ----------------------------------------------------------------------------------------
# linear multistep
# ----------------------------------------------------------------------------------------
def linear_multistep_coeff(order, t, i, j):
    """Integral over [t[i], t[i+1]] of the Lagrange basis polynomial j through
    t[i], t[i-1], ..., t[i-order+1] (computed exactly)."""
    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")
    poly = np.poly1d([1.0])
    for k in range(order):
        if k == j:
            continue
        poly = poly * np.poly1d([1.0, -t[i - k]]) / (t[i - j] - t[i - k])
    integ = poly.integ()
    return float(integ(t[i + 1]) - integ(t[i]))


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, order=4):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().double().numpy()
    ds = []
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            cur_order = min(i + 1, order)
            coeffs = [linear_multistep_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
            x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


# ----------------------------------------------------------------------------------------
# DPM-Solver (fast / adaptive)
# ----------------------------------------------------------------------------------------
class PIDStepSizeController:
    """PID controller for adaptive step sizes."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    @staticmethod
    def limiter(x):
        return 1 + math.atan(x - 1)

    def propose_step(self, error):
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = self.limiter(factor)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


class DPMSolver:
    """DPM-Solver (Lu et al. 2022) in t = -log(sigma), noise prediction."""

    def __init__(self, model, extra_args=None, eps_callback=None, info_callback=None):
        self.model = model
        self.extra_args = {} if extra_args is None else extra_args
        self.eps_callback = eps_callback
        self.info_callback = info_callback

    @staticmethod
    def t(sigma):
        return -sigma.log()

    @staticmethod
    def sigma(t):
        return t.neg().exp()

    def eps(self, cache, key, x, t):
        if key in cache:
            return cache[key], cache
        sigma = self.sigma(t) * x.new_ones([x.shape[0]])
        eps = (x - self.model(x, sigma, **self.extra_args)) / self.sigma(t)
        if self.eps_callback is not None:
            self.eps_callback()
        return eps, {key: eps, **cache}

    def step_1(self, x, t, t_next, cache=None):
        cache = {} if cache is None else cache
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps, cache

    def step_2(self, x, t, t_next, r1=1 / 2, cache=None):
        cache = {} if cache is None else cache
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        x_2 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        return x_2, cache

    def step_3(self, x, t, t_next, r1=1 / 3, r2=2 / 3, cache=None):
        cache = {} if cache is None else cache
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        s2 = t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2, cache = self.eps(cache, "eps_r2", u2, s2)
        x_3 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_3, cache

    def fast(self, x, t_start, t_end, nfe, eta=0.0, s_noise=1.0, noise_sampler=None):
        noise_sampler = default_noise_sampler(x, seed=self.extra_args.get("seed")) if noise_sampler is None else noise_sampler
        if not t_end > t_start and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(float(t_start), float(t_end), m + 1, device=x.device)
        if nfe % 3 == 0:
            orders = [3] * (m - 2) + [2, 1]
        else:
            orders = [3] * (m - 1) + [nfe % 3]
        for i in range(len(orders)):
            cache = {}
            t, t_next = ts[i], ts[i + 1]
            if eta:
                sd, su = get_ancestral_step(self.sigma(t), self.sigma(t_next), eta)
                t_next_ = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5
            else:
                t_next_, su = t_next, 0.0
            eps, cache = self.eps(cache, "eps", x, t)
            denoised = x - self.sigma(t) * eps
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": i, "t": ts[i], "t_up": t, "denoised": denoised})
            if orders[i] == 1:
                x, cache = self.step_1(x, t, t_next_, cache=cache)
            elif orders[i] == 2:
                x, cache = self.step_2(x, t, t_next_, cache=cache)
            else:
                x, cache = self.step_3(x, t, t_next_, cache=cache)
            x = x + su * s_noise * noise_sampler(self.sigma(t), self.sigma(t_next))
        return x

    def adaptive(self, x, t_start, t_end, order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0,
                 icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0, noise_sampler=None):
        noise_sampler = default_noise_sampler(x, seed=self.extra_args.get("seed")) if noise_sampler is None else noise_sampler
        if order not in {2, 3}:
            raise ValueError("order should be 2 or 3")
        forward = t_end > t_start
        if not forward and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        h_init = abs(h_init) * (1 if forward else -1)
        atol = torch.tensor(atol)
        rtol = torch.tensor(rtol)
        s = t_start
        x_prev = x
        pid = PIDStepSizeController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
            cache = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            if eta:
                sd, su = get_ancestral_step(self.sigma(s), self.sigma(t), eta)
                t_ = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t) ** 2 - self.sigma(t_) ** 2) ** 0.5
            else:
                t_, su = t, 0.0
            eps, cache = self.eps(cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps
            if order == 2:
                x_low, cache = self.step_1(x, s, t_, cache=cache)
                x_high, cache = self.step_2(x, s, t_, cache=cache)
            else:
                x_low, cache = self.step_2(x, s, t_, r1=1 / 3, cache=cache)
                x_high, cache = self.step_3(x, s, t_, cache=cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            accept = pid.propose_step(error)
            if accept:
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(self.sigma(s), self.sigma(t))
                s = t
                info["n_accept"] += 1
            else:
                info["n_reject"] += 1
            info["nfe"] += order
            info["steps"] += 1
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": info["steps"] - 1, "t": s, "t_up": s, "denoised": denoised,
                                    "error": error, "h": pid.h, **info})
        return x, info


def _dpm_info_callback(solver, callback):
    if callback is None:
        return None
    return lambda info: callback({"sigma": solver.sigma(info["t"]), "sigma_hat": solver.sigma(info["t_up"]), **info})


@torch.no_grad()
def sample_dpm_fast(model, x, sigma_min, sigma_max, n, extra_args=None, callback=None, disable=None,
                    eta=0.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver-fast with ``n`` model evaluations between sigma_max and sigma_min."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    solver = DPMSolver(model, extra_args)
    solver.info_callback = _dpm_info_callback(solver, callback)
    return solver.fast(x, solver.t(torch.as_tensor(sigma_max)), solver.t(torch.as_tensor(sigma_min)), n,
                       eta, s_noise, noise_sampler)


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigma_min, sigma_max, extra_args=None, callback=None, disable=None,
                        order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0,
                        accept_safety=0.81, eta=0.0, s_noise=1.0, noise_sampler=None, return_info=False):
    """DPM-Solver-12/23 with adaptive step size."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    solver = DPMSolver(model, extra_args)
    solver.info_callback = _dpm_info_callback(solver, callback)
    x, info = solver.adaptive(x, solver.t(torch.as_tensor(sigma_max)), solver.t(torch.as_tensor(sigma_min)),
                              order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise,
                              noise_sampler)
    return (x, info) if return_info else x


# ----------------------------------------------------------------------------------------
# DPM-Solver++ family
# ----------------------------------------------------------------------------------------
def _sigma_fn(t):
    return t.neg().exp()


def _t_fn(sigma):
    return torch.as_tensor(sigma).log().neg()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                              eta=1.0, s_noise=1.0, noise_sampler=None):
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t_fn(sigmas[i]), _t_fn(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma_fn(s) / _sigma_fn(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sigma_fn(s) * s_in, **extra_args)
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                     eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2S) ancestral with CFG++, ComfyUI's equation: each half-step starts from
    ``x + (denoised - uncond)`` (the state's noise read off the unconditional prediction, the
    data term guided). The first half-step takes ``uncond`` from the evaluation at ``x``; the
    full step takes it from the midpoint evaluation, as ComfyUI's hook overwrites it there."""
    extra_args = {} if extra_args is None else dict(extra_args)
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    cap = _UncondCapture(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = cap.get(denoised)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            t, t_next = _t_fn(sigmas[i]), _t_fn(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma_fn(s) / _sigma_fn(t)) * (x + denoised - uncond) - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sigma_fn(s) * s_in, **extra_args)
            uncond_2 = cap.get(denoised_2)
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * (x + denoised - uncond_2) - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                     eta=1.0, s_noise=1.0, noise_sampler=None, r=1 / 2, _cpu_tree=True):
    """DPM-Solver++ (stochastic, 2 evaluations per step) with Brownian-tree noise."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian(x, sigmas, extra_args, _cpu_tree) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    fac = 1 / (2 * r)
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = sigma_to_half_log_snr(sigmas[i], ms), sigma_to_half_log_snr(sigmas[i + 1], ms)
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        sigma_s_1 = half_log_snr_to_sigma(lambda_s_1, ms)
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        # step 1
        sd, su = get_ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = torch.as_tensor(sd).log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + alpha_s_1 * noise_sampler(sigmas[i], sigma_s_1) * s_noise * su
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)
        # step 2
        sd, su = get_ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = torch.as_tensor(sd).log().neg() - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None,
                         eta=1.0, s_noise=1.0, noise_sampler=None, r=1 / 2):
    return sample_dpmpp_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, r,
                            _cpu_tree=False)


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t_fn(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args = {} if extra_args is None else dict(extra_args)
    cap = _UncondCapture(extra_args)
    s_in = x.new_ones([x.shape[0]])
    old_uncond = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = cap.get(denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond
        else:
            r = (t - _t_fn(sigmas[i - 1])) / h
            mix = -torch.exp(-h) * uncond - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                        eta=1.0, s_noise=1.0, noise_sampler=None, solver_type="midpoint", _cpu_tree=True):
    if len(sigmas) <= 1:
        return x
    if solver_type not in {"heun", "midpoint"}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian(x, sigmas, extra_args, _cpu_tree) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    old_denoised = None
    h = h_last = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = sigma_to_half_log_snr(sigmas[i], ms), sigma_to_half_log_snr(sigmas[i + 1], ms)
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta > 0 and s_noise > 0:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None,
                            eta=1.0, s_noise=1.0, noise_sampler=None, solver_type="midpoint"):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type, _cpu_tree=False)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model, x, sigmas, extra_args=None, callback=None, disable=None,
                             eta=1.0, s_noise=1.0, noise_sampler=None, solver_type="heun"):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                 eta=1.0, s_noise=1.0, noise_sampler=None, solver_type="heun"):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type, _cpu_tree=False)


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None,
                        eta=1.0, s_noise=1.0, noise_sampler=None, _cpu_tree=True):
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian(x, sigmas, extra_args, _cpu_tree) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = sigma_to_half_log_snr(sigmas[i], ms), sigma_to_half_log_snr(sigmas[i + 1], ms)
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + (alpha_t * phi_2) * d
            if eta > 0 and s_noise > 0:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None,
                            eta=1.0, s_noise=1.0, noise_sampler=None):
    return sample_dpmpp_3m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               _cpu_tree=False)


# ----------------------------------------------------------------------------------------
# DDPM / LCM
# ----------------------------------------------------------------------------------------
def _ddpm_step(x, sigma, sigma_prev, noise, noise_sampler):
    alpha_cumprod = 1 / ((sigma * sigma) + 1)
    alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
    alpha = alpha_cumprod / alpha_cumprod_prev
    mu = (1.0 / alpha).sqrt() * (x - (1 - alpha) * noise / (1 - alpha_cumprod).sqrt())
    if sigma_prev > 0:
        mu = mu + ((1 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt() * noise_sampler(sigma, sigma_prev)
    return mu


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Ancestral DDPM steps computed in the variance-preserving space."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = _ddpm_step(x / torch.sqrt(1.0 + sigmas[i] ** 2.0), sigmas[i], sigmas[i + 1],
                       (x - denoised) / sigmas[i], noise_sampler)
        if sigmas[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent consistency sampling: jump to x0, re-noise to the next sigma."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            noise = noise_sampler(sigmas[i], sigmas[i + 1])
            if ms is not None:
                x = ms.noise_scaling(sigmas[i + 1] * s_in, noise, x)
            else:
                x = x + noise * sigmas[i + 1]
    return x


# ----------------------------------------------------------------------------------------
# iPNDM / DEIS (multistep in sigma)
# ----------------------------------------------------------------------------------------
def _push(buffer, value, max_order):
    if len(buffer) == max_order - 1:
        buffer.pop(0)
    buffer.append(value)


@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """Improved pseudo linear multistep (fixed Adams-Bashforth coefficients)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    buf: list[torch.Tensor] = []
    for i in _steps(sigmas):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, t_cur * s_in, **extra_args)
        _cb(callback, x, i, t_cur, t_cur, denoised)
        d = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        dt = t_next - t_cur
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + dt * d
        elif order == 2:
            x_next = x + dt * (3 * d - buf[-1]) / 2
        elif order == 3:
            x_next = x + dt * (23 * d - 16 * buf[-1] + 5 * buf[-2]) / 12
        else:
            x_next = x + dt * (55 * d - 59 * buf[-1] + 37 * buf[-2] - 9 * buf[-3]) / 24
        _push(buf, d, max_order)
        x = x_next
    return x


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """iPNDM with variable-step coefficients."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    t = sigmas
    buf: list[torch.Tensor] = []
    for i in _steps(sigmas):
        t_cur, t_next = t[i], t[i + 1]
        denoised = model(x, t_cur * s_in, **extra_args)
        _cb(callback, x, i, t_cur, t_cur, denoised)
        d = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        h = t_next - t_cur
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + h * d
        elif order == 2:
            h1 = t_cur - t[i - 1]
            c1 = (2 + h / h1) / 2
            c2 = -(h / h1) / 2
            x_next = x + h * (c1 * d + c2 * buf[-1])
        elif order == 3:
            h1 = t_cur - t[i - 1]
            h2 = t[i - 1] - t[i - 2]
            tmp = (1 - h / (3 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2
            c1 = (2 + h / h1) / 2 + tmp
            c2 = -(h / h1) / 2 - (1 + h1 / h2) * tmp
            c3 = tmp * h1 / h2
            x_next = x + h * (c1 * d + c2 * buf[-1] + c3 * buf[-2])
        else:
            h1 = t_cur - t[i - 1]
            h2 = t[i - 1] - t[i - 2]
            h3 = t[i - 2] - t[i - 3]
            tmp1 = (1 - h / (3 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2
            tmp2 = (((1 - h / (3 * (h + h1))) / 2 + (1 - h / (2 * (h + h1))) * h / (6 * (h + h1 + h2)))
                    * (h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)))
            q = h1 * (h1 + h2) / (h2 * (h2 + h3))
            c1 = (2 + h / h1) / 2 + tmp1 + tmp2
            c2 = -(h / h1) / 2 - (1 + h1 / h2) * tmp1 - (1 + h1 / h2 + q) * tmp2
            c3 = tmp1 * h1 / h2 + (h1 / h2 + q * (1 + h2 / h3)) * tmp2
            c4 = -tmp2 * q * h1 / h2
            x_next = x + h * (c1 * d + c2 * buf[-1] + c3 * buf[-2] + c4 * buf[-3])
        _push(buf, d, max_order)
        x = x_next
    return x


def _deis_coefficients(sigmas: torch.Tensor, max_order: int, sigma_min=0.002, sigma_max=80.0, eps_s=1e-3,
                       n_quad: int = 64):
    """DEIS ("tab" mode) coefficients: for step i, c_j = integral over [sigma_i, sigma_{i+1}]
    of the Lagrange basis polynomial (in VP time tau(sigma)) through the last ``order``
    step times. Integrated with Gauss-Legendre in tau, using d sigma / d tau analytically."""
    s_min = torch.tensor(sigma_min, dtype=torch.float64)
    s_max = torch.tensor(sigma_max, dtype=torch.float64)
    beta_d = 2 * (torch.log(s_min ** 2 + 1) / eps_s - torch.log(s_max ** 2 + 1)) / (eps_s - 1)
    beta_min = torch.log(s_max ** 2 + 1) - 0.5 * beta_d

    def tau_of(sig):
        return ((beta_min ** 2 + 2 * beta_d * torch.log(sig ** 2 + 1)).sqrt() - beta_min) / beta_d

    def dsigma_dtau(tau):
        e = 0.5 * beta_d * tau ** 2 + beta_min * tau
        return (beta_d * tau + beta_min) * torch.exp(e) / (2 * torch.sqrt(torch.expm1(e)))

    taus = tau_of(sigmas.detach().cpu().double())
    nodes, weights = np.polynomial.legendre.leggauss(n_quad)
    nodes = torch.from_numpy(nodes)
    weights = torch.from_numpy(weights)
    coeffs = []
    for i in range(len(taus) - 1):
        order = min(i + 1, max_order)
        if order == 1:
            coeffs.append([])
            continue
        a, b = taus[i], taus[i + 1]
        q = (b - a) / 2 * nodes + (a + b) / 2
        w = (b - a) / 2 * weights * dsigma_dtau(q)
        prev = [taus[i - k] for k in range(order)]
        row = []
        for j in range(order):
            poly = torch.ones_like(q)
            for k in range(order):
                if k != j:
                    poly = poly * (q - prev[k]) / (prev[j] - prev[k])
            row.append(float(torch.sum(w * poly)))
        coeffs.append(row)
    return coeffs


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=3, deis_mode="tab"):
    """Diffusion exponential integrator sampler (multistep, 'tab' coefficients)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    coeff_list = _deis_coefficients(sigmas, max_order)
    buf: list[torch.Tensor] = []
    for i in _steps(sigmas):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, t_cur * s_in, **extra_args)
        _cb(callback, x, i, t_cur, t_cur, denoised)
        d = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next <= 0:
            order = 1
        if order == 1:
            x_next = x + (t_next - t_cur) * d
        else:
            c = coeff_list[i]
            x_next = x + c[0] * d
            for k in range(1, order):
                x_next = x_next + c[k] * buf[-k]
        _push(buf, d, max_order)
        x = x_next
    return x


# ----------------------------------------------------------------------------------------
# CFG++ Euler family, res_multistep, gradient estimation
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                  eta=1.0, s_noise=1.0, noise_sampler=None):
    """Euler ancestral with CFG++ (renoise with the unconditional prediction)."""
    extra_args = {} if extra_args is None else dict(extra_args)
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    ms = get_model_sampling(model)
    cap = _UncondCapture(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = cap.get(denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * sigma_to_half_log_snr(sigmas[i], ms).exp()
        alpha_t = sigmas[i + 1] * sigma_to_half_log_snr(sigmas[i + 1], ms).exp()
        d = to_d(x, sigmas[i], alpha_s * uncond)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta=eta)
        sigma_down = alpha_t * sigma_down
        x = alpha_t * denoised + sigma_down * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args, callback, disable, eta=0.0, s_noise=0.0)


@torch.no_grad()
def res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                  noise_sampler=None, eta=1.0, cfg_pp=False):
    """RES second-order multistep (exponential integrator in log sigma)."""
    extra_args = {} if extra_args is None else dict(extra_args)
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    cap = _UncondCapture(extra_args) if cfg_pp else None

    def phi1(t):
        return torch.expm1(t) / t

    def phi2(t):
        return (phi1(t) - 1.0) / t

    old_sigma_down = None
    old_denoised = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = cap.get(denoised) if cfg_pp else None
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        sigma_down = torch.as_tensor(sigma_down)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = _t_fn(sigmas[i]), _t_fn(old_sigma_down), _t_fn(sigma_down), _t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            p1, p2 = phi1(-h), phi2(-h)
            b1 = torch.nan_to_num(p1 - p2 / c2, nan=0.0)
            b2 = torch.nan_to_num(p2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
                x = _sigma_fn(h) * x + h * (b1 * uncond + b2 * old_denoised)
            else:
                x = _sigma_fn(h) * x + h * (b1 * denoised + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised = uncond if cfg_pp else denoised
        old_sigma_down = sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None):
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=0.0, cfg_pp=False)


@torch.no_grad()
def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None):
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=0.0, cfg_pp=True)


@torch.no_grad()
def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                   s_noise=1.0, noise_sampler=None):
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=eta, cfg_pp=False)


@torch.no_grad()
def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                          s_noise=1.0, noise_sampler=None):
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=eta, cfg_pp=True)


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma=2.0,
                               cfg_pp=False):
    """Gradient-estimation sampler (Euler plus a momentum-like correction)."""
    extra_args = {} if extra_args is None else dict(extra_args)
    s_in = x.new_ones([x.shape[0]])
    cap = _UncondCapture(extra_args) if cfg_pp else None
    old_d = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], cap.get(denoised) if cfg_pp else denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma=2.0):
    return sample_gradient_estimation(model, x, sigmas, extra_args, callback, disable, ge_gamma, cfg_pp=True)


# ----------------------------------------------------------------------------------------
# ER-SDE, SEEDS, SA-Solver
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def sample_er_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                  noise_sampler=None, noise_scaler=None, max_stage=3):
    """Extended reverse-time SDE solver (ER-SDE-Solver-3, VP form)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    if noise_scaler is None:
        def noise_scaler(v):
            return v * ((v ** 0.3).exp() + 10.0)
    n_points = 200.0
    point_idx = torch.arange(0, n_points, dtype=torch.float32, device=x.device)
    ms = get_model_sampling(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    er_lambdas = sigma_to_half_log_snr(sigmas, ms).neg().exp()
    old_denoised = None
    old_denoised_d = None
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            ls, lt = er_lambdas[i], er_lambdas[i + 1]
            alpha_s = sigmas[i] / ls
            alpha_t = sigmas[i + 1] / lt
            r_alpha = alpha_t / alpha_s
            r = noise_scaler(lt) / noise_scaler(ls)
            x = r_alpha * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = lt - ls
                step = -dt / n_points
                pos = lt + point_idx * step
                scaled = noise_scaler(pos)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (ls - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * noise_scaler(lt)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((pos - ls) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((ls - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * noise_scaler(lt)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * \
                    (lt ** 2 - ls ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0)
        old_denoised = denoised
    return x


def _phi1h(h):
    return torch.expm1(h)


def _phi2h(h):
    return (torch.expm1(h) - h) / h


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r=0.5, solver_type="phi_1"):
    """SEEDS-2: stochastic explicit exponential derivative-free solver, 2 stages."""
    if solver_type not in {"phi_1", "phi_2"}:
        raise ValueError("solver_type must be 'phi_1' or 'phi_2'")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    inject = eta > 0 and s_noise > 0
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    fac = 1 / (2 * r)
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = sigma_to_half_log_snr(sigmas[i], ms), sigma_to_half_log_snr(sigmas[i + 1], ms)
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r)
        sigma_s_1 = half_log_snr_to_sigma(lambda_s_1, ms)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_s_1 * _phi1h(-r * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r * h * eta).expm1().neg().sqrt() * noise_sampler(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)
        if solver_type == "phi_1":
            denoised_d = torch.lerp(denoised, denoised_2, fac)
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * _phi1h(-h_eta) * denoised_d
        else:
            b2 = _phi2h(-h_eta) / r
            b1 = _phi1h(-h_eta) - b2
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b2 * denoised_2)
        if inject:
            seg = (r - 1) * h * eta
            sde_noise = sde_noise * seg.exp()
            sde_noise = sde_noise + seg.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_s_1, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r_1=1.0 / 3, r_2=2.0 / 3):
    """SEEDS-3: three stages."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    inject = eta > 0 and s_noise > 0
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    for i in _steps(sigmas):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = sigma_to_half_log_snr(sigmas[i], ms), sigma_to_half_log_snr(sigmas[i + 1], ms)
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r_1)
        lambda_s_2 = torch.lerp(lambda_s, lambda_t, r_2)
        sigma_s_1, sigma_s_2 = half_log_snr_to_sigma(lambda_s_1, ms), half_log_snr_to_sigma(lambda_s_2, ms)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_s_2 = sigma_s_2 * lambda_s_2.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_s_1 * _phi1h(-r_1 * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise_sampler(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)
        a3_2 = r_2 / r_1 * _phi2h(-r_2 * h_eta)
        a3_1 = _phi1h(-r_2 * h_eta) - a3_2
        x_3 = sigma_s_2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2)
        if inject:
            seg = (r_1 - r_2) * h * eta
            sde_noise = sde_noise * seg.exp()
            sde_noise = sde_noise + seg.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_s_1, sigma_s_2)
            x_3 = x_3 + sde_noise * sigma_s_2 * s_noise
        denoised_3 = model(x_3, sigma_s_2 * s_in, **extra_args)
        b3 = _phi2h(-h_eta) / r_2
        b1 = _phi1h(-h_eta) - b3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        if inject:
            seg = (r_2 - 1) * h * eta
            sde_noise = sde_noise * seg.exp()
            sde_noise = sde_noise + seg.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_s_2, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def _sa_exponential_coeffs(s, t, order, tau):
    """(1+tau^2) * int_s^t exp((1+tau^2)(x - t)) x^p dx for p < order (integration by parts)."""
    k = 1 + tau ** 2
    h = t - s
    p = torch.arange(order, dtype=s.dtype, device=s.device)
    terms = t ** p - s ** p * (-k * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    logfact = (p + 1).lgamma()
    mat = logfact.unsqueeze(1) - logfact.unsqueeze(0)
    if tau > 0:
        mat = mat - depth * math.log(k)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0).to(s.dtype)
    mat = (mat.exp() * signs).tril()
    return mat @ terms


def _sa_b_coeffs(sigma_next, lambdas, lambda_s, lambda_t, tau, simple_order_2=False, corrector=False):
    n = lambdas.shape[0]
    k = 1 + tau ** 2
    h = lambda_t - lambda_s
    alpha_t = sigma_next * lambda_t.exp()
    if simple_order_2 and n == 2:
        if corrector:
            b_1 = alpha_t * (0.5 * k * h)
            b_2 = alpha_t * (-h * k).expm1().neg() - b_1
        else:
            b_2 = alpha_t * (0.5 * k * h ** 2) / (lambdas[-2] - lambda_s)
            b_1 = alpha_t * (-h * k).expm1().neg() - b_2
        return torch.stack([b_2, b_1])
    integrals = _sa_exponential_coeffs(lambda_s, lambda_t, n, tau)
    vander_t = torch.vander(lambdas, n, increasing=True).T
    return alpha_t * torch.linalg.solve(vander_t, integrals)


def sa_tau_interval(start_sigma: float, end_sigma: float, eta: float = 1.0):
    def tau(sigma):
        if eta <= 0:
            return 0.0
        sigma = float(sigma)
        return eta if start_sigma >= sigma >= end_sigma else 0.0
    return tau


@torch.no_grad()
def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=False, tau_func=None,
                     s_noise=1.0, noise_sampler=None, predictor_order=3, corrector_order=4, use_pece=False,
                     simple_order_2=False):
    """SA-Solver: stochastic Adams predictor-corrector in data prediction."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    ms = get_model_sampling(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    lambdas = sigma_to_half_log_snr(sigmas, ms)
    if tau_func is None:
        if ms is not None and hasattr(ms, "percent_to_sigma"):
            start_sigma, end_sigma = ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8)
        else:
            start_sigma, end_sigma = float("inf"), 0.0
        tau_func = sa_tau_interval(start_sigma, end_sigma, eta=1.0)
    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h = torch.zeros((), dtype=sigmas.dtype, device=sigmas.device)
    tau_t = 0.0
    noise = 0.0
    preds: list[torch.Tensor] = []
    lower_order_to_end = sigmas[-1].item() == 0
    for i in _steps(sigmas):
        denoised = model(x_pred, sigmas[i] * s_in, **extra_args)
        _cb(callback, x_pred, i, sigmas[i], sigmas[i], denoised)
        preds.append(denoised)
        preds = preds[-max_order:]
        p_order = min(predictor_order, len(preds))
        if i == 0 or (sigmas[i + 1] == 0 and not use_pece):
            c_order = 0
        else:
            c_order = min(corrector_order, len(preds))
        if lower_order_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            b = _sa_b_coeffs(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i], tau_t,
                             simple_order_2, corrector=True)
            mat = torch.stack(preds[-c_order:], dim=1)
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t ** 2) * h).exp() * x + torch.tensordot(mat, b.to(mat.dtype), dims=([1], [0]))
            if tau_t > 0 and s_noise > 0:
                x = x + noise
            if use_pece:
                denoised = model(x, sigmas[i] * s_in, **extra_args)
                preds[-1] = denoised
        if sigmas[i + 1] == 0:
            x_pred = denoised
        else:
            tau_t = tau_func(sigmas[i + 1])
            b = _sa_b_coeffs(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1], tau_t,
                             simple_order_2, corrector=False)
            mat = torch.stack(preds[-p_order:], dim=1)
            h = lambdas[i + 1] - lambdas[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t ** 2) * h).exp() * x + torch.tensordot(mat, b.to(mat.dtype), dims=([1], [0]))
            if tau_t > 0 and s_noise > 0:
                noise = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * tau_t ** 2 * h).expm1().neg().sqrt() * s_noise
                x_pred = x_pred + noise
    return x_pred


@torch.no_grad()
def sample_sa_solver_pece(model, x, sigmas, extra_args=None, callback=None, disable=False, tau_func=None,
                          s_noise=1.0, noise_sampler=None, predictor_order=3, corrector_order=4, simple_order_2=False):
    return sample_sa_solver(model, x, sigmas, extra_args, callback, disable, tau_func, s_noise, noise_sampler,
                            predictor_order, corrector_order, use_pece=True, simple_order_2=simple_order_2)


# ----------------------------------------------------------------------------------------
# UniPC
# ----------------------------------------------------------------------------------------
def _unipc_update(model_fn, x, model_prev, sigma_prev, sigma_t, order, variant, use_corrector):
    """One UniPC multistep update in data-prediction mode (lambda = -log sigma).
    Returns (x_t, model evaluation at the predicted x_t or None). The scalar coefficients
    are computed on the CPU in float64."""
    def lam(sig):
        return -math.log(float(sig))

    m0 = model_prev[-1]
    lam0 = lam(sigma_prev[-1])
    h = lam(sigma_t) - lam0
    rks = []
    D1s = []
    for i in range(1, order):
        rk = (lam(sigma_prev[-(i + 1)]) - lam0) / h
        rks.append(rk)
        D1s.append((model_prev[-(i + 1)] - m0) / rk)
    rks.append(1.0)
    rks_t = torch.tensor(rks, dtype=torch.float64)
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    B_h = hh if variant == "bh1" else math.expm1(hh)
    R = []
    b = []
    for i in range(1, order + 1):
        R.append(torch.pow(rks_t, i - 1))
        b.append(h_phi_k * factorial / B_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    R = torch.stack(R)
    b = torch.tensor(b, dtype=torch.float64)
    rhos_p = rhos_c = None
    if D1s:
        rhos_p = [0.5] if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    if use_corrector:
        rhos_c = [0.5] if order == 1 else torch.linalg.solve(R, b).tolist()
    x_t_ = (float(sigma_t) / float(sigma_prev[-1])) * x - h_phi_1 * m0
    pred_res = sum(rhos_p[k] * D1s[k] for k in range(len(D1s))) if D1s else 0
    x_t = x_t_ - B_h * pred_res
    model_t = None
    if use_corrector:
        model_t = model_fn(x_t, sigma_t)
        corr_res = sum(rhos_c[k] * D1s[k] for k in range(len(D1s))) if D1s else 0
        x_t = x_t_ - B_h * (corr_res + rhos_c[-1] * (model_t - m0))
    return x_t, model_t


@torch.no_grad()
def sample_unipc(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="bh1"):
    """UniPC multistep (predictor UniP + corrector UniC), order up to 3, data prediction.
    As in ComfyUI a final sigma of 0 is replaced by 0.001 and no corrector runs on the
    last step."""
    extra_args = {} if extra_args is None else extra_args
    sigmas = sigmas.clone()
    if sigmas[-1] == 0:
        sigmas[-1] = 0.001
    steps = len(sigmas) - 1
    if steps < 1:
        return x
    order = max(1, min(3, len(sigmas) - 2))
    s_in = x.new_ones([x.shape[0]])

    def model_fn(xx, sigma):
        return model(xx, sigma * s_in, **extra_args)

    m = model_fn(x, sigmas[0])
    _cb(callback, x, 0, sigmas[0], sigmas[0], m)
    model_prev = [m]
    sigma_prev = [sigmas[0]]
    for step in range(1, steps + 1):
        step_order = min(order, step, steps + 1 - step)
        use_corrector = step < steps
        x, model_x = _unipc_update(model_fn, x, model_prev, sigma_prev, sigmas[step], step_order, variant, use_corrector)
        if step < steps:
            if model_x is None:
                model_x = model_fn(x, sigmas[step])
            model_prev.append(model_x)
            sigma_prev.append(sigmas[step])
            if len(model_prev) > order:
                model_prev.pop(0)
                sigma_prev.pop(0)
            _cb(callback, x, step, sigmas[step], sigmas[step], model_x)
    return x


@torch.no_grad()
def sample_unipc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return sample_unipc(model, x, sigmas, extra_args, callback, disable, variant="bh2")
