"""``comfy.model_base``: the MODEL's network classes (:mod:`comfyui.models.base`, the families' packages).

``BaseModel`` and the SD2.1 unCLIP / SDXL classes are ours under upstream's names; ``ModelType``
has upstream's members and values. Families this implementation does not run are importable
(packs subclass or compare against them) and raise NotSupportedError when built.
"""
from __future__ import annotations

import enum

import torch

from comfyui.compat import _unsupported
from comfyui.models.base import BaseModel  # noqa: F401
from comfyui.models.stable_diffusion.model import SD21UNCLIPModel as SD21UNCLIP  # noqa: F401
from comfyui.models.stable_diffusion.model import SDXLModel as SDXL, SDXLRefinerModel as SDXLRefiner  # noqa: F401
from comfyui.sampling import model_sampling as _ms


class ModelType(enum.Enum):
    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6
    V_PREDICTION_CONTINUOUS = 7
    FLUX = 8
    IMG_TO_IMG = 9
    FLOW_COSMOS = 10


# the ModelTypes we have schedules for, as our sampling types ("type" of a family's sampling);
# the others need a continuous schedule this implementation does not have
_SAMPLING_TYPE = {ModelType.EPS: "eps", ModelType.V_PREDICTION: "v_prediction", ModelType.IMG_TO_IMG: "img_to_img",
                  ModelType.FLOW: "flow", ModelType.FLUX: "flux"}


def model_sampling(model_config, model_type: ModelType):
    """The model_sampling object for ``model_type`` and a model config (its sampling_settings)."""
    kind = _SAMPLING_TYPE.get(model_type)
    if kind is None:
        raise _unsupported.NotSupportedError(f"comfy.model_base.model_sampling: {model_type} is not supported")
    settings = getattr(model_config, "sampling_settings", None) or {}
    return _ms.model_sampling_from_settings({**settings, "type": kind})


def convert_tensor(extra, dtype, device):
    """Move a conditioning tensor to ``device``; float tensors also to ``dtype``."""
    if hasattr(extra, "dtype") and extra.dtype not in (torch.int, torch.long):
        return extra.to(device=device, dtype=dtype)
    return extra.to(device=device)


__getattr__ = _unsupported.module_getattr(__name__, {
    "SVD_img2vid", "SV3D_u", "SV3D_p", "Stable_Zero123", "SD_X4Upscaler", "IP2P",
    "SD15_instructpix2pix", "SDXL_instructpix2pix", "Lotus", "StableCascade_C", "StableCascade_B", "SD3",
    "AuraFlow", "StableAudio1", "HunyuanDiT", "PixArt", "Flux", "GenmoMochi", "LTXV", "HunyuanVideo",
    "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V", "CosmosVideo", "CosmosPredict2", "Lumina2", "WAN21",
    "WAN21_Vace", "WAN21_Camera", "WAN21_HuMo", "WAN22_Animate", "WAN22_S2V", "WAN22", "Hunyuan3Dv2",
    "Hunyuan3Dv2_1", "HiDream", "Chroma", "ChromaRadiance", "ACEStep", "Omnigen2", "QwenImage",
    "HunyuanImage21", "HunyuanImage21Refiner", "unclip_adm", "sdxl_pooled",
}, "this model family is not implemented")
