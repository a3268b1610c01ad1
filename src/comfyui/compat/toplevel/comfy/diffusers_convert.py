"""``comfy.diffusers_convert``: diffusers -> original (LDM) key conversions (:mod:`comfyui.models.convert`)."""
from comfyui.compat import _unsupported
from comfyui.models.convert import diffusers_vae_to_ldm as convert_vae_state_dict  # noqa: F401

__getattr__ = _unsupported.module_getattr(__name__, {
    "convert_text_enc_state_dict", "convert_text_enc_state_dict_v20", "reshape_weight_for_sd", "cat_tensors",
}, "diffusers text encoder conversion lives in comfyui.models.convert under other names")
