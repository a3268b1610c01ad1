"""``comfy.sample``: noise + the KSampler-level ``sample`` / ``sample_custom``."""
from comfyui.sampling.noise import prepare_noise  # noqa: F401
from comfyui.sampling.samplers import fix_empty_latent_channels, prepare_mask, sample_custom  # noqa: F401
from comfyui.sampling.samplers import sample_with_ksampler as sample  # noqa: F401
