"""``comfy.lora`` for custom nodes: the module :mod:`comfyui.models.lora` itself (alias, not a copy)."""
import sys

from comfyui.models import lora as _mod

sys.modules[__name__] = _mod
