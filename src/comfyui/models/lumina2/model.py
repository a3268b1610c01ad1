"""NextDiT: the single-stream diffusion transformer of Lumina 2 and Z-Image, in ComfyUI's
native key layout (``x_embedder``, ``noise_refiner.{i}``, ``context_refiner.{i}``,
``layers.{i}``, ``t_embedder.mlp``, ``cap_embedder``, ``final_layer``, ``x_pad_token``,
``cap_pad_token``).

Forward (one image, one caption):
1. The text features (the text encoder's hidden states) go through ``cap_embedder`` (RMSNorm +
   Linear) and, with Z-Image, are padded with the learned ``cap_pad_token`` to a multiple of 32
   tokens; the ``context_refiner`` blocks (no timestep modulation) refine them.
2. The latent is cut into 2x2 patches, embedded by ``x_embedder``, padded with
   ``x_pad_token`` (Z-Image) and refined by the ``noise_refiner`` blocks (modulated by t).
3. Caption and image tokens form one sequence through the main ``layers``; ``final_layer``
   projects the image tokens back to patches. After each main layer the ``double_block``
   patches of ``transformer_options["patches"]`` (e.g. the Z-Image Fun ControlNet) get
   ``{"img": the joint sequence [caption, image], "img_input": the main layers' input,
   "txt_len", "pe": (cos, sin), "vec": the modulation input, "x": the latent, "block_index",
   "total_blocks", "diffusion_model", "transformer_options"}`` and return it with ``"img"``
   updated.

Positions (3-D rotary embedding over the head dimension, axes (sequence, row, column)): caption
token i sits at (i + 1, 0, 0), image patch (r, c) at (caption length + 1, r, c), pad tokens at
(0, 0, 0). Every block: ``x += tanh(gate) * norm2(attention(norm1(x) * (1 + scale)))``, the
same for the SwiGLU feed-forward; attention has RMSNorm on each query/key head.

Time and sign: the network sees ``t = 1 - sigma`` (times ``time_scale``: 1000 for Z-Image, 1
for Lumina 2) and predicts the flow from noise to image; ComfyUI's convention (and this
module's output) is the negation, the velocity from image to noise, so that
``denoised = x - sigma * output``. Diffusers' ``ZImageTransformer2DModel`` returns the
un-negated prediction (its pipeline negates it).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...sampling.conditioning import CONDRegular
from .. import ops
from ..base import BaseModel


def rope_cos_sin(positions: torch.Tensor, axes_dims: tuple[int, ...], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, N, head_dim / 2] (float32) of 3-D positions [B, N, 3]: axis a rotates its
    ``axes_dims[a]`` channels, in adjacent pairs."""
    angles = []
    for axis, dim in enumerate(axes_dims):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
        angles.append(positions[..., axis:axis + 1].double() * freqs)
    angles = torch.cat(angles, dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the adjacent channel pairs of ``x`` [B, N, H, D] by the angles of cos/sin [B, N, D/2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[:, :, None], sin[:, :, None]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).type_as(x)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat((torch.cos(args), torch.sin(args)), dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, frequency_dim: int, hidden: int, out: int):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(ops.Linear(frequency_dim, hidden), nn.SiLU(), ops.Linear(hidden, out))

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_dim).to(dtype))


class JointAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, eps: float):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.qkv = ops.Linear(dim, (n_heads + 2 * n_kv_heads) * head_dim, bias=False)
        self.out = ops.Linear(n_heads * head_dim, dim, bias=False)
        self.q_norm = ops.RMSNorm(head_dim, eps)
        self.k_norm = ops.RMSNorm(head_dim, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).split([self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim,
                                     self.n_kv_heads * self.head_dim], dim=-1)
        q = apply_rope(self.q_norm(q.view(b, n, self.n_heads, self.head_dim)), cos, sin)
        k = apply_rope(self.k_norm(k.view(b, n, self.n_kv_heads, self.head_dim)), cos, sin)
        v = v.view(b, n, self.n_kv_heads, self.head_dim)
        group = self.n_heads // self.n_kv_heads
        q, k, v = q.transpose(1, 2), k.repeat_interleave(group, dim=2).transpose(1, 2), \
            v.repeat_interleave(group, dim=2).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = ops.Linear(dim, hidden, bias=False)
        self.w2 = ops.Linear(hidden, dim, bias=False)
        self.w3 = ops.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class JointTransformerBlock(nn.Module):
    """``modulated`` False: no timestep modulation (the context refiner). ``silu_modulation``:
    Lumina 2 applies SiLU to the timestep embedding before its modulation Linear (key
    ``adaLN_modulation.1``); Z-Image does not (``adaLN_modulation.0``)."""

    def __init__(self, cfg: dict[str, Any], modulated: bool):
        super().__init__()
        dim, eps = cfg["dim"], cfg["norm_eps"]
        self.attention = JointAttention(dim, cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], eps)
        self.feed_forward = FeedForward(dim, cfg["ffn_hidden"])
        self.attention_norm1 = ops.RMSNorm(dim, eps)
        self.ffn_norm1 = ops.RMSNorm(dim, eps)
        self.attention_norm2 = ops.RMSNorm(dim, eps)
        self.ffn_norm2 = ops.RMSNorm(dim, eps)
        self.modulated = modulated
        if modulated:
            linear = ops.Linear(cfg["adaln_dim"], 4 * dim)
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), linear) if cfg["silu_modulation"] else nn.Sequential(linear)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                adaln: torch.Tensor | None = None) -> torch.Tensor:
        if not self.modulated:
            x = x + self.attention_norm2(self.attention(self.attention_norm1(x), cos, sin))
            return x + self.ffn_norm2(self.feed_forward(self.ffn_norm1(x)))
        scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(adaln)[:, None].chunk(4, dim=-1)
        attn = self.attention(self.attention_norm1(x) * (1 + scale_msa), cos, sin)
        x = x + gate_msa.tanh() * self.attention_norm2(attn)
        return x + gate_mlp.tanh() * self.ffn_norm2(self.feed_forward(self.ffn_norm1(x) * (1 + scale_mlp)))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_features: int, adaln_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = ops.Linear(dim, out_features)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(adaln_dim, dim))

    def forward(self, x: torch.Tensor, adaln: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x) * (1 + self.adaLN_modulation(adaln)[:, None]))


class NextDiT(nn.Module):
    """The network; ``cfg`` is what :func:`comfyui.models.lumina2.detect.detect` reads from the
    weights. ``forward(x [B,C,H,W], timesteps [B] (= sigma), context [B,L,cap_feat_dim])``."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        dim, p, channels = cfg["dim"], cfg["patch_size"], cfg["in_channels"]
        self.x_embedder = ops.Linear(p * p * channels, dim)
        self.noise_refiner = nn.ModuleList(JointTransformerBlock(cfg, True) for _ in range(cfg["n_noise_refiner"]))
        self.context_refiner = nn.ModuleList(JointTransformerBlock(cfg, False)
                                             for _ in range(cfg["n_context_refiner"]))
        self.t_embedder = TimestepEmbedder(cfg["t_frequency_dim"], cfg["t_hidden"], cfg["adaln_dim"])
        self.cap_embedder = nn.Sequential(ops.RMSNorm(cfg["cap_feat_dim"], cfg["norm_eps"]),
                                          ops.Linear(cfg["cap_feat_dim"], dim))
        self.layers = nn.ModuleList(JointTransformerBlock(cfg, True) for _ in range(cfg["n_layers"]))
        self.final_layer = FinalLayer(dim, p * p * channels, cfg["adaln_dim"])
        if cfg["pad_tokens_multiple"]:
            self.x_pad_token = nn.Parameter(torch.empty(1, dim))
            self.cap_pad_token = nn.Parameter(torch.empty(1, dim))

    def _pad(self, tokens: torch.Tensor, pad_token: torch.Tensor | None) -> torch.Tensor:
        """Z-Image: ``tokens`` padded with the learned pad token to a multiple of
        ``pad_tokens_multiple``; Lumina 2 (no pad tokens): unchanged."""
        multiple = self.cfg["pad_tokens_multiple"]
        extra = (-tokens.shape[1]) % multiple if multiple else 0
        if extra == 0:
            return tokens
        pad = pad_token.to(tokens).expand(tokens.shape[0], extra, -1)
        return torch.cat((tokens, pad), dim=1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        cfg = self.cfg
        b, c, h, w = x.shape
        p = cfg["patch_size"]
        x = F.pad(x, (0, (-w) % p, 0, (-h) % p), mode="circular")  # odd latent sizes, as upstream
        rows, cols = x.shape[2] // p, x.shape[3] // p
        device, dtype = x.device, x.dtype

        adaln = self.t_embedder((1.0 - timesteps) * cfg["time_scale"], dtype)

        cap = self._pad(self.cap_embedder(context.to(dtype)), getattr(self, "cap_pad_token", None))
        cap_pos = torch.zeros(b, cap.shape[1], 3, device=device)  # pad tokens are numbered on
        cap_pos[:, :, 0] = torch.arange(1, cap.shape[1] + 1, dtype=torch.float32, device=device)

        img = x.view(b, c, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1).flatten(3).flatten(1, 2)
        img = self.x_embedder(img)
        n_img = img.shape[1]
        img_pos = torch.zeros(b, n_img, 3, device=device)
        img_pos[:, :, 0] = cap.shape[1] + 1
        img_pos[:, :, 1] = torch.arange(rows, dtype=torch.float32, device=device).repeat_interleave(cols)
        img_pos[:, :, 2] = torch.arange(cols, dtype=torch.float32, device=device).repeat(rows)
        img = self._pad(img, getattr(self, "x_pad_token", None))
        img_pos = F.pad(img_pos, (0, 0, 0, img.shape[1] - n_img))  # pad tokens sit at (0, 0, 0)

        cap_cos, cap_sin = rope_cos_sin(cap_pos, cfg["axes_dims"], cfg["rope_theta"])
        img_cos, img_sin = rope_cos_sin(img_pos, cfg["axes_dims"], cfg["rope_theta"])
        for block in self.context_refiner:
            cap = block(cap, cap_cos, cap_sin)
        for block in self.noise_refiner:
            img = block(img, img_cos, img_sin, adaln)

        tokens = torch.cat((cap, img), dim=1)
        cos, sin = torch.cat((cap_cos, img_cos), dim=1), torch.cat((cap_sin, img_sin), dim=1)
        transformer_options = kwargs.get("transformer_options") or {}
        patches = transformer_options.get("patches", {}).get("double_block", ())
        start = tokens
        for i, block in enumerate(self.layers):
            tokens = block(tokens, cos, sin, adaln)
            for patch in patches:
                tokens = patch({"img": tokens, "img_input": start, "txt_len": cap.shape[1], "pe": (cos, sin),
                                "vec": adaln, "x": x[:, :, :h, :w], "block_index": i, "total_blocks": len(self.layers),
                                "diffusion_model": self, "transformer_options": transformer_options})["img"]
        out = self.final_layer(tokens, adaln)[:, cap.shape[1]:cap.shape[1] + n_img]
        out = out.view(b, rows, cols, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, rows * p, cols * p)
        return -out[:, :, :h, :w]


class Lumina2Model(BaseModel):
    """Lumina 2 / Z-Image as a MODEL: NextDiT on flow matching. The text features batch only
    with features of the same length (repeating them, as for a UNet's cross-attention, would
    change a joint-attention model's output)."""

    def __init__(self, config: dict[str, Any], family: Any, dtype: torch.dtype | None = None,
                 device: torch.device | None = None):
        super().__init__(config, family, dtype, device)
        if device is None:  # the loaders build on "meta" and assign the file's tensors
            self.diffusion_model = NextDiT(config)
        else:
            with torch.device(device):
                self.diffusion_model = NextDiT(config)

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        cross = kwargs.get("cross_attn")
        if cross is None:
            return {}
        device = kwargs.get("device")
        return {"c_crossattn": CONDRegular(cross if device is None else cross.to(device))}
