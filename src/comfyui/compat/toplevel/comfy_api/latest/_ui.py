"""``comfy_api.latest._ui``: the schema API's ``ui`` module itself (alias, not a copy)."""
import sys

from comfyui.nodes.io import ui as _mod

sys.modules[__name__] = _mod
