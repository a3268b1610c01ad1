"""``comfy.ops`` for custom nodes: the module :mod:`comfyui.models.ops` itself (alias, not a copy)."""
import sys

from comfyui.models import ops as _mod

sys.modules[__name__] = _mod
