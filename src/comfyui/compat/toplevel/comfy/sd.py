"""``comfy.sd``: checkpoint, diffusion model, text encoder and VAE loading, with upstream's
signatures and return shapes, over :mod:`comfyui.models.sd`, ``.lora``, ``.vae``, ``.text_encoders.encoder``."""
from __future__ import annotations

import enum
from typing import Any

from comfyui.compat import _unsupported
from comfyui.models import sd as _sd
from comfyui.models.text_encoders.encoder import CLIP  # noqa: F401
from comfyui.models.lora import load_lora_for_models  # noqa: F401
from comfyui.models.vae import VAE  # noqa: F401


class CLIPType(enum.Enum):
    STABLE_DIFFUSION = 1
    STABLE_CASCADE = 2
    SD3 = 3
    STABLE_AUDIO = 4
    HUNYUAN_DIT = 5
    FLUX = 6
    MOCHI = 7
    LTXV = 8
    HUNYUAN_VIDEO = 9
    PIXART = 10
    COSMOS = 11
    LUMINA2 = 12
    WAN = 13
    HIDREAM = 14
    CHROMA = 15
    ACE = 16
    OMNIGEN2 = 17
    QWEN_IMAGE = 18
    HUNYUAN_IMAGE = 19


def _not_supported(option: str) -> None:
    raise _unsupported.NotSupportedError(f"comfy.sd: {option} is not supported by comfyui")


def load_checkpoint_guess_config(ckpt_path: str, output_vae: bool = True, output_clip: bool = True,
                                 output_clipvision: bool = False, embedding_directory: Any = None,
                                 output_model: bool = True, model_options: dict | None = None,
                                 te_model_options: dict | None = None) -> tuple:
    """``(MODEL, CLIP, VAE, CLIP_VISION)`` of a single-file checkpoint (CLIP_VISION is None)."""
    if output_clipvision:
        _not_supported("output_clipvision (the CLIP vision model of an unCLIP checkpoint)")
    if model_options or te_model_options:
        _not_supported("model_options / te_model_options")
    model, clip, vae = _sd.load_checkpoint_guess_config(ckpt_path, output_vae, output_clip, embedding_directory)
    return (model if output_model else None), clip, vae, None


def load_diffusion_model(unet_path: str, model_options: dict | None = None):
    """A MODEL from a diffusion-model file; ``model_options={"dtype": torch dtype}`` as upstream."""
    options = dict(model_options or {})
    dtype = options.pop("dtype", None)
    if options:
        _not_supported(f"load_diffusion_model options {sorted(options)}")
    if dtype is None:
        return _sd.load_diffusion_model(unet_path)
    from comfyui.models.loading import load_torch_file

    return _sd.load_diffusion_model_state_dict(load_torch_file(unet_path), weight_dtype=dtype)


def load_diffusion_model_state_dict(sd: dict, model_options: dict | None = None):
    options = dict(model_options or {})
    dtype = options.pop("dtype", None)
    if options:
        _not_supported(f"load_diffusion_model_state_dict options {sorted(options)}")
    return _sd.load_diffusion_model_state_dict(sd, weight_dtype=dtype)


def load_clip(ckpt_paths: list[str], embedding_directory: Any = None,
              clip_type: CLIPType = CLIPType.STABLE_DIFFUSION, model_options: dict | None = None):
    if model_options:
        _not_supported("load_clip model_options")
    return _sd.load_clip(ckpt_paths, embedding_directory, clip_type.name.lower())


__getattr__ = _unsupported.module_getattr(__name__, {
    "load_checkpoint": "the old config-file checkpoint loader",
    "load_text_encoder_state_dicts": "", "load_unet": "", "load_unet_state_dict": "",
    "load_gligen": "", "load_lora_for_models_with_hooks": "", "save_checkpoint": "", "model_detection_error_hint": "",
    "TEModel": "", "StyleModel": "", "load_style_model": "",
}, "")
