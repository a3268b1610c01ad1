"""Context windows (ComfyUI's comfy/context_windows.py, the ContextWindowsManual node): a model
call over a long axis (video frames, or a batch) runs on overlapping windows of
``context_length`` indexes along ``dim`` and the windows' predictions are blended per index
with the fuse method's weights. The window schedules follow AnimateDiff-CLI's (uniform ones
move with the step through ``ordered_halving``); ``model_options["context_handler"]`` carries
the handler, and ``calc_cond_batch`` hands it the call."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from comfyui.engine.progress import throw_if_interrupted

STATIC_STANDARD = "standard_static"
UNIFORM_STANDARD = "standard_uniform"
UNIFORM_LOOPED = "looped_uniform"
BATCHED = "batched"
SCHEDULES = [STATIC_STANDARD, UNIFORM_STANDARD, UNIFORM_LOOPED, BATCHED]

PYRAMID = "pyramid"
RELATIVE = "relative"
FLAT = "flat"
OVERLAP_LINEAR = "overlap-linear"
FUSE_METHODS = [PYRAMID, RELATIVE, FLAT, OVERLAP_LINEAR]


def ordered_halving(val: int) -> float:
    """The 64-bit reversal of ``val`` as a fraction of 2^64: 0, 1/2, 1/4, 3/4, ... for 0, 1, 2, 3."""
    return int(f"{val:064b}"[::-1], 2) / (1 << 64)


# ------------------------------------------------------------------------- schedules
def _uniform(num_frames: int, h: "ContextHandler", step: int, looped: bool) -> list[list[int]]:
    stride = min(h.context_stride, int(np.ceil(np.log2(num_frames / h.context_length))) + 1)
    windows = []
    for context_step in 1 << np.arange(stride):
        pad = int(round(num_frames * ordered_halving(step)))
        end = num_frames + pad + (0 if looped and h.closed_loop else -h.context_overlap)
        for j in range(int(ordered_halving(step) * context_step) + pad, end,
                       h.context_length * context_step - h.context_overlap):
            windows.append([e % num_frames for e in range(j, j + h.context_length * context_step, context_step)])
    return windows


def _roll_index(window: list[int]) -> int | None:
    for i in range(1, len(window)):
        if window[i] < window[i - 1]:
            return i
    return None


def windows_uniform_looped(num_frames: int, h: "ContextHandler", step: int) -> list[list[int]]:
    if num_frames < h.context_length:
        return [list(range(num_frames))]
    return _uniform(num_frames, h, step, looped=True)


def windows_uniform_standard(num_frames: int, h: "ContextHandler", step: int) -> list[list[int]]:
    """Uniform windows where one that wraps past the end is slid back to end at the last
    index instead (a window starting at the wrapped value is added if the next lacks it);
    repeated windows are dropped."""
    if num_frames <= h.context_length:
        return [list(range(num_frames))]
    windows = _uniform(num_frames, h, step, looped=False)
    i = 0
    duplicates = []
    while i < len(windows):
        roll = _roll_index(windows[i])
        if roll is not None:
            rolled_to = windows[i][roll]
            start = windows[i][0]
            relative = [(v - start + num_frames) % num_frames for v in windows[i]]
            windows[i] = [v + num_frames - relative[-1] - 1 for v in relative]
            if rolled_to not in windows[(i + 1) % len(windows)]:
                windows.insert(i + 1, list(range(rolled_to, rolled_to + h.context_length)))
        if any(windows[i] == windows[j] for j in range(i)):
            duplicates.append(i)
        i += 1
    for i in reversed(duplicates):
        windows.pop(i)
    return windows


def windows_static_standard(num_frames: int, h: "ContextHandler", step: int) -> list[list[int]]:
    """Fixed windows every context_length - overlap; the last one moved back to end at the end."""
    if num_frames <= h.context_length:
        return [list(range(num_frames))]
    windows = []
    for start in range(0, num_frames, h.context_length - h.context_overlap):
        if start + h.context_length >= num_frames:
            start = num_frames - h.context_length
            windows.append(list(range(start, start + h.context_length)))
            break
        windows.append(list(range(start, start + h.context_length)))
    return windows


def windows_batched(num_frames: int, h: "ContextHandler", step: int) -> list[list[int]]:
    """Consecutive windows without overlap; the last may be shorter."""
    if num_frames <= h.context_length:
        return [list(range(num_frames))]
    return [list(range(s, min(s + h.context_length, num_frames))) for s in range(0, num_frames, h.context_length)]


SCHEDULE_FUNCTIONS = {UNIFORM_LOOPED: windows_uniform_looped, UNIFORM_STANDARD: windows_uniform_standard,
                      STATIC_STANDARD: windows_static_standard, BATCHED: windows_batched}


# ------------------------------------------------------------------------- weights
def weights_pyramid(length: int, **_) -> list[float]:
    """1, 2, ..., peak, ..., 2, 1 (FreeNoise's weighted average)."""
    peak = (length + 1) // 2
    return [float(min(i + 1, length - i, peak)) for i in range(length)]


def weights_flat(length: int, **_) -> list[float]:
    return [1.0] * length


def weights_overlap_linear(length: int, full_length: int, idxs: list[int], overlap: int, **_) -> list[float]:
    """1 except linear ramps over the overlap on the sides that meet another window."""
    w = torch.ones(length)
    if min(idxs) > 0:
        w[:overlap] = torch.linspace(1e-37, 1, overlap)
    if max(idxs) < full_length - 1:
        w[length - overlap:] = torch.linspace(1, 1e-37, overlap)
    return w.tolist()


WEIGHT_FUNCTIONS = {PYRAMID: weights_pyramid, RELATIVE: weights_pyramid, FLAT: weights_flat,
                    OVERLAP_LINEAR: weights_overlap_linear}


def _along(weights, x: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * x.ndim
    shape[dim] = len(weights)
    return torch.tensor(weights, dtype=x.dtype, device=x.device).reshape(shape)


def _take(t: torch.Tensor, idx: list[int], dim: int) -> torch.Tensor:
    return t[(slice(None),) * dim + (idx,)]


class ContextHandler:
    def __init__(self, schedule: str, fuse_method: str, context_length: int, context_overlap: int,
                 context_stride: int, closed_loop: bool, dim: int):
        if schedule not in SCHEDULE_FUNCTIONS:
            raise ValueError(f"Unknown context_schedule {schedule!r}; expected one of {SCHEDULES}")
        if fuse_method not in WEIGHT_FUNCTIONS:
            raise ValueError(f"Unknown fuse_method {fuse_method!r}; expected one of {FUSE_METHODS}")
        if context_overlap >= context_length:
            raise ValueError(f"context_overlap ({context_overlap}) must be smaller than context_length "
                             f"({context_length})")
        self.schedule = schedule
        self.fuse_method = fuse_method
        self.context_length = context_length
        self.context_overlap = context_overlap
        self.context_stride = context_stride
        self.closed_loop = closed_loop
        self.dim = dim

    def should_use_context(self, x: torch.Tensor) -> bool:
        return self.dim < x.ndim and x.shape[self.dim] > self.context_length

    def windows(self, num_frames: int, step: int) -> list[list[int]]:
        return SCHEDULE_FUNCTIONS[self.schedule](num_frames, self, step)

    def _resized_conds(self, conds: list[dict] | None, x: torch.Tensor, idx: list[int]) -> list[dict] | None:
        """Entries' tensors that span the windowed axis, cut to the window."""
        if conds is None:
            return None
        out = []
        for entry in conds:
            entry = dict(entry)
            for key, value in entry.items():
                if isinstance(value, torch.Tensor) and self.dim < value.ndim \
                        and value.shape[self.dim] == x.shape[self.dim]:
                    entry[key] = _take(value, idx, self.dim)
            out.append(entry)
        return out

    def execute(self, calc: Callable, model, conds: list, x: torch.Tensor, timestep: torch.Tensor,
                model_options: dict) -> list[torch.Tensor]:
        sample_sigmas = model_options["transformer_options"]["sample_sigmas"]
        matches = torch.nonzero(torch.isclose(sample_sigmas, timestep[0].to(sample_sigmas), rtol=1e-4))
        step = int(matches[0].item()) if matches.numel() else 0
        full = x.shape[self.dim]
        count_shape = [1] * x.ndim
        count_shape[self.dim] = full
        relative = self.fuse_method == RELATIVE
        outs = [torch.zeros_like(x) for _ in conds]
        counts = [torch.zeros(count_shape, device=x.device, dtype=x.dtype) for _ in conds]
        for idx in self.windows(full, step):
            throw_if_interrupted()
            model_options["transformer_options"]["context_window"] = idx
            sub_t = timestep if timestep.shape[0] == 1 or self.dim != 0 else timestep[idx]
            sub_conds = [self._resized_conds(c, x, idx) for c in conds]
            results = calc(model, sub_conds, _take(x, idx, self.dim), sub_t, model_options)
            if relative:
                # a running average per index weighted by closeness to the window's centre
                centre, half = (idx[0] + idx[-1]) / 2, (idx[-1] - idx[0] + 1e-2) / 2
                bias = _along([max(1e-2, 1 - abs(i - centre) / half) for i in idx], x, self.dim)
                for o, c, r in zip(outs, counts, results):
                    total = _take(c, idx, self.dim)
                    o[(slice(None),) * self.dim + (idx,)] = (_take(o, idx, self.dim) * total + r * bias) / (total + bias)
                    c[(slice(None),) * self.dim + (idx,)] = total + bias
            else:
                w = _along(WEIGHT_FUNCTIONS[self.fuse_method](len(idx), full_length=full, idxs=idx,
                                                              overlap=self.context_overlap), x, self.dim)
                for o, c, r in zip(outs, counts, results):
                    o[(slice(None),) * self.dim + (idx,)] += r * w
                    c[(slice(None),) * self.dim + (idx,)] += w
        if relative:
            return outs
        return [o / c for o, c in zip(outs, counts)]
