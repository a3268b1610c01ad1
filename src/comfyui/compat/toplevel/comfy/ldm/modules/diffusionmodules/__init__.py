"""``comfy.ldm.modules.diffusionmodules``."""
