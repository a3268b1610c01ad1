"""``comfy.ldm.modules.diffusionmodules.openaimodel``: the UNet classes of :mod:`comfyui.models.stable_diffusion.unet`."""
from comfyui.compat import _unsupported
from comfyui.models.stable_diffusion.unet import (Downsample, ResBlock, SpatialTransformer, TimestepBlock,  # noqa: F401
                                 TimestepEmbedSequential, UNetModel, Upsample)

__getattr__ = _unsupported.module_getattr(__name__, {
    "VideoResBlock", "forward_timestep_embed", "apply_control",
}, "")
