"""``comfy.controlnet`` for custom nodes: the module :mod:`comfyui.models.controlnet` itself (alias, not a copy)."""
import sys

from comfyui.models import controlnet as _mod

sys.modules[__name__] = _mod
