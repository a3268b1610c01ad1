"""The Chroma BaseModel: conditioning -> transformer inputs, flow-matching denoising.

Conditioning entries it reads: the T5 hidden states (``cross_attn``), ``guidance`` (0 when
absent, as upstream; Chroma is not guidance-distilled, so the usual workflow leaves it and
uses real CFG) and ``attention_mask`` (an additive bias over [text, image tokens], e.g.
StyleModelApply's attn_bias). No pooled vector.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..base import BaseModel
from ..dit import upscale_dit_mask
from .model import Chroma
from .radiance import ChromaRadiance

DEFAULT_GUIDANCE = 0.0


class ChromaModel(BaseModel):
    network = Chroma

    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.diffusion_model = self.network(**config, device=device)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_crossattn: torch.Tensor | None = None,
                    guidance: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    control: dict | None = None, transformer_options: dict | None = None,
                    **kwargs: Any) -> torch.Tensor:
        """Denoised estimate (float32) for the latent ``x`` [B,C,H,W] at sigmas ``t`` [B]."""
        if c_crossattn is None:
            raise ValueError("Chroma needs a text conditioning (T5 hidden states)")
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        dtype = self.compute_dtype()
        timestep = self.model_sampling.timestep(sigma).float()
        out = self.run_diffusion_model(
            xc.to(dtype), timestep, c_crossattn.to(dtype),
            guidance=None if guidance is None else guidance.float(), control=control,
            transformer_options=transformer_options or {}, attention_mask=attention_mask).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        device = kwargs.get("device")
        out: dict[str, Any] = {}
        cross = kwargs.get("cross_attn")
        if cross is not None:
            out["c_crossattn"] = cross.to(device) if device is not None else cross
        mask = kwargs.get("attention_mask")
        if mask is not None:
            p = self.diffusion_model.patch_size
            h, w = kwargs["noise"].shape[-2:]
            out["attention_mask"] = upscale_dit_mask(mask, kwargs.get("attention_mask_img_shape", (1, 1)),
                                                     (math.ceil(h / p), math.ceil(w / p)))
        guidance = kwargs.get("guidance", DEFAULT_GUIDANCE)
        if guidance is not None:
            out["guidance"] = torch.tensor([float(guidance)])
        return out


class ChromaRadianceModel(ChromaModel):
    """Chroma Radiance: the same conditioning; the "latent" is the image itself (3 channels,
    values in [-1, 1]: the pixel_space VAE)."""
    network = ChromaRadiance
