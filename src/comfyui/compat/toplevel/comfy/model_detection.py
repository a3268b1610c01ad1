"""``comfy.model_detection``: which model a state dict holds (:mod:`comfyui.models.registry`).

``model_config_from_unet(state_dict, unet_key_prefix)`` returns our ModelConfig view (name,
unet_config, latent_format, sampling_settings ...), or None when the weights are not a model we
know (``use_base_if_no_match`` has no base config to fall back on). The rest of upstream's
module is not provided.
"""
from comfyui.compat import _unsupported
from comfyui.models import registry as _registry
from comfyui.models.base import ModelConfig as _ModelConfig
from comfyui.models.convert import unet_config_from_diffusers  # noqa: F401


def model_config_from_unet(state_dict, unet_key_prefix, use_base_if_no_match=False, metadata=None):
    try:
        family, config = _registry.detect_family(state_dict, unet_key_prefix)
    except _registry.UnknownModelError:
        return None
    return _ModelConfig(family.variant_name(config), config, family.latent_format, dict(family.sampling),
                        family.memory_usage_factor, family.supported_dtypes)


def count_blocks(state_dict_keys, prefix_string: str) -> int:
    """How many ``prefix_string.format(n)`` key prefixes exist for n = 0, 1, ... (stops at a gap)."""
    count = 0
    while any(k.startswith(prefix_string.format(count)) for k in state_dict_keys):
        count += 1
    return count


__getattr__ = _unsupported.module_getattr(__name__, {
    "detect_unet_config", "unet_prefix_from_state_dict", "convert_config", "unet_config_from_diffusers_unet",
    "model_config_from_diffusers_unet", "model_config_from_unet_config", "convert_diffusers_mmdit",
}, "")
