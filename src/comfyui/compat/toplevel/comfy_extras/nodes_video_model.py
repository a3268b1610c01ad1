"""``comfy_extras.nodes_video_model``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'ImageOnlyCheckpointLoader', 'SVD_img2vid_Conditioning', 'VideoLinearCFGGuidance',
    'VideoTriangleCFGGuidance', 'ImageOnlyCheckpointSave', 'ConditioningSetAreaPercentageVideo',
])
