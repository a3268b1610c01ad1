"""``comfy.controlnet``: ControlNets, ControlLoRAs and T2I adapters (:mod:`comfyui.models.controlnet`)
under upstream's names. Kinds this implementation does not load (HunyuanDiT, Qwen ...) are
importable and raise NotSupportedError when used."""
import enum

from comfyui.compat import _unsupported
from comfyui.models.controlnet import (ControlBase, ControlLora, ControlNet, T2IAdapter,  # noqa: F401
                                       broadcast_image_to, load_controlnet, load_controlnet_state_dict,
                                       load_t2i_adapter)
from comfyui.models.controlnet import flux as _flux
from comfyui.models.controlnet import mmdit as _mmdit
from comfyui.models.controlnet.mmdit import ControlNetSD35  # noqa: F401


def load_controlnet_sd35(sd, model_options={}):  # noqa: B006 (upstream's signature)
    return _mmdit.load_sd35(sd)


def load_controlnet_mmdit(sd, model_options={}):  # noqa: B006
    return _mmdit.load_sd3_diffusers(sd)


def load_controlnet_flux_xlabs_mistoline(sd, mistoline=False, model_options={}):  # noqa: B006
    return _flux.load_xlabs(sd, mistoline=mistoline)


def load_controlnet_flux_instantx(sd, model_options={}):  # noqa: B006
    return _flux.load_instantx(sd)


def convert_mistoline(sd):
    return {("controlnet_single_blocks." + k[len("single_controlnet_blocks."):]
             if k.startswith("single_controlnet_blocks.") else k): v for k, v in sd.items()}


class StrengthType(enum.Enum):
    CONSTANT = 1
    LINEAR_UP = 2


__getattr__ = _unsupported.module_getattr(__name__, {
    "ControlLoraOps", "controlnet_config", "controlnet_load_state_dict",
    "load_controlnet_hunyuandit", "load_controlnet_qwen_instantx", "load_controlnet_model_patch",
}, "this ControlNet kind is not implemented")
