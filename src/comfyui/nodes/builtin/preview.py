"""PreviewAny: shows any value as text in the UI (ComfyUI's comfy_extras/nodes_preview_any.py)."""
from __future__ import annotations

import json


def preview_text(source) -> str:
    """str as is; numbers/bools via str(); JSON for everything JSON can encode; str() otherwise."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, (int, float, bool)):
        return str(source)
    try:
        return json.dumps(source)
    except Exception:
        try:
            return str(source)
        except Exception:
            return "source exists, but could not be serialized."


class PreviewAny:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("*", {})}}

    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True
    CATEGORY = "utils"

    def main(self, source=None):
        return {"ui": {"text": [preview_text(source)]}}


NODE_CLASS_MAPPINGS = {"PreviewAny": PreviewAny}
NODE_DISPLAY_NAME_MAPPINGS = {"PreviewAny": "Preview Any"}
