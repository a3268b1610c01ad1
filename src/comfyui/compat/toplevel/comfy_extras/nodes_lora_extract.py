"""``comfy_extras.nodes_lora_extract``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes
from comfyui.nodes.builtin.lora_extract import CLAMP_QUANTILE, extract_lora  # noqa: F401

__getattr__ = node_classes(__name__, [
    'LoraSave',
])
