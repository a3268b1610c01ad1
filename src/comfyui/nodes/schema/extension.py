"""ComfyExtension and the other names ``comfy_api.latest`` exposes next to ``io`` / ``ui``."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


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

    They are annotation-only here (torch is not imported by the schema API)."""

    Image = Any  # torch.Tensor [B,H,W,C]
    Mask = Any  # torch.Tensor [B,H,W]
    Latent = dict
    Audio = dict
    Video = Any

