"""The MODEL contract: latent formats and :class:`BaseModel` (a diffusion network plus its
noise schedule). A MODEL socket carries a :class:`comfyui.models.patcher.ModelPatcher`
whose ``.model`` is one of the classes here.

For the sampling code, the things to use are::

    bm = patcher.model                         # BaseModel
    bm.model_sampling                          # comfyui.sampling.model_sampling object
    bm.latent_format.process_in(latent)        # VAE latent -> model space (x scale_factor)
    bm.latent_format.process_out(latent)       # model space -> VAE latent
    bm.process_latent_in / bm.process_latent_out   # same, as methods
    conds = bm.extra_conds(**cond_kwargs)      # -> {"c_crossattn": T, "y": T, "c_concat": T}
    denoised = bm.apply_model(x, sigma, **conds, control=None, transformer_options={})
    bm.memory_required(x.shape)                # bytes of activations for one call

``apply_model`` takes *sigmas* (not timesteps), the noisy latent in model space, and
returns the denoised estimate (float32, same shape as ``x``): it scales the input with
``model_sampling.calculate_input``, concatenates ``c_concat`` (inpainting), converts sigma to
the network timestep, runs the UNet in the model's compute dtype and applies
``model_sampling.calculate_denoised``.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..sampling.model_sampling import model_sampling as build_model_sampling
from . import memory


# ---------------------------------------------------------------------------- latent formats
class LatentFormat:
    """How a model's latent space relates to its VAE's raw latents."""

    scale_factor: float = 1.0
    shift_factor: float = 0.0
    latent_channels: int = 4
    latent_dimensions: int = 2
    latent_rgb_factors: list[list[float]] | None = None
    latent_rgb_factors_bias: list[float] | None = None
    taesd_decoder_name: str | None = None

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent - self.shift_factor) * self.scale_factor

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        return latent / self.scale_factor + self.shift_factor


class SD15(LatentFormat):
    scale_factor = 0.18215
    latent_rgb_factors = [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
    taesd_decoder_name = "taesd_decoder"


class SDXL(LatentFormat):
    scale_factor = 0.13025
    latent_rgb_factors = [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ]
    latent_rgb_factors_bias = [0.1084, -0.0175, -0.0011]
    taesd_decoder_name = "taesdxl_decoder"


# ------------------------------------------------------------------------------- helpers
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of LDM (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def cross_attn_bias_from_mask(mask: torch.Tensor, n_context: int, img_shape=None) -> torch.Tensor:
    """The per-context-token bias [B, n_context] that a UNet's cross-attention applies, from
    a conditioning ``attention_mask``.

    That mask (written by StyleModelApply's "attn_bias" mode, in ComfyUI's layout) covers the
    joint sequence of joint-attention models: the context tokens first, then the
    ``attention_mask_img_shape`` image tokens; a bool mask means allowed/blocked, a float one
    is added to the attention scores. In a UNet the image tokens are the queries of the
    cross-attention and the context tokens its keys, so the image rows' context columns are
    what applies; they must agree, since a UNet has no fixed image-token grid to map onto.
    """
    n_img = math.prod(img_shape) if img_shape is not None else 1
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.shape[-1] != n_context + n_img or mask.shape[-2] != n_context + n_img:
        raise ValueError(f"conditioning attention_mask of shape {tuple(mask.shape)} does not match its "
                         f"{n_context} context tokens + {n_img} image tokens; apply the style model "
                         "after the nodes that change the conditioning's tokens")
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
    rows = mask[:, n_context:, :n_context].float()
    if not bool((rows == rows[:, :1]).all()):
        raise ValueError("a conditioning attention_mask that differs between image tokens is not supported "
                         "by UNet models (their cross-attention has no fixed image-token grid)")
    return rows[:, 0]


def resize_to_batch_size(t: torch.Tensor, batch_size: int) -> torch.Tensor:
    if t.shape[0] == batch_size:
        return t
    if t.shape[0] > batch_size:
        return t[:batch_size]
    reps = math.ceil(batch_size / t.shape[0])
    return t.repeat((reps,) + (1,) * (t.ndim - 1))[:batch_size]


def _bilinear_center(t: torch.Tensor, width: int, height: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)


def blank_inpaint_image_like(latent: torch.Tensor) -> torch.Tensor:
    """The latent (model space, SD1 VAE) of a mid-gray image: what an inpainting model sees
    as ``masked_image`` when no image is given."""
    blank = torch.ones_like(latent)
    blank[:, 0] *= 0.8223
    blank[:, 1] *= -0.6876
    blank[:, 2] *= 0.6364
    blank[:, 3] *= 0.1380
    return blank


# ----------------------------------------------------------------------------------- model
class BaseModel(torch.nn.Module):
    """A diffusion network with its schedule, latent format and conditioning rules.

    ``model_config``: a :class:`comfyui.models.configs.ModelConfig` (unet_config,
    latent_format, sampling_settings, prediction type ...).
    ``diffusion_model``: the network (``comfyui.models.unet.UNetModel``); its state-dict
    keys are the original LDM ones under the prefix ``diffusion_model.``.
    """

    concat_keys: tuple[str, ...] = ()

    def __init__(self, model_config: Any, device: torch.device | None = None,
                 unet_cls: type | None = None):
        super().__init__()
        from .unet import UNetModel
        self.model_config = model_config
        self.latent_format: LatentFormat = model_config.latent_format()
        self.model_type: str = model_config.prediction
        with torch.device("cpu"):  # real tensors even when the network is built on "meta"
            self.model_sampling = build_model_sampling(self.model_type, model_config.sampling_settings)
        self.memory_usage_factor = getattr(model_config, "memory_usage_factor", 1.0)
        self.manual_cast_dtype: torch.dtype | None = None
        cls = unet_cls or UNetModel
        self.diffusion_model = cls(**model_config.unet_config, device=device)
        if model_config.unet_config.get("in_channels", 4) == 9:
            self.concat_keys = ("mask", "masked_image")

    # ---------------------------------------------------------------- dtypes / placement
    def get_dtype(self) -> torch.dtype:
        return next(self.diffusion_model.parameters()).dtype

    def compute_dtype(self) -> torch.dtype:
        return self.manual_cast_dtype or self.get_dtype()

    # -------------------------------------------------------------------------- latents
    def process_latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_out(latent)

    # ---------------------------------------------------------------------------- apply
    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_crossattn: torch.Tensor | None = None,
                    c_concat: torch.Tensor | None = None, y: torch.Tensor | None = None,
                    control: dict | None = None, transformer_options: dict | None = None,
                    cross_attn_bias: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Denoise. ``x``: noisy latent [B,C,H,W] in model space; ``t``: sigmas [B].
        ``c_crossattn`` [B,L,context_dim]; ``cross_attn_bias`` [B,L]: added to the
        cross-attention scores of each context token (log-space weight, -inf = masked);
        ``c_concat`` [B,Cc,H,W] (inpainting);
        ``y`` [B,adm_in_channels] (SDXL); ``control``: {"input": [...], "middle": [...],
        "output": [...]} residual lists (ControlNet); returns x0 estimate (float32)."""
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat.to(xc)], dim=1)
        dtype = self.compute_dtype()
        xc = xc.to(dtype)
        timestep = self.model_sampling.timestep(sigma).float()
        context = c_crossattn.to(dtype) if c_crossattn is not None else None
        if y is not None:
            y = y.to(dtype)
        transformer_options = transformer_options or {}
        if cross_attn_bias is not None:  # broadcast over heads and queries: [B,1,1,L]
            transformer_options = {**transformer_options, "cross_attn_bias": cross_attn_bias.to(dtype)[:, None, None, :]}
        out = self.diffusion_model(xc, timestep, context=context, y=y, control=control,
                                   transformer_options=transformer_options).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

    # ---------------------------------------------------------------------- conditioning
    def extra_conds(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Model inputs from one conditioning entry.

        kwargs: ``cross_attn`` (the CONDITIONING tensor [B,L,D]), ``pooled_output``,
        ``width``/``height`` (pixels), ``crop_w``/``crop_h``, ``target_width``/``target_height``,
        ``aesthetic_score``, ``prompt_type`` ("positive"/"negative"), ``noise`` (the latent
        being sampled, for shapes), ``device``, ``latent_image`` (model space),
        ``denoise_mask``, ``concat_latent_image`` (raw VAE latent), ``concat_mask``,
        ``attention_mask``/``attention_mask_img_shape`` (StyleModelApply's "attn_bias").
        Returns plain tensors keyed by :meth:`apply_model` argument names; batch them along
        dim 0 (``c_crossattn`` of different lengths: repeat each to the lcm of lengths).
        """
        out: dict[str, torch.Tensor] = {}
        device = kwargs.get("device")
        cross = kwargs.get("cross_attn")
        if cross is not None:
            out["c_crossattn"] = cross if device is None else cross.to(device)
            mask = kwargs.get("attention_mask")
            if mask is not None:
                bias = cross_attn_bias_from_mask(mask, cross.shape[1], kwargs.get("attention_mask_img_shape"))
                out["cross_attn_bias"] = bias if device is None else bias.to(device)
        concat = self.concat_cond(**kwargs)
        if concat is not None:
            out["c_concat"] = concat
        adm = self.encode_adm(**kwargs)
        if adm is not None:
            out["y"] = adm if device is None else adm.to(device)
        return out

    def encode_adm(self, **kwargs: Any) -> torch.Tensor | None:
        return None

    def concat_cond(self, **kwargs: Any) -> torch.Tensor | None:
        if not self.concat_keys:
            return None
        noise = kwargs["noise"]
        device = kwargs.get("device", noise.device)
        mask = kwargs.get("concat_mask", kwargs.get("denoise_mask"))
        image = kwargs.get("concat_latent_image")
        if image is None:
            image = kwargs.get("latent_image")
        else:
            image = self.process_latent_in(image)
        if image is not None:
            if image.shape[1:] != noise.shape[1:]:
                image = _bilinear_center(image, noise.shape[-1], noise.shape[-2])
            image = resize_to_batch_size(image, noise.shape[0])
        if mask is not None:
            if mask.ndim == noise.ndim:
                mask = mask[:, :1]
            mask = mask.reshape((-1, 1) + tuple(mask.shape[-2:]))
            if mask.shape[-2:] != noise.shape[-2:]:
                mask = _bilinear_center(mask, noise.shape[-1], noise.shape[-2])
            mask = resize_to_batch_size(mask.round(), noise.shape[0])
        parts = []
        for key in self.concat_keys:
            if mask is not None and image is not None:
                parts.append((mask if key == "mask" else image).to(device))
            elif key == "mask":
                parts.append(torch.ones_like(noise)[:, :1].to(device))
            else:
                parts.append(blank_inpaint_image_like(noise).to(device))
        return torch.cat(parts, dim=1)

    # ---------------------------------------------------------------------------- memory
    def memory_required(self, input_shape: tuple[int, ...] | torch.Size) -> int:
        """Estimated activation bytes for one :meth:`apply_model` call on ``input_shape``."""
        area = input_shape[0] * math.prod(input_shape[2:])
        dtype = self.compute_dtype()
        return int(area * memory.dtype_size(dtype) * 0.01 * self.memory_usage_factor * 1024 * 1024)

    # ----------------------------------------------------------------------- state dicts
    def load_model_weights(self, sd: dict[str, torch.Tensor], unet_prefix: str = "") -> tuple[list[str], list[str]]:
        """Load LDM-layout UNet weights (keys after ``unet_prefix``). Returns (missing, unexpected)."""
        to_load = {k[len(unet_prefix):]: v for k, v in sd.items() if k.startswith(unet_prefix)}
        res = self.diffusion_model.load_state_dict(to_load, strict=False, assign=False)
        return list(res.missing_keys), list(res.unexpected_keys)

    def state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        return {"model.diffusion_model." + k: v for k, v in self.diffusion_model.state_dict().items()}


class SD15Model(BaseModel):
    pass


class SD20Model(BaseModel):
    pass


class SDXLModel(BaseModel):
    """SDXL base: ``y`` = pooled CLIP-G output ++ 256-dim embeddings of (height, width,
    crop_h, crop_w, target_height, target_width)."""

    adm_fields = 6

    def encode_adm(self, **kwargs: Any) -> torch.Tensor | None:
        pooled = kwargs.get("pooled_output")
        if pooled is None:
            return None
        width = kwargs.get("width", 768)
        height = kwargs.get("height", 768)
        values = [height, width, kwargs.get("crop_h", 0), kwargs.get("crop_w", 0),
                  kwargs.get("target_height", height), kwargs.get("target_width", width)]
        return self._adm(pooled, values)

    def _adm(self, pooled: torch.Tensor, values: list[float]) -> torch.Tensor:
        emb = [timestep_embedding(torch.tensor([float(v)]), 256) for v in values]
        flat = torch.flatten(torch.cat(emb)).unsqueeze(0).repeat(pooled.shape[0], 1)
        return torch.cat((pooled.to(flat.device, flat.dtype), flat), dim=1)


class SDXLRefinerModel(SDXLModel):
    """SDXL refiner: ``y`` = pooled ++ (height, width, crop_h, crop_w, aesthetic_score)."""

    adm_fields = 5

    def encode_adm(self, **kwargs: Any) -> torch.Tensor | None:
        pooled = kwargs.get("pooled_output")
        if pooled is None:
            return None
        width = kwargs.get("width", 768)
        height = kwargs.get("height", 768)
        default_score = 2.5 if kwargs.get("prompt_type", "") == "negative" else 6.0
        score = kwargs.get("aesthetic_score", default_score)
        return self._adm(pooled, [height, width, kwargs.get("crop_h", 0), kwargs.get("crop_w", 0), score])
