"""The Wan BaseModel: conditioning -> transformer inputs, and flow-matching denoising.

Conditioning entries it reads: the UMT5 hidden states (``cross_attn``, 512 tokens), the
CLIP-vision output (``clip_vision_output``: its ``penultimate_hidden_states`` -> ``clip_fea``),
``concat_latent_image`` / ``concat_mask`` (``concat_mask_index``) for the models whose patch
embedding takes more channels than the latent has (i2v, Fun-InP, first-last frame: 4 mask +
16 image channels; Fun-Control: 16 control + 16 image channels, no mask; Fun 2.2 Control:
control, mask at ``concat_mask_index``, start image), ``reference_latents`` (Fun 2.2's
reference image, for the models with ``ref_conv``), ``camera_conditions`` (Fun Camera's
Plücker embedding, for the models with ``control_adapter``) and, for Wan 2.2 5B, the ``denoise_mask``
that gives each latent frame its own timestep (0 for a given frame).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...sampling.conditioning import CONDConstant, CONDRegular
from ..base import BaseModel, resize_to_batch_size
from .model import WanModel


def _resize_frames(t: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C, T, height, width]: centre crop to the aspect, then bilinear
    per frame (ComfyUI's ``common_upscale(..., "bilinear", "center")``)."""
    h, w = t.shape[-2:]
    if (h, w) == (height, width):
        return t
    if width * h > w * height:
        keep = round(w * height / width)
        t = t[..., (h - keep) // 2:(h - keep) // 2 + keep, :]
    elif width * h < w * height:
        keep = round(h * width / height)
        t = t[..., (w - keep) // 2:(w - keep) // 2 + keep]
    b, c, f = t.shape[:3]
    out = F.interpolate(t.reshape(b, c * f, *t.shape[-2:]), size=(height, width), mode="bilinear", align_corners=False)
    return out.reshape(b, c, f, height, width)


class WanBaseModel(BaseModel):
    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.memory_usage_factor = config["dim"] / 2222
        self.image_to_video = config["model_type"] == "i2v" and config["in_dim"] != 48
        self.per_frame_timesteps = config["out_dim"] == 48  # Wan 2.2 5B
        if device is None:
            self.diffusion_model = WanModel(**config)
        else:
            with torch.device(device):
                self.diffusion_model = WanModel(**config)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_crossattn: torch.Tensor | None = None,
                    c_concat: torch.Tensor | None = None, clip_fea: torch.Tensor | None = None,
                    denoise_mask: torch.Tensor | None = None, vace_context: torch.Tensor | None = None,
                    vace_strength: list[float] | None = None, reference_latent: torch.Tensor | None = None,
                    camera_conditions: torch.Tensor | None = None, control: dict | None = None,
                    transformer_options: dict | None = None, **kwargs: Any) -> torch.Tensor:
        """Denoised estimate (float32) of the latent video ``x`` [B, C, T, H, W] (model space)
        at sigmas ``t`` [B]: ``x - sigma * v`` for the network's velocity v."""
        if c_crossattn is None:
            raise ValueError("Wan needs a text conditioning (UMT5 hidden states)")
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat.to(xc)], dim=1)
        dtype = self.compute_dtype()
        timestep = self.model_sampling.timestep(sigma).float()
        if denoise_mask is not None and self.per_frame_timesteps:
            # one timestep per latent frame: the frame's mean mask times the timestep
            frame_mask = denoise_mask.float().mean(dim=(1, 3, 4)).to(timestep.device)
            timestep = (resize_to_batch_size(frame_mask, x.shape[0]) * timestep[:, None])
        out = self.run_diffusion_model(
            xc.to(dtype), timestep, c_crossattn.to(dtype),
            clip_fea=None if clip_fea is None else clip_fea.to(dtype),
            vace_context=None if vace_context is None else vace_context.to(dtype), vace_strength=vace_strength,
            reference_latent=None if reference_latent is None else reference_latent.to(dtype),
            camera_conditions=None if camera_conditions is None else camera_conditions.to(dtype),
            transformer_options=transformer_options or {}).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        device = kwargs.get("device")
        out: dict[str, Any] = {}
        cross = kwargs.get("cross_attn")
        if cross is not None:
            out["c_crossattn"] = CONDRegular(cross if device is None else cross.to(device))
        concat = self.concat_cond(**kwargs)
        if concat is not None:
            out["c_concat"] = CONDRegular(concat)
        clip = kwargs.get("clip_vision_output")
        if clip is not None:
            fea = clip.penultimate_hidden_states
            out["clip_fea"] = CONDRegular(fea if device is None else fea.to(device))
        mask = kwargs.get("denoise_mask")
        if mask is not None and self.per_frame_timesteps:
            out["denoise_mask"] = CONDRegular(mask)
        refs = kwargs.get("reference_latents")
        if refs is not None and self.config.get("in_dim_ref_conv"):
            # the last reference image's first latent frame, normalised (Wan22FunControlToVideo)
            ref = self.process_latent_in(refs[-1].to(kwargs["noise"].device))[:, :, 0]
            out["reference_latent"] = CONDRegular(ref)
        camera = kwargs.get("camera_conditions")
        if camera is not None and self.config.get("in_dim_control_adapter"):
            out["camera_conditions"] = CONDRegular(camera)
        if self.config["model_type"] == "vace":
            out.update(self.vace_conds(kwargs["noise"], kwargs.get("vace_frames"), kwargs.get("vace_mask"),
                                       kwargs.get("vace_strength")))
        return out

    def vace_conds(self, noise, frames, masks, strengths) -> dict[str, Any]:
        """VACE's control input: per control video (WanVaceToVideo), its inactive and reactive
        latents (each normalised) and the 64-channel mask, [B, n, 96, T, h, w]; absent: zeros
        and a full mask."""
        shape = list(noise.shape)
        if frames is None:
            frames = [torch.zeros([shape[0], 32] + shape[2:], device=noise.device, dtype=noise.dtype)]
        if masks is None:
            masks = [torch.ones([shape[0], 64] + shape[2:], device=noise.device, dtype=noise.dtype)] * len(frames)
        n = self.latent_format.latent_channels
        parts = []
        for frame, mask in zip(frames, masks):
            frame = frame.to(noise.device, noise.dtype)
            frame = torch.cat([self.process_latent_in(frame[:, i:i + n]) for i in range(0, frame.shape[1], n)], dim=1)
            parts.append(torch.cat([frame, mask.to(noise.device, noise.dtype).expand(frame.shape[0], -1, -1, -1, -1)],
                                   dim=1))
        strengths = list(strengths) if strengths is not None else [1.0] * len(parts)
        return {"vace_context": CONDRegular(torch.stack(parts, dim=1)), "vace_strength": CONDConstant(strengths)}

    def concat_cond(self, **kwargs: Any) -> torch.Tensor | None:
        """The channels after the noise latent: as upstream's WAN21, image latents normalised
        per 16-channel block; for image-to-video a 4-channel mask (1 - concat mask, per
        latent frame) goes before them (or at ``concat_mask_index``)."""
        noise = kwargs["noise"]
        device = kwargs.get("device", noise.device)
        extra = self.diffusion_model.patch_embedding.weight.shape[1] - noise.shape[1]
        if extra <= 0:
            return None
        image = kwargs.get("concat_latent_image")
        if image is None:
            image = torch.zeros((noise.shape[0], extra) + tuple(noise.shape[2:]), dtype=noise.dtype, device=device)
        else:
            image = _resize_frames(image.to(device), noise.shape[-1], noise.shape[-2])
            n = self.latent_format.latent_channels
            image = torch.cat([self.process_latent_in(image[:, i:i + n]) for i in range(0, image.shape[1], n)], dim=1)
            image = resize_to_batch_size(image, noise.shape[0])
        if extra != image.shape[1] + 4 and (not self.image_to_video or extra == image.shape[1]):
            return image
        image = image[:, :extra - 4]
        mask = kwargs.get("concat_mask", kwargs.get("denoise_mask"))
        if mask is None:
            mask = torch.zeros_like(noise)[:, :4].to(device)
        else:
            if mask.ndim == 4:  # [B, T, H, W]
                mask = mask.unsqueeze(1)
            if mask.shape[1] != 4:
                mask = mask.mean(dim=1, keepdim=True)
            mask = _resize_frames(1.0 - mask.to(device).float(), noise.shape[-1], noise.shape[-2])
            if mask.shape[2] < noise.shape[2]:
                mask = F.pad(mask, (0, 0, 0, 0, 0, noise.shape[2] - mask.shape[2]))
            if mask.shape[1] == 1:
                mask = mask.repeat(1, 4, 1, 1, 1)
            mask = resize_to_batch_size(mask, noise.shape[0]).to(image)
        index = kwargs.get("concat_mask_index", 0)
        if index:
            return torch.cat((image[:, :index], mask, image[:, index:]), dim=1)
        return torch.cat((mask, image), dim=1)


class Wan22Model(WanBaseModel):
    """Wan 2.2 5B: image-to-video by a noise mask on the latent (Wan22ImageToVideoLatent); the
    masked-off frames get timestep 0 and the sampler keeps them clean instead of re-noising them."""

    def scale_latent_inpaint(self, sigma=None, noise=None, latent_image=None, **kwargs):
        return latent_image
