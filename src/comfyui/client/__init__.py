"""Clients: ``embedded.Comfy`` runs the engine in-process (no server);
``remote.RemoteComfy`` drives a running server over HTTP + WebSocket."""
from __future__ import annotations

from typing import Any

__all__ = ["Comfy", "RemoteComfy", "ProgressEvent", "ExecutionError"]


def __getattr__(name: str) -> Any:
    if name in ("Comfy",):
        from .embedded import Comfy

        return Comfy
    if name in ("ProgressEvent", "ExecutionError"):
        from . import common

        return getattr(common, name)
    if name == "RemoteComfy":
        from .remote import RemoteComfy

        return RemoteComfy
    raise AttributeError(f"module 'comfyui.client' has no attribute {name!r}")
