"""``comfy.k_diffusion.sampling`` for custom nodes: the module :mod:`comfyui.sampling.k_diffusion` itself (alias, not a copy)."""
import sys

from comfyui.sampling import k_diffusion as _mod

sys.modules[__name__] = _mod
