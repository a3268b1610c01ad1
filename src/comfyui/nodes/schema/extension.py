"""ComfyExtension and the other names ``comfy_api.latest`` exposes next to ``io`` / ``ui``."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .video import VideoInput


class ComfyExtension(ABC):
    """What a schema-API node pack's ``async def comfy_entrypoint()`` returns.

    The registry awaits ``get_node_list()`` and registers every class in it, then awaits
    ``on_load()``.
    """

    async def on_load(self) -> None:
        """Called once when the extension is loaded (set up shared resources here)."""

    @abstractmethod
    async def get_node_list(self) -> list[type]:
        """The io.ComfyNode classes this extension provides."""


class Input:
    """Type aliases node code uses in annotations (``Input.Image`` is an IMAGE tensor).

    They are annotation-only here (torch is not imported by the schema API), except
    ``Video``: the VIDEO base class (:class:`comfyui.nodes.schema.video.VideoInput`)."""

    Image = Any  # torch.Tensor [B,H,W,C]
    Mask = Any  # torch.Tensor [B,H,W]
    Latent = dict
    Audio = dict
    Video = VideoInput



def _to_preview(image: Any, ignore_size_limit: bool) -> tuple | None:
    """A PIL image or IMAGE tensor -> the executor's preview tuple (format, PIL image, max size)."""
    if image is None:
        return None
    if hasattr(image, "detach"):  # IMAGE tensor [B,H,W,C] or [H,W,C]: first image of the batch
        import numpy as np
        from PIL import Image as PILImage

        tensor = image[0] if image.ndim == 4 else image
        array = np.clip(tensor.detach().cpu().float().numpy() * 255.0, 0, 255).astype(np.uint8)
        image = PILImage.fromarray(array)
    fmt = image.format if getattr(image, "format", None) else "JPEG"
    # None means "the server's preview size"; a limit as large as the image means "as is".
    max_size = max(image.size) if ignore_size_limit else None
    return (fmt, image, max_size)


class _Execution:
    async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                           preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        """Update the progress bar (and optionally the preview) of the running node, or of ``node_id``."""
        _set_progress(value, max_value, node_id, preview_image, ignore_size_limit)


def _set_progress(value: float, max_value: float, node_id: str | None, preview_image: Any,
                  ignore_size_limit: bool) -> None:
    from comfyui.engine import progress

    context = progress.current_context()
    if node_id is None and context is not None:
        node_id = context.node_id
    if node_id is None:
        raise ValueError("node_id must be provided if not in executing context")
    progress.report_progress(value, max_value, _to_preview(preview_image, ignore_size_limit), node_id)


class ComfyAPI:
    """``comfy_api.latest.ComfyAPI``: ``await ComfyAPI().execution.set_progress(value, max_value)``."""

    VERSION = "latest"
    STABLE = False

    def __init__(self) -> None:
        self.execution = _Execution()


class _ExecutionSync:
    def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                     preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        _set_progress(value, max_value, node_id, preview_image, ignore_size_limit)


class ComfyAPISync:
    """The same API with plain (non-async) methods."""

    VERSION = "latest"
    STABLE = False

    def __init__(self) -> None:
        self.execution = _ExecutionSync()
