"""comfyui: a from-scratch implementation of ComfyUI (graph engine, server, clients).

``from comfyui import Comfy`` gives the embedded (in-process) client; it is imported lazily
so that ``import comfyui`` stays cheap (no torch, no engine) for tools that only need a
submodule such as ``comfyui.paths``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:  # the installed distribution's version; the source tree's fallback below
    from importlib.metadata import PackageNotFoundError, version as _dist_version

    __version__ = _dist_version("comfyui")
except Exception:  # pragma: no cover - running from a bare source tree
    __version__ = "0.1.0"

__all__ = ["Comfy", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .client.embedded import Comfy


def __getattr__(name: str) -> Any:
    if name == "Comfy":
        from .client.embedded import Comfy

        return Comfy
    raise AttributeError(f"module 'comfyui' has no attribute {name!r}")
