"""``comfy.latent_formats``: how a model's latent space relates to its VAE's
(:mod:`comfyui.models.latent_formats`). Formats of families this implementation does not run are
importable and raise NotSupportedError when built."""
from comfyui.compat import _unsupported
from comfyui.models.base import LatentFormat  # noqa: F401
from comfyui.models.latent_formats import SD3, SD15, SDXL, Flux  # noqa: F401

__getattr__ = _unsupported.module_getattr(__name__, {
    "SDXL_Playground_2_5", "SD_X4", "SC_Prior", "SC_B", "StableAudio1", "Mochi", "LTXV",
    "HunyuanVideo", "Cosmos1CV8x8x8", "Wan21", "Wan22", "HunyuanImage21", "HunyuanImage21Refiner",
    "Hunyuan3Dv2", "Hunyuan3Dv2_1", "Hunyuan3Dv2mini", "ACEAudio", "ChromaRadiance",
}, "this model family is not implemented")
