"""``comfy.model_patcher`` for custom nodes: the module :mod:`comfyui.models.patcher` itself (alias, not a copy)."""
import sys

from comfyui.models import patcher as _mod

sys.modules[__name__] = _mod
