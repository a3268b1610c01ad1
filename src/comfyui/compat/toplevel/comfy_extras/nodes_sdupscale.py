"""``comfy_extras.nodes_sdupscale``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'SD_4XUpscale_Conditioning',
])
