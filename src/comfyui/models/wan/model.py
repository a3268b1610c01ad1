"""The Wan diffusion transformer (Wan 2.1 text/image-to-video, Fun-Control/InP, first-last
frame; Wan 2.2 5B), in the native key layout of the released files (``patch_embedding``,
``text_embedding.{0,2}``, ``time_embedding.{0,2}``, ``time_projection.1``, ``blocks.{i}``,
``head``, ``img_emb.proj``).

Forward, for a latent video [B, C, T, H, W]:
1. ``patch_embedding`` (a Conv3d with kernel = stride = (1, 2, 2)) turns it into T * H/2 * W/2
   tokens of width ``dim``.
2. The timestep (sigma * 1000) gets a sinusoidal embedding [cos | sin] of ``freq_dim``
   channels, an MLP (``time_embedding``) and a projection to six modulation vectors per block
   (``time_projection``); a timestep per latent frame ([B, T]: Wan 2.2) gives every frame's
   tokens their own.
3. The text features (UMT5, 512 tokens) go through ``text_embedding``; with an image model
   (i2v) the CLIP-vision penultimate features (257 tokens per image, 514 for first-last frame
   with ``img_emb.emb_pos``) go through ``img_emb`` and are put before the text tokens.
4. Each block: self-attention (RMS-normed q/k across all heads, 3-D RoPE over (frame, row,
   column) with the head dim split ``d - 4*(d//6)``, ``2*(d//6)``, ``2*(d//6)``), cross-attention
   to the text (plus, for i2v, a second attention to the image tokens with ``k_img``/``v_img``,
   added before the output projection), a tanh-GELU feed-forward; self-attention and FFN are
   modulated (shift, scale, gate) by ``block.modulation + time projection``.
5. ``head``: modulated LayerNorm and a Linear to patches, unpatchified to [B, out_dim, T, H, W].

The output is the flow velocity (noise - image), ComfyUI's CONST convention.
Heads: ``dim // 128`` (the released models' head width; it cannot be read from the weights).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops

HEAD_DIM = 128


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos | sin] embedding (float32) of the flat timesteps ``t``."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat((torch.cos(args), torch.sin(args)), dim=1)


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    third = 2 * (head_dim // 6)
    return head_dim - 2 * third, third, third


def rope_cos_sin(frames: int, rows: int, cols: int, head_dim: int, device, t_start: int = 0,
                 theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [N, head_dim / 2] (float32) of the (frame, row, column) positions of the
    T x H x W token grid, frame-major."""
    angles = []
    for n, dim, start in zip((frames, rows, cols), rope_axes(head_dim), (t_start, 0, 0)):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
        angles.append(torch.arange(start, start + n, dtype=torch.float64, device=device)[:, None] * freqs)
    t_a, h_a, w_a = angles
    grid = torch.cat((t_a[:, None, None].expand(frames, rows, cols, -1),
                      h_a[None, :, None].expand(frames, rows, cols, -1),
                      w_a[None, None, :].expand(frames, rows, cols, -1)), dim=-1).reshape(frames * rows * cols, -1)
    return grid.cos().float(), grid.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` [B, N, H, D] by the angles cos/sin [N, D/2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None], sin[None, :, None]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).type_as(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of [B, N, H*D] tensors (q/k may already be [B, N, H, D])."""
    b, n = q.shape[:2]
    q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, n, -1)


def _per_token(e: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """A modulation vector [B, F, C] (one per frame, F may be 1) spread over ``n_tokens``
    frame-major tokens."""
    if e.shape[1] == 1:
        return e
    return e.repeat_interleave(n_tokens // e.shape[1], dim=1)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        kv_dim = kv_dim or dim
        self.q = ops.Linear(dim, dim)
        self.k = ops.Linear(kv_dim, dim)
        self.v = ops.Linear(kv_dim, dim)
        self.o = ops.Linear(dim, dim)
        self.norm_q = ops.RMSNorm(dim, eps)
        self.norm_k = ops.RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = apply_rope(self.norm_q(self.q(x)).view(b, n, self.heads, -1), *rope)
        k = apply_rope(self.norm_k(self.k(x)).view(b, n, self.heads, -1), *rope)
        return self.o(attention(q, k, self.v(x), self.heads))


class CrossAttention(SelfAttention):
    """Attention of the video tokens to the text tokens; with ``image=True`` (i2v) also to the
    image tokens that precede them in the context (``context_img_len`` of them)."""

    def __init__(self, dim: int, heads: int, eps: float, image: bool = False):
        super().__init__(dim, heads, eps)
        if image:
            self.k_img = ops.Linear(dim, dim)
            self.v_img = ops.Linear(dim, dim)
            self.norm_k_img = ops.RMSNorm(dim, eps)
        self.image = image

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img_len: int | None = None) -> torch.Tensor:
        q = self.norm_q(self.q(x))
        if self.image:
            n_img = context_img_len or 0
            img, context = context[:, :n_img], context[:, n_img:]
        out = attention(q, self.norm_k(self.k(context)), self.v(context), self.heads)
        if self.image and img.shape[1]:
            out = out + attention(q, self.norm_k_img(self.k_img(img)), self.v_img(img), self.heads)
        return self.o(out)


class AttentionBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, eps: float, image: bool, cross_attn_norm: bool = True):
        super().__init__()
        self.norm1 = ops.LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, heads, eps)
        self.norm3 = ops.LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, heads, eps, image)
        self.norm2 = ops.LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(ops.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), ops.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.empty(1, 6, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor, rope, context: torch.Tensor,
                context_img_len: int | None = None) -> torch.Tensor:
        """``e``: the time projection [B, F, 6, dim] (F = 1 or one per latent frame)."""
        n = x.shape[1]
        mod = (self.modulation.to(x).unsqueeze(0) + e.to(x)).unbind(2)
        shift1, scale1, gate1, shift2, scale2, gate2 = (_per_token(m, n) for m in mod)
        y = self.self_attn(torch.addcmul(shift1, self.norm1(x), 1 + scale1), rope)
        x = torch.addcmul(x, y, gate1)
        x = x + self.cross_attn(self.norm3(x), context, context_img_len)
        y = self.ffn(torch.addcmul(shift2, self.norm2(x), 1 + scale2))
        return torch.addcmul(x, y, gate2)


class VaceBlock(AttentionBlock):
    """A VACE control block: an attention block over the control tokens (the first one adds the
    video's patch embeddings through ``before_proj``), whose ``after_proj`` output is the hint
    added after a main block."""

    def __init__(self, index: int, dim: int, ffn_dim: int, heads: int, eps: float, cross_attn_norm: bool = True):
        super().__init__(dim, ffn_dim, heads, eps, False, cross_attn_norm)
        self.index = index
        if index == 0:
            self.before_proj = ops.Linear(dim, dim)
        self.after_proj = ops.Linear(dim, dim)

    def forward(self, c, x, e, rope, context, context_img_len=None):
        if self.index == 0:
            c = self.before_proj(c) + x
        c = super().forward(c, e, rope, context, context_img_len)
        return self.after_proj(c), c


class Head(nn.Module):
    def __init__(self, dim: int, out_features: int, eps: float):
        super().__init__()
        self.norm = ops.LayerNorm(dim, eps, elementwise_affine=False)
        self.head = ops.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``e``: the time embedding [B, F, dim]."""
        shift, scale = (_per_token(m, x.shape[1])
                        for m in (self.modulation.to(x).unsqueeze(0) + e.to(x).unsqueeze(2)).unbind(2))
        return self.head(torch.addcmul(shift, self.norm(x), 1 + scale))


class ImageProjection(nn.Module):
    """CLIP-vision features -> context tokens: LayerNorm, Linear, GELU, Linear, LayerNorm;
    first-last-frame models add a learned position embedding to the (two images') tokens."""

    def __init__(self, in_dim: int, dim: int, pos_tokens: int | None = None):
        super().__init__()
        self.proj = nn.Sequential(ops.LayerNorm(in_dim), ops.Linear(in_dim, in_dim), nn.GELU(),
                                  ops.Linear(in_dim, dim), ops.LayerNorm(dim))
        self.emb_pos = nn.Parameter(torch.empty(1, pos_tokens, in_dim)) if pos_tokens else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.emb_pos is not None:
            x = x[:, :self.emb_pos.shape[1]] + self.emb_pos[:, :x.shape[1]].to(x)
        return self.proj(x)


class CameraAdapter(nn.Module):
    """Fun Camera's control adapter: per latent frame, the camera's Plücker embedding
    [B, C, F, H, W] (pixel resolution, C = 6 x 4 frames) is pixel-unshuffled by 8, patchified
    by a Conv2d like the video (kernel = stride = 2) and refined by residual 3x3-conv blocks;
    the result, [B, dim, F, H/16, W/16], is added to the patch embedding."""

    def __init__(self, in_dim: int, dim: int, patch: tuple[int, int], residual_blocks: int = 1):
        super().__init__()
        self.conv = ops.Conv2d(in_dim * 64, dim, kernel_size=patch, stride=patch)
        self.residual_blocks = nn.Sequential(*(CameraResidualBlock(dim) for _ in range(residual_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        x = F.pixel_unshuffle(x.transpose(1, 2).reshape(b * f, c, h, w), 8)
        x = self.residual_blocks(self.conv(x))
        return x.unflatten(0, (b, f)).transpose(1, 2)


class CameraResidualBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = ops.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = ops.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class WanModel(nn.Module):
    def __init__(self, model_type: str = "t2v", patch_size=(1, 2, 2), in_dim: int = 16, dim: int = 1536,
                 ffn_dim: int = 8960, freq_dim: int = 256, text_dim: int = 4096, out_dim: int = 16,
                 num_heads: int = 12, num_layers: int = 30, window_size=(-1, -1), qk_norm: bool = True,
                 cross_attn_norm: bool = True, eps: float = 1e-6, flf_pos_embed_token_number: int | None = None,
                 image_dim: int = 1280, vace_layers: int | None = None, vace_in_dim: int | None = None,
                 in_dim_ref_conv: int | None = None, in_dim_control_adapter: int | None = None, **_: Any):
        super().__init__()
        if model_type not in ("t2v", "i2v", "vace"):
            raise ValueError(f"Wan model type {model_type!r} is not supported")
        self.model_type = model_type
        self.patch_size = tuple(patch_size)
        self.dim, self.freq_dim, self.out_dim, self.num_heads = dim, freq_dim, out_dim, num_heads
        self.in_dim = in_dim
        self.patch_embedding = ops.Conv3d(in_dim, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.text_embedding = nn.Sequential(ops.Linear(text_dim, dim), nn.GELU(approximate="tanh"), ops.Linear(dim, dim))
        self.time_embedding = nn.Sequential(ops.Linear(freq_dim, dim), nn.SiLU(), ops.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(dim, dim * 6))
        image = model_type == "i2v"
        self.blocks = nn.ModuleList(AttentionBlock(dim, ffn_dim, num_heads, eps, image, cross_attn_norm)
                                    for _ in range(num_layers))
        self.head = Head(dim, math.prod(self.patch_size) * out_dim, eps)
        self.img_emb = ImageProjection(image_dim, dim, flf_pos_embed_token_number) if image else None
        # Fun 2.2 reference image: its latent, patchified by a Conv2d, as tokens before the video's
        self.ref_conv = (ops.Conv2d(in_dim_ref_conv, dim, kernel_size=self.patch_size[1:], stride=self.patch_size[1:])
                         if in_dim_ref_conv else None)
        self.control_adapter = (CameraAdapter(in_dim_control_adapter, dim, self.patch_size[1:])
                                if in_dim_control_adapter else None)
        self.vace_map: dict[int, int] = {}
        if vace_layers:  # VACE: control blocks after every (num_layers / vace_layers)-th block
            self.vace_blocks = nn.ModuleList(VaceBlock(i, dim, ffn_dim, num_heads, eps, cross_attn_norm)
                                             for i in range(vace_layers))
            self.vace_patch_embedding = ops.Conv3d(vace_in_dim, dim, kernel_size=self.patch_size, stride=self.patch_size)
            self.vace_map = {layer: n for n, layer in enumerate(range(0, num_layers, num_layers // vace_layers))}

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                clip_fea: torch.Tensor | None = None, transformer_options: dict | None = None,
                vace_context: torch.Tensor | None = None, vace_strength: list[float] | None = None,
                reference_latent: torch.Tensor | None = None, camera_conditions: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        """``x`` [B, in_dim, T, H, W]; ``timestep`` [B] or [B, T] (per latent frame);
        ``context`` [B, L, text_dim]; ``clip_fea`` [B, 257 * images, image_dim]; VACE:
        ``vace_context`` [B, n, vace_in_dim, T, H, W] (n control inputs), ``vace_strength`` (n);
        Fun 2.2 (``ref_conv``): ``reference_latent`` [B, in_dim_ref_conv, H, W], attended to as
        a frame before the video (RoPE frame 0, the video's frames shifted by one), dropped
        after the head; Fun Camera (``control_adapter``): ``camera_conditions`` [B, 24, T, 8H, 8W]
        (WanCameraEmbedding), added to the patch embedding."""
        transformer_options = transformer_options or {}
        b, _, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        x = F.pad(x, (0, (-w) % pw, 0, (-h) % ph, 0, (-t) % pt))
        x = self.patch_embedding(x)
        if camera_conditions is not None and self.control_adapter is not None:
            x = x + self.control_adapter(camera_conditions.to(x.dtype))
        frames, rows, cols = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        ts = timestep.reshape(b, -1)
        n_ref = 0
        if reference_latent is not None and self.ref_conv is not None:
            ref = F.pad(reference_latent.to(x.dtype), (0, (-w) % pw, 0, (-h) % ph))
            ref = self.ref_conv(ref).flatten(2).transpose(1, 2)
            n_ref = ref.shape[1]
            if n_ref != rows * cols:
                raise ValueError(f"the reference latent ({tuple(reference_latent.shape[-2:])}) must be the size of "
                                 f"the video latent ({h}, {w})")
            x = torch.cat((ref, x), dim=1)
            if ts.shape[1] > 1:   # per-frame timesteps: the reference frame takes the first one's
                ts = torch.cat((ts[:, :1], ts), dim=1)
        rope = rope_cos_sin(frames + (1 if n_ref else 0), rows, cols, self.dim // self.num_heads, x.device)

        e = self.time_embedding(sinusoidal_embedding(ts.flatten(), self.freq_dim).to(x.dtype))
        e = e.reshape(b, ts.shape[1], -1)                                    # [B, F, dim]
        e0 = self.time_projection(e).unflatten(2, (6, self.dim))             # [B, F, 6, dim]

        context = self.text_embedding(context.to(x.dtype))
        context_img_len = None
        if clip_fea is not None:
            if self.img_emb is not None:
                context = torch.cat((self.img_emb(clip_fea.to(x.dtype)), context), dim=1)
            context_img_len = clip_fea.shape[-2]

        controls = []
        if vace_context is not None and self.vace_map:
            for j in range(vace_context.shape[1]):
                c = F.pad(vace_context[:, j].to(x.dtype), (0, (-w) % pw, 0, (-h) % ph, 0, (-t) % pt))
                controls.append(self.vace_patch_embedding(c).flatten(2).transpose(1, 2))
            strengths = list(vace_strength) if vace_strength is not None else [1.0] * len(controls)
        x_orig = x

        replace = transformer_options.get("patches_replace", {}).get("dit", {})
        for i, block in enumerate(self.blocks):
            key = ("double_block", i)
            if key in replace:
                def original(args, block=block):
                    return {"img": block(args["img"], args["vec"], args["pe"], args["txt"], context_img_len)}
                x = replace[key]({"img": x, "txt": context, "vec": e0, "pe": rope,
                                  "transformer_options": transformer_options}, {"original_block": original})["img"]
            else:
                x = block(x, e0, rope, context, context_img_len)
            n = self.vace_map.get(i) if controls else None
            if n is not None:
                for j, c in enumerate(controls):
                    hint, controls[j] = self.vace_blocks[n](c, x_orig, e0, rope, context, context_img_len)
                    x = x + hint * strengths[j]

        x = self.head(x, e)[:, n_ref:]
        x = x.view(b, frames, rows, cols, pt, ph, pw, self.out_dim)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x).reshape(b, self.out_dim, frames * pt, rows * ph, cols * pw)
        return x[:, :, :t, :h, :w]
