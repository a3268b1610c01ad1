"""``comfy_extras.nodes_latent``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'LatentAdd', 'LatentSubtract', 'LatentMultiply', 'LatentInterpolate', 'LatentConcat', 'LatentCut',
    'LatentBatch', 'LatentBatchSeedBehavior', 'LatentApplyOperation', 'LatentApplyOperationCFG',
    'LatentOperationTonemapReinhard', 'LatentOperationSharpen',
])
