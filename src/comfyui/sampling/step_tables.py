"""Published noise-level tables and the schedules built on them: Align Your Steps (NVIDIA,
Sabour et al. 2024), GITS (Chen et al. 2024) and OptimalSteps (Pei et al. 2025). A table of
a different length than steps + 1 is log-linearly resampled, as the papers' how-tos do."""
from __future__ import annotations

import functools
import json
import os

import numpy as np
import torch

# https://research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html (10-step schedules)
AYS_NOISE_LEVELS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}

# https://github.com/bebebe666/OptimalSteps (flow-matching sigmas)
OPTIMAL_NOISE_LEVELS = {
    "FLUX": [0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.001],
    "Wan": [1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968, 0.96, 0.946, 0.927,
            0.902, 0.864, 0.776, 0.539, 0.208, 0.001],
    "Chroma": [0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943, 0.931, 0.917, 0.9,
               0.881, 0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646, 0.599, 0.55, 0.501, 0.451, 0.402, 0.355,
               0.311, 0.27, 0.232, 0.199, 0.169, 0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001],
}


@functools.lru_cache(maxsize=1)
def gits_noise_levels() -> dict[str, list[list[float]]]:
    """GITS tables keyed by coefficient ("0.80" ... "1.50"); row i holds i + 3 sigmas (2..20 steps)."""
    with open(os.path.join(os.path.dirname(__file__), "gits_steps.json")) as f:
        return json.load(f)["coeffs"]


def loglinear_interp(levels, num: int) -> np.ndarray:
    """``num`` decreasing values whose logs interpolate the logs of ``levels`` (decreasing)
    linearly over evenly spaced positions."""
    ys = np.log(np.asarray(levels, dtype=np.float64)[::-1])
    xs = np.linspace(0.0, 1.0, len(ys))
    return np.exp(np.interp(np.linspace(0.0, 1.0, num), xs, ys))[::-1].copy()


def _finish(levels, steps: int, denoise: float) -> torch.Tensor:
    """The last ``round(steps * denoise)`` steps of the schedule, ending at 0."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    total = steps if denoise >= 1.0 else round(steps * denoise)
    sigmas = list(np.asarray(levels, dtype=np.float64)[-(total + 1):])
    sigmas[-1] = 0.0
    return torch.FloatTensor(sigmas)


def table_schedule(levels, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """AYS / OptimalSteps: the table itself for its native length, else resampled to steps + 1."""
    if len(levels) != steps + 1:
        levels = loglinear_interp(levels, steps + 1)
    return _finish(levels, steps, denoise)


def gits_schedule(coeff: float, steps: int, denoise: float = 1.0) -> torch.Tensor:
    rows = gits_noise_levels()[f"{round(coeff, 2):.2f}"]
    levels = rows[steps - 2] if steps <= 20 else loglinear_interp(rows[-1], steps + 1)
    return _finish(levels, steps, denoise)
