"""``comfy.model_sampling`` for custom nodes: the module :mod:`comfyui.sampling.model_sampling` itself (alias, not a copy)."""
import sys

from comfyui.sampling import model_sampling as _mod

sys.modules[__name__] = _mod
