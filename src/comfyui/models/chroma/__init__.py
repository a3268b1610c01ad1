"""The Chroma family (Chroma1-HD, Chroma v48-v50: ``chroma1-hd.safetensors``,
``chroma-unlocked-v50.safetensors``): a Flux.1-schnell derivative whose blocks take their
modulation from one ``distilled_guidance_layer`` approximator (:mod:`.model`), its BaseModel
(:mod:`.base`), shape-derived detection (:mod:`.detection`) and the diffusers key map
(:mod:`.convert`: a diffusers-layout transformer loads through UNETLoader too) and the
LoRA names (:func:`.convert.lora_key_map`).

As upstream: Flux's 16-channel latent format, ComfyUI's ModelSamplingFlux schedule (shift
1.15; the workflows patch it with ModelSamplingAuraFlow) with multiplier 1, T5-XXL alone as
text encoder (CLIP type ``chroma``: no padding to a minimum length). Chroma Radiance
(:mod:`.radiance`): the same transformer on 16x16 RGB patches with a per-patch NeRF head, the
pixel-space latent format (the ``pixel_space`` VAE), memory factor 0.038 as upstream.
"""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import ChromaRadiance as RadianceLatent
from ..latent_formats import Flux as FluxLatent
from .base import ChromaModel, ChromaRadianceModel
from .convert import diffusers_to_native, lora_key_map
from .detection import describe, detect, detect_radiance

_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
FAMILIES = (
    Family("chroma", detect, ChromaModel, FluxLatent, {"type": "flux", "shift": 1.15, "multiplier": 1.0},
           clip_type="chroma", memory_usage_factor=3.2, supported_dtypes=_DTYPES,
           diffusers_to_native=diffusers_to_native, lora_key_map=lora_key_map),
    Family("chroma_radiance", detect_radiance, ChromaRadianceModel, RadianceLatent,
           {"type": "flux", "shift": 1.15, "multiplier": 1.0}, clip_type="chroma", memory_usage_factor=0.038,
           supported_dtypes=_DTYPES, describe=describe),
)
