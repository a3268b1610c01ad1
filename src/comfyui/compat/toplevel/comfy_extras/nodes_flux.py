"""``comfy_extras.nodes_flux``: our built-in nodes of upstream's nodes_flux.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'CLIPTextEncodeFlux', 'FluxGuidance', 'FluxDisableGuidance', 'FluxKontextImageScale',
    'FluxKontextMultiReferenceLatentMethod',
])
