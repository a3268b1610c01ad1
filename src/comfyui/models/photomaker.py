"""PhotoMaker v1 ID encoder (what a PHOTOMAKER socket carries), for SDXL.

Layout of ``photomaker-v1.bin`` (a pickled dict ``{"id_encoder": {...}, "lora_weights": {...}}``;
a flat file with only the ``id_encoder`` keys, e.g. a .safetensors conversion, loads too):
``vision_model.*`` + ``visual_projection.weight`` (a CLIP ViT-L/14 vision tower in the
transformers layout, projecting to 768), ``visual_projection_2.weight`` (1024 -> 1280) and
``fuse_module.{mlp1,mlp2}.{layernorm,fc1,fc2}.*`` + ``fuse_module.layer_norm.*``. As in
ComfyUI, ``lora_weights`` (PhotoMaker's own UNet LoRA) is not applied by these nodes.

The image's two projections are concatenated (768 + 1280 = the width of SDXL's CLIP-L + CLIP-G
conditioning) and fused into the prompt embedding at the class-word position:
``layer_norm(mlp2(mlp1([prompt, id]) + prompt))`` where ``mlp(x) = fc2(gelu(fc1(layernorm(x))))``
(mlp2 adds its input back). Sizes come from the weights, so tiny test files load too.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from . import memory, ops
from .clip_vision import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPVisionModelProjection,
    clip_preprocess,
    vision_config,
)
from .loading import ModelFileError, load_torch_file
from .patcher import ModelPatcher


class FuseMLP(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, residual: bool):
        super().__init__()
        self.layernorm = ops.LayerNorm(in_dim)
        self.fc1 = ops.Linear(in_dim, hidden_dim)
        self.fc2 = ops.Linear(hidden_dim, out_dim)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(nn.functional.gelu(self.fc1(self.layernorm(x))))
        return x + y if self.residual else y


class FuseModule(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mlp1 = FuseMLP(dim * 2, dim, dim, residual=False)
        self.mlp2 = FuseMLP(dim, dim, dim, residual=True)
        self.layer_norm = ops.LayerNorm(dim)

    def forward(self, token_embeds: torch.Tensor, id_embeds: torch.Tensor) -> torch.Tensor:
        """Fused embeddings for ``token_embeds`` [N, dim] with one ``id_embeds`` row each."""
        x = self.mlp1(torch.cat([token_embeds, id_embeds], dim=-1)) + token_embeds
        return self.layer_norm(self.mlp2(x))


class PhotoMakerIDEncoder(CLIPVisionModelProjection):
    def __init__(self, sd: dict[str, torch.Tensor]):
        cfg = vision_config(sd)
        if cfg.siglip or cfg.encoder.projection_dim is None:
            raise ModelFileError("a PhotoMaker ID encoder has a CLIP vision tower with a visual_projection")
        super().__init__(cfg.encoder, cfg.patch, cfg.image_size, cfg.encoder.projection_dim)
        self.image_size = cfg.image_size
        proj2 = sd["visual_projection_2.weight"].shape[0]
        self.visual_projection_2 = ops.Linear(cfg.encoder.hidden_size, proj2, bias=False)
        self.fuse_module = FuseModule(cfg.encoder.projection_dim + proj2)

    def id_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, projection + projection_2]: both projections of the pooled class token."""
        pooled = self.encode_tower(pixel_values)[2]
        return torch.cat([self.visual_projection(pooled), self.visual_projection_2(pooled)], dim=-1)


class PhotoMakerModel:
    """What a PHOTOMAKER socket carries."""

    def __init__(self, sd: dict[str, torch.Tensor]):
        sd = {k: v for k, v in sd.items() if k != "vision_model.embeddings.position_ids"}
        needed = ("visual_projection_2.weight", "fuse_module.layer_norm.weight")
        absent = [k for k in needed if k not in sd]
        if absent:
            raise ModelFileError(f"not a PhotoMaker model (no {', '.join(absent)})")
        with torch.device("meta"):
            self.model = PhotoMakerIDEncoder(sd)
        missing, unexpected = ops.assign_state_dict(self.model, sd, torch.float32)
        if missing:
            raise ModelFileError(f"PhotoMaker weights missing: {missing[:4]}")
        if unexpected:
            raise ModelFileError(f"PhotoMaker weights not understood: {unexpected[:4]}")
        self.width = self.model.fuse_module.layer_norm.weight.shape[0]
        self.model.eval().requires_grad_(False)
        self.load_device = memory.text_encoder_device()
        self.patcher = ModelPatcher(self.model, load_device=self.load_device,
                                    offload_device=memory.text_encoder_offload_device())

    def fuse(self, image: torch.Tensor, prompt_embeds: torch.Tensor, position: int) -> torch.Tensor:
        """``prompt_embeds`` [B, tokens, width] with the token at ``position`` fused with the
        first image of ``image`` [N, H, W, C] (upstream uses one ID image)."""
        if prompt_embeds.shape[-1] != self.width:
            raise ValueError(f"PhotoMaker expects {self.width}-wide conditioning (SDXL's CLIP-L + CLIP-G), "
                             f"got {prompt_embeds.shape[-1]}: use an SDXL CLIP")
        memory.load_models_gpu([self.patcher])
        dev = self.load_device
        pixels = clip_preprocess(image[:1].to(dev), size=self.model.image_size, mean=CLIP_MEAN, std=CLIP_STD)
        out = prompt_embeds.to(dev, torch.float32).clone()
        with torch.no_grad():
            ids = self.model.id_embeds(pixels.float())
            tokens = out[:, position]
            out[:, position] = self.model.fuse_module(tokens, ids.expand(tokens.shape[0], -1))
        return out.to(memory.intermediate_device(), prompt_embeds.dtype)


def load_photomaker(path: str) -> PhotoMakerModel:
    data = load_torch_file(path)
    if isinstance(data, dict) and isinstance(data.get("id_encoder"), dict):
        data = data["id_encoder"]
    try:
        return PhotoMakerModel(data)
    except ModelFileError as exc:
        raise ModelFileError(f"{os.path.basename(path)}: {exc}") from exc
