"""The SD1.x / SD2.x / SDXL BaseModels: an LDM UNet, its class-embedding (``y``) inputs and
the inpainting concat inputs."""
from __future__ import annotations

from typing import Any

import torch

from ..base import BaseModel, timestep_embedding
from ..convert import unet_to_diffusers
from ..clip_vision import CLIPEmbeddingNoiseAugmentation, unclip_adm
from .unet import UNetModel


def lora_key_map(model: BaseModel) -> dict[str, str]:
    """LoRA names of the UNet's weights in diffusers layout (kohya ``lora_unet_down_blocks_...``,
    PEFT ``unet.down_blocks...``, LyCORIS)."""
    sd_keys = set(model.state_dict().keys())
    key_map: dict[str, str] = {}
    for dk, lk in unet_to_diffusers(model.config).items():
        full = "diffusion_model." + lk
        if not dk.endswith(".weight") or full not in sd_keys:
            continue
        base = dk[:-len(".weight")]
        key_map["lora_unet_" + base.replace(".", "_")] = full
        key_map["unet." + base] = full
        key_map["lycoris_" + base.replace(".", "_")] = full
        key_map[base] = full
        key_map["base_model.model." + base] = full
    return key_map


class UNetBaseModel(BaseModel):
    """SD1.x / SD2.x: the UNet, cross-attention on the text embedding (9 input channels =
    inpainting: ``mask`` and ``masked_image`` concatenated)."""

    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.diffusion_model = UNetModel(**config, device=device)
        if config.get("in_channels", 4) == 9:
            self.concat_keys = ("mask", "masked_image")


class SDXLModel(UNetBaseModel):
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


class SD21UNCLIPModel(UNetBaseModel):
    """SD 2.1 unCLIP: ``y`` = noise-augmented CLIP image embedding ++ its noise level embedding."""

    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        self.adm_channels = config["adm_in_channels"]
        with torch.device("cpu"):
            self.noise_augmentor = CLIPEmbeddingNoiseAugmentation(self.adm_channels // 2)

    def encode_adm(self, **kwargs: Any) -> torch.Tensor:
        unclip = kwargs.get("unclip_conditioning")
        device = kwargs.get("device") or torch.device("cpu")
        if unclip is None:
            return torch.zeros((1, self.adm_channels))
        seed = kwargs.get("seed")
        return unclip_adm(unclip, device, self.noise_augmentor, kwargs.get("unclip_noise_augment_merge", 0.05),
                          None if seed is None else seed - 10)


class LotusModel(UNetBaseModel):
    """Lotus-D: the UNet predicts the depth latent (x0) straight from the image latent given
    as the input (sampling type "img_to_img"); ``y`` is its fixed task embedding."""

    def encode_adm(self, **kwargs: Any) -> torch.Tensor:
        task = torch.tensor([1.0, 0.0])  # depth
        return torch.cat([torch.sin(task), torch.cos(task)]).unsqueeze(0)
