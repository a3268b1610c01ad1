"""The Flux BaseModel: conditioning -> transformer inputs, and flow-matching denoising.

Conditioning entries it reads: the T5 hidden states (``cross_attn``), the CLIP-L pooled
vector (``pooled_output`` -> ``y``), ``guidance`` (FluxGuidance; 3.5 when absent, ignored by
schnell, which has no guidance embedding), ``concat_latent_image`` / ``concat_mask`` (the
Fill and Canny/Depth inputs), ``reference_latents`` (Kontext; ``reference_latents_method``) and
``attention_mask`` (an additive bias over [text, image tokens]: StyleModelApply's attn_bias).
"""
from __future__ import annotations

import math
from typing import Any

import torch

import torch.nn.functional as F

from ..base import BaseModel, resize_to_batch_size
from ..dit import upscale_dit_mask
from .model import Flux

DEFAULT_GUIDANCE = 3.5


def _resize(t: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[B,C,H,W] -> [B,C,height,width]: the centre cropped to the target aspect, then bilinear."""
    h, w = t.shape[-2:]
    if width * h > w * height:  # target wider: keep the full width, crop rows
        keep = round(w * height / width)
        t = t[..., (h - keep) // 2:(h - keep) // 2 + keep, :]
    elif width * h < w * height:
        keep = round(h * width / height)
        t = t[..., (w - keep) // 2:(w - keep) // 2 + keep]
    if tuple(t.shape[-2:]) == (height, width):
        return t
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)


class FluxModel(BaseModel):
    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.diffusion_model = Flux(**config, device=device)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_crossattn: torch.Tensor | None = None,
                    c_concat: torch.Tensor | None = None, y: torch.Tensor | None = None,
                    guidance: torch.Tensor | None = None, ref_latents: list[torch.Tensor] | None = None,
                    ref_latents_method: str | None = None, control: dict | None = None,
                    transformer_options: dict | None = None, attention_mask: torch.Tensor | None = None,
                    **kwargs: Any) -> torch.Tensor:
        """Denoised estimate (float32) for the latent ``x`` [B,16,H,W] (model space) at sigmas
        ``t`` [B]: the network's velocity v gives ``x - sigma * v``."""
        if c_crossattn is None:
            raise ValueError("Flux needs a text conditioning (T5 hidden states)")
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat.to(xc)], dim=1)
        dtype = self.compute_dtype()
        timestep = self.model_sampling.timestep(sigma).float()
        out = self.run_diffusion_model(
            xc.to(dtype), timestep, c_crossattn.to(dtype), y=None if y is None else y.to(dtype),
            guidance=None if guidance is None else guidance.float(),
            ref_latents=None if ref_latents is None else [r.to(dtype) for r in ref_latents],
            ref_latents_method=ref_latents_method or "offset", control=control,
            transformer_options=transformer_options or {}, attention_mask=attention_mask).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        device = kwargs.get("device")
        out: dict[str, Any] = {}
        mask = kwargs.get("attention_mask")
        if mask is not None:  # e.g. StyleModelApply's attn_bias: resized to this latent's token grid
            p = self.diffusion_model.patch_size
            h, w = kwargs["noise"].shape[-2:]
            out["attention_mask"] = upscale_dit_mask(mask, kwargs.get("attention_mask_img_shape", (1, 1)),
                                                     (math.ceil(h / p), math.ceil(w / p)))
        cross = kwargs.get("cross_attn")
        if cross is not None:
            out["c_crossattn"] = cross.to(device) if device is not None else cross
        concat = self.concat_cond(**kwargs)
        if concat is not None:
            out["c_concat"] = concat
        pooled = kwargs.get("pooled_output")
        if pooled is not None:
            out["y"] = pooled.to(device) if device is not None else pooled
        guidance = kwargs.get("guidance", DEFAULT_GUIDANCE)
        if guidance is not None:
            out["guidance"] = torch.tensor([float(guidance)])
        refs = kwargs.get("reference_latents")
        if refs:
            out["ref_latents"] = [self.process_latent_in(r) for r in refs]
            method = kwargs.get("reference_latents_method")
            if method is not None:
                out["ref_latents_method"] = method
        return out

    def concat_cond(self, **kwargs: Any) -> torch.Tensor | None:
        """The channels Fill / Canny / Depth models take after the noise latent: the image
        latent (zeros when none is given), and for Fill also the pixel-space mask folded into
        64 channels (each 8x8 block of a latent cell -> its channels, row-major). The count comes
        from the current input projection, so a control LoRA that widens it takes effect."""
        net = self.diffusion_model
        latent_channels = net.out_channels
        if net.in_channels <= latent_channels:
            return None
        noise = kwargs["noise"]
        device = kwargs.get("device", noise.device)
        b, _, h, w = noise.shape
        image = kwargs.get("concat_latent_image")
        if image is None:
            image = torch.zeros_like(noise)
        image = _resize(image.to(device), w, h)
        image = self.process_latent_in(resize_to_batch_size(image, b))
        if net.in_channels <= 2 * latent_channels:
            return image
        mask = kwargs.get("concat_mask", kwargs.get("denoise_mask"))
        if mask is None:
            mask = torch.ones_like(noise)[:, :1]
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
        mask = _resize(mask.mean(dim=1, keepdim=True).to(device), w * 8, h * 8)
        mask = mask.view(mask.shape[0], h, 8, w, 8).permute(0, 2, 4, 1, 3).reshape(mask.shape[0], 64, h, w)
        return torch.cat((image, resize_to_batch_size(mask, b).to(image)), dim=1)
