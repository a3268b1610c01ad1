"""The LTX-Video BaseModel: conditioning -> network inputs, flow-matching denoising with
per-token timesteps.

Conditioning entries it reads: the T5 hidden states (``cross_attn``) and their
``attention_mask``, ``frame_rate`` (LTXVConditioning; 25 when absent), ``keyframe_idxs``
(LTXVAddGuide) and the sampler's ``denoise_mask``: tokens whose mask is 0 (the image of
image-to-video) are fed at timestep ``mask * sigma``, i.e. as clean, and the sampler keeps
them at the clean latent instead of re-noising them (:meth:`scale_latent_inpaint`).
"""
from __future__ import annotations

from typing import Any

import torch

from ..base import BaseModel
from .model import LTXVModel, patchify


class LTXV(BaseModel):
    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.diffusion_model = LTXVModel(**config, device=device)
        self.memory_usage_factor = config.get("cross_attention_dim", 2048) / 2048 * family.memory_usage_factor

    def process_timestep(self, timestep: torch.Tensor, denoise_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B] -> [B, N, 1] per token (the mask's first channel times the timestep) when masked."""
        if denoise_mask is None:
            return timestep
        mask = denoise_mask[:, :1].to(timestep)
        return patchify(mask * timestep.view([timestep.shape[0]] + [1] * (mask.ndim - 1)))

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_crossattn: torch.Tensor | None = None,
                    attention_mask: torch.Tensor | None = None, frame_rate: Any = 25,
                    denoise_mask: torch.Tensor | None = None, keyframe_idxs: torch.Tensor | None = None,
                    transformer_options: dict | None = None, **kwargs: Any) -> torch.Tensor:
        """x0 estimate (float32) for the latent ``x`` [B,128,T,H,W] (model space) at sigmas ``t``."""
        if c_crossattn is None:
            raise ValueError("LTX-Video needs a text conditioning (T5 hidden states)")
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        dtype = self.compute_dtype()
        timestep = self.process_timestep(self.model_sampling.timestep(sigma).float(), denoise_mask)
        if isinstance(frame_rate, torch.Tensor):
            frame_rate = float(frame_rate.flatten()[0])
        out = self.run_diffusion_model(xc.to(dtype), timestep, c_crossattn.to(dtype), attention_mask=attention_mask,
                                   frame_rate=frame_rate, keyframe_idxs=keyframe_idxs,
                                   transformer_options=transformer_options or {}).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        device = kwargs.get("device")

        def put(t: torch.Tensor) -> torch.Tensor:
            return t if device is None else t.to(device)

        out: dict[str, Any] = {}
        cross = kwargs.get("cross_attn")
        if cross is not None:
            out["c_crossattn"] = put(cross)
        mask = kwargs.get("attention_mask")
        if mask is not None:
            out["attention_mask"] = put(mask)
        out["frame_rate"] = float(kwargs.get("frame_rate", 25))  # a constant across the batch
        denoise_mask = kwargs.get("concat_mask", kwargs.get("denoise_mask"))
        if denoise_mask is not None:
            out["denoise_mask"] = put(denoise_mask)
        keyframes = kwargs.get("keyframe_idxs")
        if keyframes is not None:
            out["keyframe_idxs"] = put(keyframes)
        return out

    def scale_latent_inpaint(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                             **kwargs: Any) -> torch.Tensor:
        """Kept (mask 0) tokens stay clean: the model sees them at timestep 0."""
        return latent_image
