"""``comfy_extras.nodes_lt``: our built-in nodes of upstream's nodes_lt.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'EmptyLTXVLatentVideo', 'LTXVImgToVideo', 'ModelSamplingLTXV', 'LTXVConditioning', 'LTXVScheduler',
    'LTXVAddGuide', 'LTXVPreprocess', 'LTXVCropGuides',
])
