"""A tiny random Lotus-D (``lotus-depth-d-v1-1``): a diffusers UNet2DConditionModel in the
real file's layout (diffusers keys, the 4-number task embedding as ``class_embedding``, a
1024-wide cross-attention for the shipped conditioning, linear projections, 8 heads as the
SD2-era ``attention_head_dim`` says), and the SD1.x VAE it decodes with."""
from __future__ import annotations

import torch

from .fixtures import TINY_VAE, vae_sd
from .lumina2_fixtures import randomize


def diffusers_lotus(seed: int = 0):
    from diffusers import UNet2DConditionModel
    torch.manual_seed(seed)
    model = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024, attention_head_dim=8, use_linear_projection=True, norm_num_groups=32,
        class_embed_type="projection", projection_class_embeddings_input_dim=4)
    return randomize(model, seed)


def lotus_file_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in diffusers_lotus(seed).state_dict().items()}


def sd1_vae_file_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """``vae-ft-mse-840000-ema-pruned``'s layout: the LDM VAE keys at the top level."""
    return vae_sd(TINY_VAE, seed)
