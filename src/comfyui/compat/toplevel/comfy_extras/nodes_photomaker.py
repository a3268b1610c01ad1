"""``comfy_extras.nodes_photomaker``: our built-in nodes of upstream's nodes_photomaker.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'PhotoMakerLoader', 'PhotoMakerEncode',
])
