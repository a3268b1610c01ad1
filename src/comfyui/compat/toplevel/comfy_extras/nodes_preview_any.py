"""``comfy_extras.nodes_preview_any``: our built-in nodes of upstream's nodes_preview_any.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'PreviewAny',
])
