"""``comfy_extras.nodes_ip2p``: our built-in nodes of upstream's nodes_ip2p.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'InstructPixToPixConditioning',
])
