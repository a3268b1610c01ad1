"""``comfy.samplers`` for custom nodes: the module :mod:`comfyui.sampling.samplers` itself (alias, not a copy)."""
import sys

from comfyui.sampling import samplers as _mod

sys.modules[__name__] = _mod
