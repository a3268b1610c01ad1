"""The LTX-Video 0.9.x transformer (Lightricks' video DiT).

Native keys (= the single-file checkpoint's, under ``model.diffusion_model.``):
``patchify_proj``, ``adaln_single.{emb.timestep_embedder.linear_1,linear_2, linear}``,
``caption_projection.linear_{1,2}``, ``transformer_blocks.N.{attn1,attn2,ff,scale_shift_table}``,
``scale_shift_table``, ``proj_out``.

Each latent cell [C=128] is one token (patch size 1). Every block: self-attention with
QK RMS-norm across heads and 3-D rotary positions, cross-attention to the projected T5
states (with the text attention mask), a GELU(tanh) MLP; adaLN-single modulation from the
timestep, which may differ per token (``timestep`` [B, N, 1]: the image-to-video
conditioning frames run at timestep 0).

Positions: a token's latent index (t, y, x) times the VAE factors (8, 32, 32) gives pixel
coordinates; the time coordinate is then divided by the frame rate (seconds). The rotary
angles use the fractional coordinates (t/20, y/2048, x/2048) mapped to [-1, 1] over
``dim // 6`` log-spaced frequencies per axis (the first ``dim % 6`` channels unrotated).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops

MAX_POS = (20, 2048, 2048)


def timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Sinusoidal embedding, cos first, frequencies exp(-ln(10000) * i / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype)


def rope_cos_sin(coords: torch.Tensor, dim: int, theta: float = 10000.0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """coords [B, 3, N] (seconds-scaled time, pixel y, pixel x) -> (cos, sin) [B, N, dim]."""
    frac = torch.stack([coords[:, i].float() / MAX_POS[i] for i in range(3)], dim=-1)  # [B, N, 3]
    n = dim // 6
    freqs = theta ** torch.linspace(0.0, 1.0, n, device=coords.device, dtype=torch.float32) * (math.pi / 2)
    angles = (freqs * (frac.unsqueeze(-1) * 2 - 1)).transpose(-1, -2).flatten(2)  # [B, N, 3n]: axis-major
    cos = angles.cos().repeat_interleave(2, dim=-1)
    sin = angles.sin().repeat_interleave(2, dim=-1)
    pad = dim % 6
    if pad:
        cos = torch.cat([torch.ones_like(cos[..., :pad]), cos], dim=-1)
        sin = torch.cat([torch.zeros_like(sin[..., :pad]), sin], dim=-1)
    return cos.to(dtype), sin.to(dtype)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin) over the full width."""
    cos, sin = rope
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, dim: int, context_dim: int | None, heads: int, head_dim: int, device: Any = None):
        super().__init__()
        inner = heads * head_dim
        context_dim = dim if context_dim is None else context_dim
        self.heads = heads
        self.q_norm = ops.RMSNorm(inner, eps=1e-5)
        self.k_norm = ops.RMSNorm(inner, eps=1e-5)
        self.to_q = ops.Linear(dim, inner, device=device)
        self.to_k = ops.Linear(context_dim, inner, device=device)
        self.to_v = ops.Linear(context_dim, inner, device=device)
        self.to_out = nn.Sequential(ops.Linear(inner, dim, device=device), nn.Identity())

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                rope: tuple | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = self.q_norm(self.to_q(x))
        k = self.k_norm(self.to_k(context))
        v = self.to_v(context)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        b = x.shape[0]
        q, k, v = (t.view(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, x.shape[1], -1))


class GELUProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, device: Any = None):
        super().__init__()
        self.proj = ops.Linear(dim_in, dim_out, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, device: Any = None):
        super().__init__()
        self.net = nn.Sequential(GELUProj(dim, dim * mult, device=device), nn.Identity(),
                                 ops.Linear(dim * mult, dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, device: Any = None):
        super().__init__()
        self.attn1 = Attention(dim, None, heads, head_dim, device=device)
        self.ff = FeedForward(dim, device=device)
        self.attn2 = Attention(dim, context_dim, heads, head_dim, device=device)
        self.scale_shift_table = nn.Parameter(torch.empty(6, dim, device=device))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None, temb: torch.Tensor,
                rope: tuple) -> torch.Tensor:
        table = self.scale_shift_table[None, None].to(x)
        mod = table + temb.reshape(x.shape[0], temb.shape[1], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.unbind(dim=2)
        x = x + self.attn1(rms_norm(x) * (1 + scale_msa) + shift_msa, rope=rope) * gate_msa
        x = x + self.attn2(x, context=context, mask=mask)
        x = x + self.ff(rms_norm(x) * (1 + scale_mlp) + shift_mlp) * gate_mlp
        return x


class _TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.linear_1 = ops.Linear(256, dim, device=device)
        self.linear_2 = ops.Linear(dim, dim, device=device)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(t)))


class _Emb(nn.Module):
    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.timestep_embedder = _TimestepEmbedder(dim, device=device)


class AdaLayerNormSingle(nn.Module):
    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.emb = _Emb(dim, device=device)
        self.linear = ops.Linear(dim, 6 * dim, device=device)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.emb.timestep_embedder(timestep_embedding(t).to(dtype))
        return self.linear(F.silu(embedded)), embedded


class CaptionProjection(nn.Module):
    def __init__(self, in_features: int, dim: int, device: Any = None):
        super().__init__()
        self.linear_1 = ops.Linear(in_features, dim, device=device)
        self.linear_2 = ops.Linear(dim, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


def latent_coords(frames: int, height: int, width: int, batch: int, device: Any) -> torch.Tensor:
    """[B, 3, T*H*W] latent (t, y, x) of every token, frame-major."""
    grid = torch.meshgrid(torch.arange(frames, device=device), torch.arange(height, device=device),
                          torch.arange(width, device=device), indexing="ij")
    return torch.stack(grid, dim=0).reshape(1, 3, -1).repeat(batch, 1, 1)


def pixel_coords(coords: torch.Tensor, scale_factors=(8, 32, 32), causal_fix: bool = False) -> torch.Tensor:
    out = coords * torch.tensor(scale_factors, device=coords.device)[None, :, None]
    if causal_fix:  # the first latent frame holds one picture
        out[:, 0] = (out[:, 0] + 1 - scale_factors[0]).clamp(min=0)
    return out


def patchify(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T*H*W, C]."""
    return x.flatten(2).transpose(1, 2)


class LTXVModel(nn.Module):
    """``config``: what :func:`comfyui.models.ltxv.detection.detect` returns."""

    def __init__(self, in_channels: int = 128, cross_attention_dim: int = 2048, attention_head_dim: int = 64,
                 num_attention_heads: int = 32, caption_channels: int = 4096, num_layers: int = 28,
                 positional_embedding_theta: float = 10000.0, causal_temporal_positioning: bool = False,
                 vae_scale_factors=(8, 32, 32), device: Any = None, **_: Any):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.inner_dim = dim
        self.out_channels = in_channels
        self.theta = positional_embedding_theta
        self.causal_temporal_positioning = causal_temporal_positioning
        self.vae_scale_factors = tuple(vae_scale_factors)
        self.patchify_proj = ops.Linear(in_channels, dim, device=device)
        self.adaln_single = AdaLayerNormSingle(dim, device=device)
        self.caption_projection = CaptionProjection(caption_channels, dim, device=device)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(dim, num_attention_heads, attention_head_dim, cross_attention_dim, device=device)
            for _ in range(num_layers))
        self.scale_shift_table = nn.Parameter(torch.empty(2, dim, device=device))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out = ops.Linear(dim, in_channels, device=device)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                attention_mask: torch.Tensor | None = None, frame_rate: float = 25,
                keyframe_idxs: torch.Tensor | None = None, transformer_options: dict | None = None,
                **_: Any) -> torch.Tensor:
        """Velocity for ``x`` [B, C, T, H, W]. ``timestep``: sigma, [B] or per token [B, N, 1];
        ``context`` [B, L, caption_channels]; ``attention_mask`` [B, L] (1 keep, 0 drop) or an
        additive float bias; ``keyframe_idxs`` [B, 3, K]: pixel coordinates of the last K
        tokens (LTXVAddGuide's appended guide frames)."""
        b, c, frames, height, width = x.shape
        coords = pixel_coords(latent_coords(frames, height, width, b, x.device), self.vae_scale_factors,
                              self.causal_temporal_positioning).float()
        if keyframe_idxs is not None:
            coords[:, :, -keyframe_idxs.shape[2]:] = keyframe_idxs.to(coords)
        coords[:, 0] = coords[:, 0] / float(frame_rate)
        return self.forward_tokens(patchify(x), timestep, context, coords, attention_mask,
                                   transformer_options).transpose(1, 2).reshape(b, c, frames, height, width)

    def forward_tokens(self, tokens: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                       coords: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       transformer_options: dict | None = None) -> torch.Tensor:
        """The network on tokens [B, N, C] at positions ``coords`` [B, 3, N] (time in seconds,
        pixel y, pixel x) -> [B, N, C]."""
        dtype = tokens.dtype
        b = tokens.shape[0]
        h = self.patchify_proj(tokens)
        mask = None
        if attention_mask is not None:
            if attention_mask.is_floating_point() and attention_mask.min() < 0:
                mask = attention_mask.to(dtype)  # already additive
            else:
                mask = (attention_mask.to(dtype) - 1) * torch.finfo(dtype).max
            mask = mask.reshape(b, 1, -1, mask.shape[-1])
        rope = rope_cos_sin(coords, self.inner_dim, self.theta, dtype)
        temb, embedded = self.adaln_single((timestep * 1000.0).flatten(), dtype)
        temb = temb.view(b, -1, temb.shape[-1])
        embedded = embedded.view(b, -1, embedded.shape[-1])
        context = self.caption_projection(context).view(b, -1, h.shape[-1])

        replace = (transformer_options or {}).get("patches_replace", {}).get("dit", {})
        for i, block in enumerate(self.transformer_blocks):
            if ("double_block", i) in replace:
                def original(args, block=block):
                    return {"img": block(args["img"], args["txt"], args["attention_mask"], args["vec"], args["pe"])}
                h = replace[("double_block", i)]({"img": h, "txt": context, "attention_mask": mask, "vec": temb,
                                                  "pe": rope, "transformer_options": transformer_options},
                                                 {"original_block": original})["img"]
            else:
                h = block(h, context, mask, temb, rope)

        shift, scale = (self.scale_shift_table[None, None].to(h) + embedded[:, :, None]).unbind(dim=2)
        h = self.norm_out(h) * (1 + scale) + shift
        return self.proj_out(h)
