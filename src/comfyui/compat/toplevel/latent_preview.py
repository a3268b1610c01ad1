"""``latent_preview`` for custom nodes: the module :mod:`comfyui.sampling.preview` itself (alias, not a copy)."""
import sys

from comfyui.sampling import preview as _mod

sys.modules[__name__] = _mod
