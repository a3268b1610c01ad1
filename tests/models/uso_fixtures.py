"""Tiny random-weight Flux USO files in the real layouts: the style projector
``uso-flux1-projector-v1.safetensors`` (``feature_embedder.{high,mid,low}_*``; no independent
implementation exists, so its math is checked against the formula in test_uso.py) and the DiT
LoRA ``uso-flux1-dit-lora-v1.safetensors``, written in ComfyUI's native LoRA layout
(``diffusion_model.<BFL key>.lora_down/lora_up.weight`` + ``alpha``; the repackaged file's exact
naming is not known here)."""
from __future__ import annotations

import torch


def projector_sd(seed: int = 0, siglip_tokens: int = 729, style_tokens: int = 16, siglip_width: int = 144,
                 hidden: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for depth in ("high", "mid", "low"):
        p = f"feature_embedder.{depth}_"
        sd[p + "embedding_linear.0.weight"] = torch.randn(style_tokens, siglip_tokens, generator=g) / siglip_tokens ** 0.5
        sd[p + "embedding_linear.0.bias"] = 0.05 * torch.randn(style_tokens, generator=g)
        sd[p + "layer_norm.weight"] = 1.0 + 0.1 * torch.randn(siglip_width, generator=g)
        sd[p + "layer_norm.bias"] = 0.05 * torch.randn(siglip_width, generator=g)
        sd[p + "projection.weight"] = torch.randn(hidden, siglip_width, generator=g) / siglip_width ** 0.5
        sd[p + "projection.bias"] = 0.05 * torch.randn(hidden, generator=g)
    return sd


def dit_lora_sd(native: dict[str, torch.Tensor], rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA on every double/single block's attention projections of the Flux weights ``native``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, w in native.items():
        if w.ndim == 2 and key.endswith((".qkv.weight", ".proj.weight", "linear1.weight", "linear2.weight")):
            base = "diffusion_model." + key[:-len(".weight")]
            out[base + ".lora_down.weight"] = torch.randn(rank, w.shape[1], generator=g) / w.shape[1] ** 0.5
            out[base + ".lora_up.weight"] = 0.1 * torch.randn(w.shape[0], rank, generator=g)
            out[base + ".alpha"] = torch.tensor(float(rank))
    return out
