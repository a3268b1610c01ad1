"""``comfy_api.latest._io``: the schema API's ``io`` module itself (alias, not a copy)."""
import sys

from comfyui.nodes.io import io as _mod

sys.modules[__name__] = _mod
