"""``comfy.controlnet``: ControlNets, ControlLoRAs and T2I adapters (:mod:`comfyui.models.controlnet`)
under upstream's names. Kinds this implementation does not load (SD3.5, Flux, HunyuanDiT ...)
are importable and raise NotSupportedError when used."""
import enum

from comfyui.compat import _unsupported
from comfyui.models.controlnet import (ControlBase, ControlLora, ControlNet, T2IAdapter,  # noqa: F401
                                       broadcast_image_to, load_controlnet, load_controlnet_state_dict,
                                       load_t2i_adapter)


class StrengthType(enum.Enum):
    CONSTANT = 1
    LINEAR_UP = 2


__getattr__ = _unsupported.module_getattr(__name__, {
    "ControlNetSD35", "ControlLoraOps", "controlnet_config", "controlnet_load_state_dict", "load_controlnet_mmdit",
    "load_controlnet_hunyuandit", "load_controlnet_flux_xlabs_mistoline", "load_controlnet_flux_instantx",
    "load_controlnet_qwen_instantx", "convert_mistoline", "load_controlnet_model_patch",
}, "this ControlNet kind is not implemented")
