"""The Wan family: Wan 2.1 text/image-to-video (t2v, i2v, first-last frame, Fun-Control,
Fun-InP) and Wan 2.2 (14B experts: the Wan 2.1 layout; 5B: 48-channel latents) -- the
transformer (:mod:`.model`, native keys), its BaseModel (:mod:`.base`), shape-derived
detection (:mod:`.detection`). Discrete flow sampling with shift 8 (timestep = sigma * 1000),
the ``Wan21`` / ``Wan22`` latent formats, CLIP type ``wan`` (UMT5-XXL)."""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import Wan21, Wan22
from .base import Wan22Model, WanBaseModel
from .detection import describe, detect_wan21, detect_wan22, variant

_SAMPLING = {"type": "flow", "shift": 8.0, "multiplier": 1000}
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

FAMILIES = (
    Family("wan21", detect_wan21, WanBaseModel, Wan21, _SAMPLING, clip_type="wan", memory_usage_factor=0.9,
           supported_dtypes=_DTYPES, variant=variant, describe=describe),
    Family("wan22_5b", detect_wan22, Wan22Model, Wan22, _SAMPLING, clip_type="wan", memory_usage_factor=1.4,
           supported_dtypes=_DTYPES, variant=variant),
)
