"""The SD3 BaseModel: the text context (``cross_attn``) and the pooled CLIP-L/G vector
(``pooled_output`` -> ``y``) feed the MMDiT; sampling is discrete flow (velocity prediction,
the network's timestep = sigma * 1000), so :class:`BaseModel`'s ``apply_model`` serves."""
from __future__ import annotations

from typing import Any

import torch

from ..base import BaseModel
from .mmdit import MMDiT


class SD3Model(BaseModel):
    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.diffusion_model = MMDiT(**config, device=device)

    def encode_adm(self, **kwargs: Any) -> torch.Tensor | None:
        return kwargs.get("pooled_output")
