"""``comfy_extras.nodes_stable3d``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'StableZero123_Conditioning', 'StableZero123_Conditioning_Batched', 'SV3D_Conditioning',
])
