"""``comfy_extras.nodes_perpneg``: our built-in nodes of upstream's nodes_perpneg.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'PerpNeg', 'PerpNegGuider',
])
