"""Tiny random-weight Flux Redux files built with the independent implementations
(transformers' ``SiglipVisionModel``, diffusers' ``ReduxImageEncoder``) in the real file
layouts: ``sigclip_vision_patch14_384.safetensors`` (``vision_model.*`` with the attention
pooling ``head``, 384 px, patch 14: 729 positions) and ``flux1-redux-dev.safetensors``
(``redux_up`` / ``redux_down``)."""
from __future__ import annotations

import torch


def hf_siglip(seed: int = 0, hidden: int = 144, heads: int = 2, layers: int = 3, inter: int = 200,
              image_size: int = 384):
    """A random transformers SiglipVisionModel (72-wide heads as the real so400m tower)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    torch.manual_seed(seed)
    cfg = SiglipVisionConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                             num_attention_heads=heads, image_size=image_size, patch_size=14,
                             hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    m = SiglipVisionModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return m


def siglip_file_sd(model) -> dict[str, torch.Tensor]:
    """The layout of ``sigclip_vision_patch14_384.safetensors``: every key under ``vision_model.``."""
    return {"vision_model." + k if not k.startswith("vision_model.") else k: v.detach().clone()
            for k, v in model.state_dict().items()}


def diffusers_redux(seed: int = 0, redux_dim: int = 144, txt: int = 64):
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    torch.manual_seed(seed)
    m = ReduxImageEncoder(redux_dim=redux_dim, txt_in_features=txt).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m


def write_redux_files(models_dir: str, txt: int = 64, siglip_layers: int = 3) -> dict[str, str]:
    """The Redux files under ``models_dir`` (clip_vision/, style_models/); ``txt``: the T5 width
    of the Flux model they go with; ``siglip_layers``: the vision tower's depth (USO reads
    layer -20: 20 at least). Returns name -> path."""
    import os

    from safetensors.torch import save_file

    def save(sd: dict[str, torch.Tensor], folder: str, name: str) -> str:
        path = os.path.join(models_dir, folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
        return path

    return {
        "sigclip_vision_patch14_384.safetensors": save(
            {k: v.half() for k, v in siglip_file_sd(hf_siglip(41, layers=siglip_layers)).items()},
            "clip_vision", "sigclip_vision_patch14_384.safetensors"),
        "flux1-redux-dev.safetensors": save({k: v.bfloat16() for k, v in diffusers_redux(42, txt=txt).state_dict().items()},
                                            "style_models", "flux1-redux-dev.safetensors"),
    }
