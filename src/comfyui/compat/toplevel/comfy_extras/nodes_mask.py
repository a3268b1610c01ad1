"""``comfy_extras.nodes_mask``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes
from comfyui.nodes.builtin.mask import composite  # noqa: F401

__getattr__ = node_classes(__name__, [
    'LatentCompositeMasked', 'ImageCompositeMasked', 'MaskToImage', 'ImageToMask', 'ImageColorToMask',
    'SolidMask', 'InvertMask', 'CropMask', 'MaskComposite', 'FeatherMask', 'GrowMask', 'ThresholdMask',
    'MaskPreview',
])
