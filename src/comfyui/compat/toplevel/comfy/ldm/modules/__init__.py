"""``comfy.ldm.modules``."""
