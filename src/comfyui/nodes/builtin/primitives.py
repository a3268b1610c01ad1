"""Primitive value nodes evaluated on the backend (ComfyUI's comfy_extras/nodes_primitive.py)."""
from __future__ import annotations

import sys


class PrimitiveString:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


class PrimitiveStringMultiline:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"multiline": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


class PrimitiveInt:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


class PrimitiveFloat:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"min": -sys.maxsize, "max": sys.maxsize})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


class PrimitiveBoolean:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("BOOLEAN", {})}}

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"

    def execute(self, value):
        return (value,)


NODE_CLASS_MAPPINGS = {
    "PrimitiveString": PrimitiveString,
    "PrimitiveStringMultiline": PrimitiveStringMultiline,
    "PrimitiveInt": PrimitiveInt,
    "PrimitiveFloat": PrimitiveFloat,
    "PrimitiveBoolean": PrimitiveBoolean,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "PrimitiveString": "String",
    "PrimitiveStringMultiline": "String (Multiline)",
    "PrimitiveInt": "Int",
    "PrimitiveFloat": "Float",
    "PrimitiveBoolean": "Boolean",
}
