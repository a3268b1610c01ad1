"""``comfy.ldm.modules.diffusionmodules.model``: the VAE's blocks (:mod:`comfyui.models.vae`)."""
from comfyui.models.vae import AttnBlock, Decoder, Downsample, Encoder, ResnetBlock, Upsample  # noqa: F401
