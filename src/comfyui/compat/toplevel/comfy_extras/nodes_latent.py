"""``comfy_extras.nodes_latent``: our built-in nodes of upstream's nodes_latent.py (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'LatentAdd', 'LatentSubtract', 'LatentMultiply', 'LatentInterpolate', 'LatentConcat', 'LatentCut',
    'LatentBatch', 'LatentBatchSeedBehavior', 'LatentApplyOperation', 'LatentApplyOperationCFG',
    'LatentOperationTonemapReinhard', 'LatentOperationSharpen',
])
