"""``comfy_extras.nodes_context_windows``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'ContextWindowsManual', 'WanContextWindowsManual',
])
