"""The SD3 / SD3.5 family: the MMDiT (SD3 medium, SD3.5 large) and MMDiT-X (SD3.5 medium) --
the network (:mod:`.mmdit`), its BaseModel (:mod:`.base`), shape-derived detection
(:mod:`.detection`) and the diffusers key map (:mod:`.convert`). Discrete flow sampling with
shift 3 (timestep = sigma * 1000), the SD3 latent format (16 channels, scale 1.5305, shift
0.0609), the ``sd3`` text encoders (CLIP-L + CLIP-G + T5-XXL)."""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import SD3 as SD3Latent
from .base import SD3Model
from .convert import diffusers_to_native, lora_key_map
from .detection import detect, variant

FAMILIES = (
    Family("sd3", detect, SD3Model, SD3Latent, {"type": "flow", "shift": 3.0, "multiplier": 1000},
           clip_type="sd3", memory_usage_factor=1.2,
           supported_dtypes=(torch.float16, torch.bfloat16, torch.float32),
           diffusers_to_native=diffusers_to_native, variant=variant, lora_key_map=lora_key_map),
)
