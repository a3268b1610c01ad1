"""The Stable Diffusion UNet family: SD1.x, SD2.x (eps and v-prediction), SD 2.1 unCLIP,
SDXL base and refiner, each with its 9-channel inpainting variant, and Lotus-D (an SD2 UNet
that estimates depth).

A family entry per sampling/conditioning variant; :mod:`comfyui.models.registry` tries them
in this order (upstream ComfyUI's), so the more specific rules come first.
"""
from __future__ import annotations

import torch

from ..family import Family
from ..latent_formats import SD15, SDXL
from . import detect
from .diffusers import from_diffusers_file
from .model import LotusModel, SD21UNCLIPModel, SDXLModel, SDXLRefinerModel, UNetBaseModel, lora_key_map

_HALF = (torch.float16, torch.bfloat16, torch.float32)
# what every SD family entry shares
_SD = dict(lora_key_map=lora_key_map, diffusers_to_native=from_diffusers_file, describe=detect.describe_unet)

FAMILIES = (
    Family("lotus_d", detect.detect_lotus, LotusModel, SD15, {"type": "img_to_img"}, clip_type="sd2",
           supported_dtypes=_HALF, **_SD),
    Family("sd15", detect.detect_sd15, UNetBaseModel, SD15, {"type": "eps"}, clip_type="sd1",
           supported_dtypes=(torch.float16, torch.float32), variant=detect.inpaint_variant("sd15"), **_SD),
    Family("sd20_v", detect.detect_sd20_v, UNetBaseModel, SD15, {"type": "v_prediction"}, clip_type="sd2",
           supported_dtypes=_HALF, variant=detect.inpaint_variant("sd20_v"), **_SD),
    Family("sd20", detect.detect_sd20, UNetBaseModel, SD15, {"type": "eps"}, clip_type="sd2",
           supported_dtypes=_HALF, variant=detect.inpaint_variant("sd20"), **_SD),
    Family("sd21_unclip_v", detect.detect_sd21_unclip_v, SD21UNCLIPModel, SD15, {"type": "v_prediction"},
           clip_type="sd2", supported_dtypes=_HALF, **_SD),
    Family("sd21_unclip", detect.detect_sd21_unclip, SD21UNCLIPModel, SD15, {"type": "eps"}, clip_type="sd2",
           supported_dtypes=_HALF, **_SD),
    Family("sdxl_refiner", detect.detect_sdxl_refiner, SDXLRefinerModel, SDXL, {"type": "eps"},
           clip_type="sdxl_refiner", supported_dtypes=_HALF, **_SD),
    Family("sdxl", detect.detect_sdxl, SDXLModel, SDXL, {"type": "eps"}, clip_type="sdxl",
           memory_usage_factor=0.8, supported_dtypes=_HALF, variant=detect.inpaint_variant("sdxl"), **_SD),
)
