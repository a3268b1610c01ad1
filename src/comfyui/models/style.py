"""Style models (what a STYLE_MODEL socket carries). Each turns a CLIP vision encoder's
``last_hidden_state`` into extra text-conditioning tokens that StyleModelApply appends to the
prompt's tokens; the file's keys say which:

* the T2I-Adapter style adapter (``t2iadapter_style_sd14v1.pth``: ``style_embedding``,
  ``ln_pre``, ``transformer_layes.N``, ``ln_post``, ``proj``): 8 tokens for SD1.x;
* Flux Redux (``flux1-redux-dev.safetensors``: ``redux_up``, ``redux_down``): every SigLIP
  token (729 for the 384 px encoder) projected to the T5 width, ``down(silu(up(x)))``.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .loading import ModelFileError, load_torch_file


class _ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [L, N, D]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class StyleAdapter(nn.Module):
    def __init__(self, width: int = 1024, context_dim: int = 768, num_head: int = 16, n_layers: int = 3,
                 num_token: int = 8):
        super().__init__()
        self.num_token = num_token
        self.style_embedding = nn.Parameter(torch.zeros(1, num_token, width))
        self.transformer_layes = nn.Sequential(*[_ResidualAttentionBlock(width, num_head) for _ in range(n_layers)])
        self.ln_post = nn.LayerNorm(width)
        self.ln_pre = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, context_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        style = self.style_embedding.expand(x.shape[0], -1, -1).to(x)
        x = self.ln_pre(torch.cat([x, style], dim=1))
        x = self.transformer_layes(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, -self.num_token:, :]) @ self.proj


class ReduxImageEncoder(nn.Module):
    """Flux Redux: SigLIP features [B, N, siglip_width] -> Flux text tokens [B, N, txt_width]
    through a 3x-wide SiLU MLP. Widths come from the file (1152 -> 12288 -> 4096 for the
    released model)."""

    def __init__(self, redux_dim: int = 1152, txt_in_features: int = 4096, hidden: int | None = None):
        super().__init__()
        hidden = hidden or txt_in_features * 3
        self.redux_up = nn.Linear(redux_dim, hidden)
        self.redux_down = nn.Linear(hidden, txt_in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.redux_down(nn.functional.silu(self.redux_up(x)))


class StyleModel:
    def __init__(self, model: nn.Module):
        self.model = model

    def get_cond(self, clip_vision_output) -> torch.Tensor:
        x = clip_vision_output.last_hidden_state
        p = next(self.model.parameters())
        with torch.no_grad():
            return self.model(x.to(p.device, p.dtype)).float().cpu()


def insert_style_attention(mask: torch.Tensor | None, batch: int, n_text: int, n_style: int,
                           img_shape: tuple[int, int] | None, strength: float) -> torch.Tensor | None:
    """The conditioning ``attention_mask`` after ``n_style`` style tokens are inserted after the
    ``n_text`` text tokens, with log(strength) added to every query's scores for them.

    Layout (ComfyUI's): one float mask over the joint sequence [text, style..., image tokens]
    (``img_shape`` image tokens, 1x1 by default), added to attention scores; a bool mask
    (allowed/blocked) is turned into 0/-inf first. The style tokens' own rows stay 0. Returns
    None when there is nothing to mask (no earlier mask and strength 1)."""
    if mask is None and strength == 1.0:
        return None
    n_img = img_shape[0] * img_shape[1] if img_shape is not None else 1
    n_old = n_text + n_img
    if mask is None:
        mask = torch.zeros(batch, n_old, n_old)
    elif mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.shape[-2:] != (n_old, n_old):
        raise ValueError(f"conditioning attention_mask of shape {tuple(mask.shape)} does not match its "
                         f"{n_text} text tokens + {n_img} image tokens")
    keep = torch.cat([torch.arange(n_text), torch.arange(n_text + n_style, n_text + n_style + n_img)])
    n_new = n_old + n_style
    new = torch.zeros(mask.shape[0], n_new, n_new, dtype=torch.float32)
    new[:, keep[:, None], keep[None, :]] = mask.float()
    new[:, keep, n_text:n_text + n_style] = torch.log(torch.tensor(strength, dtype=torch.float32))
    return new


def load_style_model(path: str) -> StyleModel:
    sd = load_torch_file(path)
    if "redux_down.weight" in sd and "redux_up.weight" in sd:
        hidden, redux_dim = sd["redux_up.weight"].shape
        model = ReduxImageEncoder(redux_dim, sd["redux_down.weight"].shape[0], hidden)
        try:
            model.load_state_dict(sd)
        except RuntimeError as exc:
            raise ModelFileError(f"{os.path.basename(path)}: not a Flux Redux model: {exc}") from exc
        return StyleModel(model.eval().requires_grad_(False))
    if "style_embedding" not in sd:
        raise ModelFileError(f"{os.path.basename(path)}: not a style model (neither a T2I-Adapter style "
                             "model, with style_embedding, nor Flux Redux, with redux_up/redux_down)")
    _, num_token, width = sd["style_embedding"].shape
    context_dim = sd["proj"].shape[1]
    n_layers = 0
    while f"transformer_layes.{n_layers}.ln_1.weight" in sd:
        n_layers += 1
    heads = 8 if width == 1024 else max(1, width // 128)  # the released adapter: width 1024, 8 heads
    model = StyleAdapter(width, context_dim, heads, n_layers, num_token)
    missing, _ = model.load_state_dict(sd, strict=False)
    if missing:
        raise ModelFileError(f"{os.path.basename(path)}: style model weights missing: {missing[:4]}")
    return StyleModel(model.eval().requires_grad_(False))
