"""``comfy.comfy_types``: type-hinting helpers for classic custom nodes."""
from .node_typing import (  # noqa: F401
    IO,
    CheckLazyMixin,
    ComfyNodeABC,
    FileLocator,
    InputTypeDict,
    InputTypeOptions,
    HiddenInputTypeDict,
    StrEnum,
)

__all__ = ["IO", "CheckLazyMixin", "ComfyNodeABC", "FileLocator", "InputTypeDict", "InputTypeOptions",
           "HiddenInputTypeDict", "StrEnum"]
