"""``comfy_extras.nodes_images``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes
from comfyui.nodes.builtin.svg import SVG  # noqa: F401

__getattr__ = node_classes(__name__, [
    'ImageCrop', 'RepeatImageBatch', 'ImageFromBatch', 'ImageAddNoise', 'SaveAnimatedWEBP', 'SaveAnimatedPNG',
    'SaveSVGNode', 'ImageStitch', 'ResizeAndPadImage', 'GetImageSize', 'ImageRotate', 'ImageFlip',
    'ImageScaleToMaxDimension',
])
