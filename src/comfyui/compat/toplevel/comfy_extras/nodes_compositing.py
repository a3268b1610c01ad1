"""``comfy_extras.nodes_compositing``: our built-in nodes of upstream's nodes_compositing.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'PorterDuffImageComposite', 'SplitImageWithAlpha', 'JoinImageWithAlpha',
])
