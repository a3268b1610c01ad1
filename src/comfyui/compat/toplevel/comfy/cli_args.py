"""``comfy.cli_args``: ``args`` shows the process-wide :class:`comfyui.config.Config`."""
from __future__ import annotations

import enum
from typing import Any

from comfyui import config as _config


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class _Args:
    """Attribute access reads ``comfyui.config.current()`` at the time of the access."""

    def __getattr__(self, name: str) -> Any:
        cfg = _config.current()
        if name == "verbose":
            return cfg.logging_level
        if name == "preview_method":
            return LatentPreviewMethod(cfg.preview_method)
        return getattr(cfg, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_config.current(), name, value)

    def __repr__(self) -> str:
        return f"args({_config.current()!r})"


args = _Args()
