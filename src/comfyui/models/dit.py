"""Building blocks shared by the Flux-style DiT families (Flux.1, Chroma): the sinusoidal
timestep embedding, RoPE over several position axes, joint attention, RMS norm with BFL's
``scale`` weight, q/k norms, the two-layer MLP embedder, a stream's q/k/v + projection, the
modulation helpers, and :func:`upscale_dit_mask` (a conditioning attention mask over
[text, image tokens] resized to the current image-token grid).

Shared layer: imports no family.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import ops


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0,
                       time_factor: float = 1000.0) -> torch.Tensor:
    """Sinusoidal ``[cos, sin]`` embedding of ``t * time_factor`` (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * time_factor)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_angles(ids: torch.Tensor, axes_dim: list[int], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [B, 1, L, head_dim/2] of the rotation angles for position ids [B, L, n_axes]:
    axis i owns ``axes_dim[i] / 2`` frequency pairs, ``theta ** (-2k / axes_dim[i])``."""
    angles = []
    for i, dim in enumerate(axes_dim):
        omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim)
        angles.append(ids[..., i:i + 1].double() * omega)
    angle = torch.cat(angles, dim=-1).float().unsqueeze(1)
    return torch.cos(angle), torch.sin(angle)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the adjacent pairs (x[2k], x[2k+1]) of the head features by the angles of ``rope``
    (computed in float32, returned in x's dtype)."""
    cos, sin = rope
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """q, k, v [B, heads, L, head_dim] -> [B, L, heads * head_dim]."""
    q, k = apply_rope(q, rope), apply_rope(k, rope)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


class RMSNorm(nn.Module):
    """RMS norm with a learned ``scale`` (BFL's name for the weight), eps 1e-6, in float32."""

    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.scale = nn.Parameter(torch.empty(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
        return (out * self.scale.to(device=x.device, dtype=torch.float32)).to(x.dtype)


class QKNorm(nn.Module):
    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.query_norm = RMSNorm(dim, device=device)
        self.key_norm = RMSNorm(dim, device=device)


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden: int, device: Any = None):
        super().__init__()
        self.in_layer = ops.Linear(in_dim, hidden, device=device)
        self.out_layer = ops.Linear(hidden, hidden, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class SelfAttention(nn.Module):
    """The q/k/v projection (one Linear), q/k RMS norms and output projection of one stream."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, device: Any = None):
        super().__init__()
        self.heads = heads
        self.qkv = ops.Linear(dim, dim * 3, bias=qkv_bias, device=device)
        self.norm = QKNorm(dim // heads, device=device)
        self.proj = ops.Linear(dim, dim, device=device)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, L, dim] -> normalised q, k and v, each [B, heads, L, head_dim]."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        return self.norm.query_norm(q), self.norm.key_norm(k), v


def layer_norm(dim: int) -> nn.Module:
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift, x, 1 + scale)


def clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16:
        return torch.nan_to_num(x, nan=0.0, posinf=65504, neginf=-65504)
    return x


def rope_axes(head_dim: int) -> list[int]:
    """The RoPE axes (index, row, column) of a head dim, split as upstream does for 128
    ((16, 56, 56)): one eighth for the index axis, the rest halved between rows and columns."""
    index_axis = head_dim // 8
    side = (head_dim - index_axis) // 2
    if index_axis % 2 or side % 2 or index_axis + 2 * side != head_dim:
        raise ValueError(f"head dim {head_dim} cannot be split into even RoPE axes")
    return [index_axis, side, side]


def upscale_dit_mask(mask: torch.Tensor, size_in: tuple[int, int], size_out: tuple[int, int]) -> torch.Tensor:
    """A mask [B, T+hi*wi, T+hi*wi] (or 2-D) over [text tokens, image tokens of a hi x wi grid]
    -> the same over a ho x wo grid: the text/text block kept, the blocks with image queries or
    keys resized bilinearly along their image axes (as upstream's ``upscale_dit_mask``; a -inf
    bias becomes the dtype's half minimum first, which blocks attention the same way)."""
    (hi, wi), (ho, wo) = size_in, size_out
    if (hi, wi) == (ho, wo):
        return mask
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise ValueError(f"attention mask of shape {list(mask.shape)}: expected [b, q, k] or [q, k]")
    if mask.is_floating_point():  # -inf (a bias of log 0) times a zero interpolation weight is NaN
        mask = mask.clamp(min=torch.finfo(mask.dtype).min / 2)
    t = mask.shape[1] - hi * wi
    b = mask.shape[0]

    def resize(x: torch.Tensor) -> torch.Tensor:  # [b, n, hi*wi] -> [b, n, ho*wo]
        n = x.shape[1]
        x = F.interpolate(x.reshape(b, n, hi, wi), size=(ho, wo), mode="bilinear")
        return x.reshape(b, n, ho * wo)

    txt_txt, txt_img = mask[:, :t, :t], mask[:, :t, t:]
    img_txt, img_img = mask[:, t:, :t], mask[:, t:, t:]
    txt_img = resize(txt_img)
    img_txt = resize(img_txt.transpose(1, 2)).transpose(1, 2)
    img_img = resize(resize(img_img).transpose(1, 2)).transpose(1, 2)  # keys, then queries
    return torch.cat([torch.cat([txt_txt, txt_img], dim=2), torch.cat([img_txt, img_img], dim=2)], dim=1)


# ---- Flux-style blocks; the caller gives the modulation (shift, scale, gate) ----

class DoubleStreamBlock(nn.Module):
    """Flux's double-stream block; the modulation comes from outside: ``mods`` =
    ((img attention triple, img MLP triple), (txt attention triple, txt MLP triple))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, device: Any = None):
        super().__init__()
        mlp_hidden = int(dim * mlp_ratio)
        for stream in ("img", "txt"):
            self.add_module(f"{stream}_norm1", layer_norm(dim))
            self.add_module(f"{stream}_attn", SelfAttention(dim, heads, qkv_bias, device=device))
            self.add_module(f"{stream}_norm2", layer_norm(dim))
            self.add_module(f"{stream}_mlp", nn.Sequential(
                ops.Linear(dim, mlp_hidden, device=device), nn.GELU(approximate="tanh"),
                ops.Linear(mlp_hidden, dim, device=device)))

    def forward(self, img: torch.Tensor, txt: torch.Tensor, mods: tuple, rope: tuple,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ((img_shift1, img_scale1, img_gate1), (img_shift2, img_scale2, img_gate2)), \
            ((txt_shift1, txt_scale1, txt_gate1), (txt_shift2, txt_scale2, txt_gate2)) = mods
        img_q, img_k, img_v = self.img_attn.qkv_heads(modulate(self.img_norm1(img), img_shift1, img_scale1))
        txt_q, txt_k, txt_v = self.txt_attn.qkv_heads(modulate(self.txt_norm1(txt), txt_shift1, txt_scale1))
        attn = attention(torch.cat((txt_q, img_q), dim=2), torch.cat((txt_k, img_k), dim=2),
                         torch.cat((txt_v, img_v), dim=2), rope, mask)
        n_txt = txt.shape[1]
        txt_attn, img_attn = attn[:, :n_txt], attn[:, n_txt:]
        img = img + img_gate1 * self.img_attn.proj(img_attn)
        img = img + img_gate2 * self.img_mlp(modulate(self.img_norm2(img), img_shift2, img_scale2))
        txt = txt + txt_gate1 * self.txt_attn.proj(txt_attn)
        txt = txt + txt_gate2 * self.txt_mlp(modulate(self.txt_norm2(txt), txt_shift2, txt_scale2))
        return img, clamp_fp16(txt)


class SingleStreamBlock(nn.Module):
    """Flux's single-stream block (fused q/k/v + MLP input, fused output), modulated from outside."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, device: Any = None):
        super().__init__()
        self.dim = dim
        self.heads = heads
        self.mlp_hidden = int(dim * mlp_ratio)
        self.linear1 = ops.Linear(dim, dim * 3 + self.mlp_hidden, device=device)
        self.linear2 = ops.Linear(dim + self.mlp_hidden, dim, device=device)
        self.norm = QKNorm(dim // heads, device=device)
        self.pre_norm = layer_norm(dim)
        self.mlp_act = nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor, mods: tuple, rope: tuple, mask: torch.Tensor | None = None) -> torch.Tensor:
        shift, scale, gate = mods
        projected = self.linear1(modulate(self.pre_norm(x), shift, scale))
        q, k, v = projected[..., :3 * self.dim].unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        q, k, v = self.norm.query_norm(q), self.norm.key_norm(k), v.contiguous()
        mlp = self.mlp_act(projected[..., 3 * self.dim:])
        del projected
        attn = attention(q, k, v, rope, mask)
        return clamp_fp16(x + gate * self.linear2(torch.cat((attn, mlp), dim=-1)))


class LastLayer(nn.Module):
    def __init__(self, dim: int, out_features: int, device: Any = None):
        super().__init__()
        self.norm_final = layer_norm(dim)
        self.linear = ops.Linear(dim, out_features, device=device)

    def forward(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.linear(modulate(self.norm_final(x), shift, scale))
