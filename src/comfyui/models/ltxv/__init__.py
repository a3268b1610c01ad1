"""LTX-Video 0.9.x (Lightricks): the video DiT (:mod:`.model`), its BaseModel (:mod:`.base`),
shape-derived detection with the file's metadata config (:mod:`.detection`).

Sampling: upstream's FLUX type with shift 2.37 (the workflows set sigmas with LTXVScheduler);
latent format ``LTXV`` (128 channels, scale 1: the VAE normalises with per-channel statistics);
text encoder type ``ltxv`` (T5-XXL).
"""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import LTXV as LTXVLatent
from .base import LTXV
from .detection import detect

FAMILIES = (
    Family("ltxv", detect, LTXV, LTXVLatent, {"type": "flux", "shift": 2.37}, clip_type="ltxv",
           memory_usage_factor=5.5, supported_dtypes=(torch.bfloat16, torch.float32)),
)
