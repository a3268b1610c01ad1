"""Sigma schedules: KSampler's scheduler list (``SCHEDULER_NAMES``, ComfyUI's order) and
``calculate_sigmas(model_sampling, name, steps)``. Every schedule has ``steps + 1`` values,
decreasing, normally ending in 0."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from .k_diffusion import (get_sigmas_exponential, get_sigmas_karras, get_sigmas_polyexponential,  # noqa: F401
                          get_sigmas_vp)
from .names import SCHEDULER_NAMES


def simple_scheduler(model_sampling, steps):
    s = model_sampling
    ss = len(s.sigmas) / steps
    sigs = [float(s.sigmas[-(1 + int(x * ss))]) for x in range(steps)]
    sigs.append(0.0)
    return torch.FloatTensor(sigs)


def ddim_scheduler(model_sampling, steps):
    s = model_sampling
    x = 1
    if math.isclose(float(s.sigmas[x]), 0, abs_tol=0.00001):
        steps += 1
        sigs = []
    else:
        sigs = [0.0]
    ss = max(len(s.sigmas) // steps, 1)
    while x < len(s.sigmas):
        sigs.append(float(s.sigmas[x]))
        x += ss
    return torch.FloatTensor(sigs[::-1])


def normal_scheduler(model_sampling, steps, sgm=False, floor=False):
    s = model_sampling
    start = s.timestep(s.sigma_max)
    end = s.timestep(s.sigma_min)
    append_zero = True
    if sgm:
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(s.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(float(start), float(end), steps)
    sigs = [float(s.sigma(ts)) for ts in timesteps]
    if append_zero:
        sigs.append(0.0)
    return torch.FloatTensor(sigs)


def beta_scheduler(model_sampling, steps, alpha=0.6, beta=0.6):
    """Timesteps at the quantiles of a Beta(alpha, beta) distribution."""
    from scipy import stats

    total_timesteps = len(model_sampling.sigmas) - 1
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(stats.beta.ppf(ts, alpha, beta) * total_timesteps)
    sigs = []
    last_t = -1
    for t in ts:
        if t != last_t:
            sigs.append(float(model_sampling.sigmas[int(t)]))
        last_t = t
    sigs.append(0.0)
    return torch.FloatTensor(sigs)


def linear_quadratic_schedule(model_sampling, steps, threshold_noise=0.025, linear_steps=None):
    if steps == 1:
        sched = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quad_coef = diff / (linear_steps * quadratic_steps ** 2)
        lin_coef = threshold_noise / linear_steps - 2 * diff / (quadratic_steps ** 2)
        const = quad_coef * (linear_steps ** 2)
        quadratic = [quad_coef * (i ** 2) + lin_coef * i + const for i in range(linear_steps, steps)]
        sched = [1.0 - v for v in linear + quadratic + [1.0]]
    return torch.FloatTensor(sched) * model_sampling.sigma_max.cpu()


def kl_optimal_scheduler(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    adj = torch.arange(n, dtype=torch.float).div_(n - 1) if n > 1 else torch.zeros(1)
    sigmas = adj.new_zeros(n + 1)
    sigmas[:-1] = (adj * math.atan(sigma_min) + (1 - adj) * math.atan(sigma_max)).tan_()
    return sigmas


class SchedulerHandler(NamedTuple):
    handler: Callable
    # True: handler(model_sampling, steps); False: handler(n=steps, sigma_min=, sigma_max=)
    use_ms: bool = True


SCHEDULER_HANDLERS: dict[str, SchedulerHandler] = {
    "simple": SchedulerHandler(simple_scheduler),
    "sgm_uniform": SchedulerHandler(lambda ms, steps: normal_scheduler(ms, steps, sgm=True)),
    "karras": SchedulerHandler(get_sigmas_karras, use_ms=False),
    "exponential": SchedulerHandler(get_sigmas_exponential, use_ms=False),
    "ddim_uniform": SchedulerHandler(ddim_scheduler),
    "beta": SchedulerHandler(beta_scheduler),
    "normal": SchedulerHandler(normal_scheduler),
    "linear_quadratic": SchedulerHandler(linear_quadratic_schedule),
    "kl_optimal": SchedulerHandler(kl_optimal_scheduler, use_ms=False),
}
# SCHEDULER_NAMES (from .names: one definition, torch-free, read by the node modules) lists these keys
if SCHEDULER_NAMES != list(SCHEDULER_HANDLERS):
    raise RuntimeError("sampling.names.SCHEDULER_NAMES is out of sync with SCHEDULER_HANDLERS")


def calculate_sigmas(model_sampling, scheduler_name: str, steps: int) -> torch.Tensor:
    handler = SCHEDULER_HANDLERS.get(scheduler_name)
    if handler is None:
        raise ValueError(f"invalid scheduler {scheduler_name!r}")
    if handler.use_ms:
        return handler.handler(model_sampling, steps)
    return handler.handler(n=steps, sigma_min=float(model_sampling.sigma_min),
                           sigma_max=float(model_sampling.sigma_max))
