"""``comfy_extras.nodes_hooks``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'CreateHookLora', 'CreateHookLoraModelOnly', 'CreateHookModelAsLora', 'CreateHookModelAsLoraModelOnly',
    'SetHookKeyframes', 'CreateHookKeyframe', 'CreateHookKeyframesInterpolated',
    'CreateHookKeyframesFromFloats', 'CombineHooks2', 'CombineHooks4', 'CombineHooks8',
    'ConditioningSetProperties', 'ConditioningSetPropertiesAndCombine', 'PairConditioningSetProperties',
    'PairConditioningSetPropertiesAndCombine', 'ConditioningSetDefaultCombine',
    'PairConditioningSetDefaultCombine', 'PairConditioningCombine', 'SetClipHooks',
    'ConditioningTimestepsRange',
], {  # upstream's class names where they differ from the node ids
    'CombineHooks': 'CombineHooks2', 'CombineHooksFour': 'CombineHooks4', 'CombineHooksEight': 'CombineHooks8',
    'ConditioningSetDefaultAndCombine': 'ConditioningSetDefaultCombine',
    'PairConditioningSetDefaultAndCombine': 'PairConditioningSetDefaultCombine',
})
