"""``comfy_extras.nodes_string``: our built-in nodes under upstream's module (see ``comfy_extras``)."""
from comfy_extras import node_classes

__getattr__ = node_classes(__name__, [
    'StringConcatenate', 'StringSubstring', 'StringLength', 'CaseConverter', 'StringTrim', 'StringReplace',
    'StringContains', 'StringCompare', 'RegexMatch', 'RegexExtract', 'RegexReplace',
])
