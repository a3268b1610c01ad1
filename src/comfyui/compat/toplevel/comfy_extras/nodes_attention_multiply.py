"""``comfy_extras.nodes_attention_multiply``: our built-in nodes of upstream's nodes_attention_multiply.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'UNetSelfAttentionMultiply', 'UNetCrossAttentionMultiply', 'CLIPAttentionMultiply',
    'UNetTemporalAttentionMultiply',
])
