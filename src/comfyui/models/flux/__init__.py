"""The Flux.1 family: dev (guidance-distilled), schnell, Fill (96 input channels), Canny/Depth
(32) and Kontext (reference latents) -- one transformer (:mod:`.model`), its BaseModel
(:mod:`.base`), shape-derived detection (:mod:`.detection`) and the diffusers key map
(:mod:`.convert`).

Two family entries, tried in this order: ``flux`` (a guidance embedding: dev and its
variants; ComfyUI's ModelSamplingFlux, shift 1.15) and ``flux_schnell`` (no guidance
embedding; discrete flow, shift 1, multiplier 1). Both use the 16-channel VAE's latent format
and the ``flux`` text encoders (CLIP-L pooled + T5-XXL).
"""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import Flux as FluxLatent
from .base import FluxModel
from .convert import diffusers_to_native, lora_key_map
from .detection import detect, variant


def _detect_dev(sd, prefix):
    config = detect(sd, prefix)
    return config if config is not None and config["guidance_embed"] else None


def _detect_schnell(sd, prefix):
    config = detect(sd, prefix)
    return config if config is not None and not config["guidance_embed"] else None


_DTYPES = (torch.bfloat16, torch.float16, torch.float32)

FAMILIES = (
    Family("flux", _detect_dev, FluxModel, FluxLatent, {"type": "flux", "shift": 1.15}, clip_type="flux",
           memory_usage_factor=3.1, supported_dtypes=_DTYPES, diffusers_to_native=diffusers_to_native,
           variant=variant, lora_key_map=lora_key_map),
    Family("flux_schnell", _detect_schnell, FluxModel, FluxLatent, {"type": "flow", "shift": 1.0, "multiplier": 1.0},
           clip_type="flux", memory_usage_factor=3.1, supported_dtypes=_DTYPES,
           diffusers_to_native=diffusers_to_native, variant=variant, lora_key_map=lora_key_map),
)
