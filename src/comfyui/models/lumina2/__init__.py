"""The Lumina 2 family: Lumina-Image 2.0 and Z-Image (Turbo), NextDiT transformers on flow
matching with the 16-channel Flux VAE; text: CLIP type ``lumina2`` (Qwen3-4B for Z-Image).

Sampling as upstream ComfyUI: flow (the AuraFlow schedule: sigma = shifted t, the network
timestep = sigma), shift 3 for Z-Image and 6 for Lumina 2; ``ModelSamplingAuraFlow`` sets the
shift in a workflow.
"""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import Flux
from . import detect
from .lora import lora_key_map
from .model import Lumina2Model

_DTYPES = (torch.bfloat16, torch.float32)

FAMILIES = (
    Family("z_image", detect.detect_z_image, Lumina2Model, Flux, {"type": "flow", "shift": 3.0, "multiplier": 1.0},
           clip_type="lumina2", memory_usage_factor=2.8, supported_dtypes=_DTYPES, lora_key_map=lora_key_map),
    Family("lumina2", detect.detect_lumina2, Lumina2Model, Flux, {"type": "flow", "shift": 6.0, "multiplier": 1.0},
           clip_type="lumina2", memory_usage_factor=1.4, supported_dtypes=_DTYPES, lora_key_map=lora_key_map),
)
