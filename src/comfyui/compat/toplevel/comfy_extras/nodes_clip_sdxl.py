"""``comfy_extras.nodes_clip_sdxl``: our built-in nodes of upstream's nodes_clip_sdxl.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'CLIPTextEncodeSDXLRefiner', 'CLIPTextEncodeSDXL',
])
