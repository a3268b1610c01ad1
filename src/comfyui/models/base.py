"""The MODEL contract: the :class:`LatentFormat` base and :class:`BaseModel` (a diffusion
network plus its noise schedule). A MODEL socket carries a
:class:`comfyui.models.patcher.ModelPatcher` whose ``.model`` is a family's subclass of
:class:`BaseModel`.

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
the network timestep, runs the network in the model's compute dtype and applies
``model_sampling.calculate_denoised`` (the default below is the UNet's call; a family whose
network takes other inputs overrides it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..sampling.model_sampling import model_sampling_from_settings as build_model_sampling
from . import memory
from .wrappers import DIFFUSION_MODEL, call_wrapped


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
@dataclass
class ModelConfig:
    """ComfyUI's ``model.model_config`` view of a detected model, which custom nodes read
    (``unet_config``, ``sampling_settings``, ``latent_format`` ...)."""
    name: str
    unet_config: dict[str, Any]
    latent_format: type
    sampling_settings: dict[str, Any]
    memory_usage_factor: float
    supported_inference_dtypes: tuple

    @property
    def inpaint(self) -> bool:
        return self.unet_config.get("in_channels") == 9


class BaseModel(torch.nn.Module):
    """A diffusion network with its schedule, latent format and conditioning rules.

    ``config``: the network config the family's detector read from the weights;
    ``family``: the :class:`comfyui.models.family.Family` (its ``sampling`` already resolved
    for this file: markers such as ``v_pred`` applied). A family's subclass calls this
    ``__init__`` and then builds ``self.diffusion_model`` (on ``device``; the loader uses
    "meta" and assigns the weights afterwards); its state-dict keys are the native ones.
    """

    concat_keys: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__()
        self.config = config
        self.family = family
        self.latent_format: LatentFormat = family.latent_format()
        sampling = dict(family.sampling)
        self.model_type: str = sampling["type"]
        with torch.device("cpu"):  # real tensors even when the network is built on "meta"
            self.model_sampling = build_model_sampling(sampling)
        self.memory_usage_factor = family.memory_usage_factor
        self.manual_cast_dtype: torch.dtype | None = None
        self.weight_dtype = dtype   # the storage dtype it was built with
        self.model_config = ModelConfig(family.variant_name(config), config, family.latent_format, sampling,
                                        family.memory_usage_factor, family.supported_dtypes)

    # ---------------------------------------------------------------- dtypes / placement
    def get_dtype(self) -> torch.dtype:
        """The storage dtype of the weights: the one the model was built with (a scaled-fp8 file
        also holds layers in other dtypes, whichever comes first), else the first parameter's."""
        return self.weight_dtype or next(self.diffusion_model.parameters()).dtype

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
        out = self.run_diffusion_model(xc, timestep, context=context, y=y, control=control,
                                   transformer_options=transformer_options).float()
        return self.model_sampling.calculate_denoised(sigma, out, x)

    def run_diffusion_model(self, *args: Any, transformer_options: dict, **kwargs: Any) -> torch.Tensor:
        """The network's forward through the ``diffusion_model`` wrappers (e.g. EasyCache)."""
        net = self.diffusion_model
        return call_wrapped(DIFFUSION_MODEL, transformer_options, net, net, *args,
                            transformer_options=transformer_options, **kwargs)

    # ---------------------------------------------------------------------- conditioning
    def extra_conds(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Model inputs from one conditioning entry.

        kwargs: ``cross_attn`` (the CONDITIONING tensor [B,L,D]), ``pooled_output``,
        ``width``/``height`` (pixels), ``crop_w``/``crop_h``, ``target_width``/``target_height``,
        ``aesthetic_score``, ``prompt_type`` ("positive"/"negative"), ``noise`` (the latent
        being sampled, for shapes), ``device``, ``latent_image`` (model space),
        ``denoise_mask``, ``concat_latent_image`` (raw VAE latent), ``concat_mask``,
        ``attention_mask``/``attention_mask_img_shape`` (StyleModelApply's "attn_bias"),
        ``cross_attn_controlnet`` (the ControlNets' own text embedding).
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
        cross_cnet = kwargs.get("cross_attn_controlnet")  # CLIPTextEncodeControlnet: the ControlNets' text
        if cross_cnet is not None:
            out["crossattn_controlnet"] = cross_cnet if device is None else cross_cnet.to(device)
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
