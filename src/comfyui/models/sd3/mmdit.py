"""Stability AI's MMDiT: SD3 / SD3.5 large (joint attention over text and image tokens) and
MMDiT-X, SD3.5 medium (a second, image-only self-attention in the first blocks' image stream).

The module's own ``state_dict()`` keys are the native (Stability / ComfyUI) names:
``x_embedder.proj``, ``pos_embed`` (a learned-size table of sin-cos positions, cropped around
its centre to the latent's patch grid), ``t_embedder.mlp``, ``y_embedder.mlp``,
``context_embedder``, ``joint_blocks.N.{context_block,x_block}.{attn,attn2,adaLN_modulation,mlp}``,
``final_layer``. Hidden size = 64 * depth, heads = depth (head dim 64).

Inputs (:meth:`MMDiT.forward`): the latent [B, C, H, W], the timestep = sigma * 1000, the
context [B, T, context_in] (CLIP-L/G padded to the T5 width, then T5 tokens) and the pooled
vector ``y`` [B, 2048]. Output: the velocity [B, out_channels, H, W].
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..base import timestep_embedding

HEAD_DIM = 64


def _layer_norm(dim: int) -> nn.Module:
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])


class RMSNorm(nn.Module):
    """RMS norm over the head features with a learned ``weight`` (eps 1e-6)."""

    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
        return (out * self.weight.float()).to(x.dtype)


class Attention(nn.Module):
    """One stream's q/k/v projection (one Linear), optional q/k RMS norms and, unless the
    block is ``pre_only`` (the last context block), its output projection."""

    def __init__(self, dim: int, qk_norm: bool, pre_only: bool = False, device: Any = None):
        super().__init__()
        self.heads = dim // HEAD_DIM
        self.qkv = ops.Linear(dim, dim * 3, device=device)
        if qk_norm:
            self.ln_q = RMSNorm(HEAD_DIM, device=device)
            self.ln_k = RMSNorm(HEAD_DIM, device=device)
        else:
            self.ln_q = self.ln_k = None
        self.proj = None if pre_only else ops.Linear(dim, dim, device=device)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, L, dim] -> q, k, v each [B, heads, L, 64]."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, HEAD_DIM)).permute(2, 0, 3, 1, 4)
        if self.ln_q is not None:
            q, k = self.ln_q(q), self.ln_k(k)
        return q, k, v


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, heads, L, d] each -> [B, L, heads * d]."""
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, device: Any = None):
        super().__init__()
        self.fc1 = ops.Linear(dim, hidden, device=device)
        self.fc2 = ops.Linear(hidden, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class StreamBlock(nn.Module):
    """One stream (image or text) of a joint block, modulated by the conditioning vector:
    6 modulation vectors (shift/scale/gate for attention and MLP); 2 for a ``pre_only`` block
    (it only feeds the joint attention); 9 with a second self-attention (``attn2``, MMDiT-X)."""

    def __init__(self, dim: int, mlp_ratio: float, qk_norm: bool, pre_only: bool = False,
                 self_attn: bool = False, device: Any = None):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = _layer_norm(dim)
        self.attn = Attention(dim, qk_norm, pre_only, device=device)
        self.attn2 = Attention(dim, qk_norm, device=device) if self_attn else None
        if not pre_only:
            self.norm2 = _layer_norm(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), device=device)
        n_mods = 2 if pre_only else (9 if self_attn else 6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(dim, n_mods * dim, device=device))

    def pre_attention(self, x: torch.Tensor, c: torch.Tensor):
        """(q, k, v) for the joint attention, and what :meth:`post_attention` needs."""
        mods = self.adaLN_modulation(c).chunk(2 if self.pre_only else (9 if self.attn2 else 6), dim=1)
        normed = self.norm1(x)
        qkv = self.attn.qkv_heads(_modulate(normed, mods[0], mods[1]))
        return qkv, (x, normed, mods)

    def post_attention(self, attn: torch.Tensor, state) -> torch.Tensor:
        x, normed, mods = state
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[:6]
        x = x + gate_msa[:, None] * self.attn.proj(attn)
        if self.attn2 is not None:
            shift2, scale2, gate2 = mods[6:]
            own = attention(*self.attn2.qkv_heads(_modulate(normed, shift2, scale2)))
            x = x + gate2[:, None] * self.attn2.proj(own)
        return x + gate_mlp[:, None] * self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))


class JointBlock(nn.Module):
    """Text (``context_block``) and image (``x_block``) tokens attend jointly, text first."""

    def __init__(self, dim: int, mlp_ratio: float, qk_norm: bool, last: bool, x_self_attn: bool,
                 device: Any = None):
        super().__init__()
        self.context_block = StreamBlock(dim, mlp_ratio, qk_norm, pre_only=last, device=device)
        self.x_block = StreamBlock(dim, mlp_ratio, qk_norm, self_attn=x_self_attn, device=device)

    def forward(self, context: torch.Tensor, x: torch.Tensor, c: torch.Tensor):
        ctx_qkv, ctx_state = self.context_block.pre_attention(context, c)
        x_qkv, x_state = self.x_block.pre_attention(x, c)
        joint = attention(*(torch.cat((a, b), dim=2) for a, b in zip(ctx_qkv, x_qkv)))
        n_ctx = context.shape[1]
        x = self.x_block.post_attention(joint[:, n_ctx:], x_state)
        context = None if self.context_block.pre_only else self.context_block.post_attention(joint[:, :n_ctx], ctx_state)
        return context, x


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch_size: int, device: Any = None):
        super().__init__()
        self.patch_size = patch_size
        self.proj = ops.Conv2d(in_channels, dim, patch_size, stride=patch_size, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="circular")
        return self.proj(x).flatten(2).transpose(1, 2)


class Embedder(nn.Module):
    """Linear -> SiLU -> Linear (``mlp.0``, ``mlp.2``): the timestep and pooled-vector embedders."""

    def __init__(self, in_dim: int, dim: int, device: Any = None):
        super().__init__()
        self.mlp = nn.Sequential(ops.Linear(in_dim, dim, device=device), nn.SiLU(),
                                 ops.Linear(dim, dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_features: int, device: Any = None):
        super().__init__()
        self.norm_final = _layer_norm(dim)
        self.linear = ops.Linear(dim, out_features, device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(dim, 2 * dim, device=device))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class MMDiT(nn.Module):
    """The network. ``config``: the dict :func:`comfyui.models.sd3.detection.detect` returns."""

    def __init__(self, in_channels: int = 16, out_channels: int = 16, patch_size: int = 2, depth: int = 24,
                 mlp_ratio: float = 4.0, adm_in_channels: int | None = 2048,
                 context_embedder_config: dict | None = None, num_patches: int | None = None,
                 pos_embed_max_size: int | None = None, qk_norm: str | None = None,
                 x_block_self_attn_layers: list[int] = (), device: Any = None, **_: Any):
        super().__init__()
        if num_patches is None or pos_embed_max_size is None or pos_embed_max_size ** 2 != num_patches:
            raise ValueError(f"MMDiT: a square pos_embed table is required (num_patches {num_patches})")
        if qk_norm not in (None, "rms"):
            raise ValueError(f"MMDiT: qk_norm {qk_norm!r} is not supported (rms or none)")
        dim = HEAD_DIM * depth
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.pos_embed_max_size = pos_embed_max_size
        self.x_embedder = PatchEmbed(in_channels, dim, patch_size, device=device)
        self.register_buffer("pos_embed", torch.empty(1, num_patches, dim, device=device))
        self.t_embedder = Embedder(256, dim, device=device)
        self.y_embedder = Embedder(adm_in_channels, dim, device=device) if adm_in_channels else None
        if context_embedder_config is not None:
            params = context_embedder_config["params"]
            self.context_embedder = ops.Linear(params["in_features"], params["out_features"], device=device)
        else:
            self.context_embedder = None
        self_attn = set(x_block_self_attn_layers)
        self.joint_blocks = nn.ModuleList(
            JointBlock(dim, mlp_ratio, qk_norm == "rms", last=i == depth - 1, x_self_attn=i in self_attn,
                       device=device)
            for i in range(depth))
        self.final_layer = FinalLayer(dim, patch_size * patch_size * out_channels, device=device)

    def cropped_pos_embed(self, height: int, width: int) -> torch.Tensor:
        """The centre h x w patch positions of the table, [1, h*w, dim]."""
        p, size = self.patch_size, self.pos_embed_max_size
        h, w = (height + p - 1) // p, (width + p - 1) // p
        if h > size or w > size:
            raise ValueError(f"MMDiT: a {height}x{width} latent needs {h}x{w} patch positions; "
                             f"this model has {size}x{size}")
        top, left = (size - h) // 2, (size - w) // 2
        table = self.pos_embed.reshape(1, size, size, -1)[:, top:top + h, left:left + w]
        return table.reshape(1, h * w, -1)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, control: dict | None = None,
                transformer_options: dict | None = None, **_: Any) -> torch.Tensor:
        """Velocity for ``x`` [B, C, H, W] at ``timestep`` (sigma * 1000) [B]."""
        height, width = x.shape[-2:]
        dtype = x.dtype
        tokens = self.x_embedder(x) + self.cropped_pos_embed(height, width).to(dtype)
        c = self.t_embedder(timestep_embedding(timestep, 256).to(dtype))
        if y is not None and self.y_embedder is not None:
            c = c + self.y_embedder(y.to(dtype))
        if context is None:
            context = torch.zeros(x.shape[0], 0, self.context_embedder.in_features if self.context_embedder
                                  else tokens.shape[-1], device=x.device, dtype=dtype)
        if self.context_embedder is not None:
            context = self.context_embedder(context.to(dtype))

        replace = (transformer_options or {}).get("patches_replace", {}).get("dit", {})
        for i, block in enumerate(self.joint_blocks):
            if ("double_block", i) in replace:
                def original(args, block=block):
                    txt, img = block(args["txt"], args["img"], args["vec"])
                    return {"txt": txt, "img": img}
                out = replace[("double_block", i)](
                    {"img": tokens, "txt": context, "vec": c, "transformer_options": transformer_options},
                    {"original_block": original})
                context, tokens = out["txt"], out["img"]
            else:
                context, tokens = block(context, tokens, c)
            outputs = (control or {}).get("output") or ()
            if i < len(outputs) and outputs[i] is not None:
                tokens = tokens + outputs[i]
        out = self.final_layer(tokens, c)
        return self.unpatchify(out, height, width)

    def unpatchify(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        p = self.patch_size
        h, w = (height + p - 1) // p, (width + p - 1) // p
        b = tokens.shape[0]
        x = tokens.reshape(b, h, w, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, self.out_channels, h * p, w * p)[:, :, :height, :width]
