"""``comfy_extras.nodes_differential_diffusion``: our built-in nodes of upstream's nodes_differential_diffusion.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'DifferentialDiffusion',
])
