"""Helper for shim modules that forward attribute lookups to real comfyui modules."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def delegating_getattr(shim_name: str, targets: list[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that returns the first of ``targets`` having the attribute.

    Targets are imported on first use, so importing the shim stays cheap and never fails
    because some part of the inference stack is missing.
    """

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for target in targets:
            try:
                mod = importlib.import_module(target)
            except ImportError:
                continue
            if hasattr(mod, name):
                return getattr(mod, name)
        raise AttributeError(f"module {shim_name!r} has no attribute {name!r} (looked in {', '.join(targets)})")

    return __getattr__
