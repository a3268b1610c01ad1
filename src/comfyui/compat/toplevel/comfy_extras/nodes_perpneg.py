"""``comfy_extras.nodes_perpneg``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes
from comfyui.compat import _unsupported

Guider_PerpNeg = _unsupported.cls("comfy_extras.nodes_perpneg.Guider_PerpNeg", "the Perp-Neg guider is not implemented")

__getattr__ = node_classes(__name__, [
    'PerpNeg', 'PerpNegGuider',
])
