"""``comfy_extras.nodes_sag``: our built-in nodes of upstream's nodes_sag.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'SelfAttentionGuidance',
])
