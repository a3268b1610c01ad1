"""The latent-diffusion UNet (SD1.x, SD2.x, SDXL base/refiner, inpainting) with the original
LDM state-dict names (``input_blocks.N.M...``, ``middle_block``, ``output_blocks``,
``time_embed``, ``label_emb``, ``out``), so checkpoint weights load without renaming.

Configuration (what :mod:`comfyui.models.stable_diffusion.detect` reads back from a state dict):
``in_channels``, ``out_channels``, ``model_channels``, ``num_res_blocks`` (per level),
``channel_mult``, ``transformer_depth`` (per input res block), ``transformer_depth_output``
(per output block, listed shallow-to-deep as in ComfyUI: popped from the end),
``transformer_depth_middle``, ``context_dim``, ``num_heads`` or ``num_head_channels``,
``use_linear_in_transformer``, ``adm_in_channels``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..base import timestep_embedding


def x_in_format(t: torch.Tensor) -> torch.memory_format:
    """Keep activations in the layout they came in (contiguous, or channels_last when the
    model runs channels_last) so convolutions never re-layout their weights per call."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _norm(ch: int, eps: float = 1e-5) -> nn.Module:
    return ops.GroupNorm(32, ch, eps=eps)


def _inplace_ok() -> bool:
    """In-place updates of freshly computed activations (no new buffer, so no page faults
    for a fresh allocation on CPU) are safe whenever no autograd graph is being recorded.
    Addition and multiplication are commutative in IEEE arithmetic, so ``h.add_(x)`` gives
    bit-for-bit what ``x + h`` gives."""
    return not torch.is_grad_enabled()


def _norm_act_conv(seq: nn.Sequential, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``seq`` = (GroupNorm, SiLU, [Dropout,] Conv): the SiLU runs in place on the norm output."""
    if not inplace:
        return seq(x)
    h = F.silu(seq[0](x), inplace=True)
    for layer in list(seq)[2:]:
        h = layer(h)
    return h


class TimestepBlock(nn.Module):
    pass


class ResBlock(TimestepBlock):
    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), ops.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), ops.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(_norm(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        ops.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else ops.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        inplace = _inplace_ok()
        add = _add_inplace if inplace else torch.add
        h = _norm_act_conv(self.in_layers, x, inplace)
        h = add(h, self.emb_layers(emb).to(h.dtype)[:, :, None, None])
        h = _norm_act_conv(self.out_layers, h, inplace)
        return add(h, self.skip_connection(x))


class Downsample(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.op = ops.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = ops.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        if output_shape is not None:
            size = (int(output_shape[2]), int(output_shape[3]))
            x = F.interpolate(x, size=size, mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L, heads*d] x3 -> [B, L, heads*d] with scaled dot-product attention; ``bias``
    (broadcastable to [B, heads, Lq, Lk]) is added to the scores."""
    b, lq, inner = q.shape
    d = inner // heads
    q = q.view(b, lq, heads, d).transpose(1, 2)
    k = k.view(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.view(b, v.shape[1], heads, d).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return out.transpose(1, 2).reshape(b, lq, inner)


def _add_inplace(fresh: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``fresh + x`` written into ``fresh`` (a new activation nobody else holds) when the
    result has ``fresh``'s shape and dtype; otherwise a new tensor."""
    if torch.broadcast_shapes(fresh.shape, x.shape) == fresh.shape and fresh.dtype == x.dtype:
        return fresh.add_(x)
    return fresh + x


class CrossAttention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = ops.Linear(query_dim, inner, bias=False)
        self.to_k = ops.Linear(context_dim, inner, bias=False)
        self.to_v = ops.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(ops.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads, bias)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = ops.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        if _inplace_ok():
            return F.gelu(gate).mul_(h)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(0.0), ops.Linear(inner, dim))

    # rows per piece when the GEGLU projection of all tokens would be a large buffer: the
    # feed-forward is per token, so running it over row blocks is the same computation with
    # ~20 MB intermediates (kept in the CPU heap, cache friendly) instead of 80+ MB ones
    chunk_bytes = 24 * 1024 * 1024

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        geglu, out_proj = self.net[0], self.net[2]
        rows = x.numel() // x.shape[-1] if x.ndim > 1 else 1
        per_row = geglu.proj.out_features * x.element_size()
        if (x.device.type != "cpu" or torch.is_grad_enabled() or x.ndim < 2
                or rows * per_row <= self.chunk_bytes):
            return self.net(x)
        step = max(64, self.chunk_bytes // per_row)
        flat = x.reshape(rows, x.shape[-1])
        out = None
        for i in range(0, rows, step):
            piece = out_proj(geglu(flat[i:i + step]))
            if out is None:
                out = piece.new_empty(rows, piece.shape[-1])
            out[i:i + step] = piece
        return out.view(*x.shape[:-1], out.shape[-1])


def _attn_replace(transformer_options: dict, name: str):
    """The ``patches_replace[name]`` function for this block: keyed (block kind, block number,
    transformer index) or (block kind, block number), as ModelPatcher.set_model_patch_replace
    records them."""
    table = transformer_options.get("patches_replace", {}).get(name)
    block = transformer_options.get("block")
    if not table or block is None:
        return None
    fn = table.get((block[0], block[1], transformer_options.get("block_index", 0)))
    return fn if fn is not None else table.get((block[0], block[1]))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1 = ops.LayerNorm(dim)
        self.norm2 = ops.LayerNorm(dim)
        self.norm3 = ops.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, transformer_options: dict) -> torch.Tensor:
        add = _add_inplace if _inplace_ok() else torch.add
        n = self.norm1(x)
        patches = transformer_options.get("patches", {})
        replace = _attn_replace(transformer_options, "attn1")  # e.g. PAG: (q, k, v, options) -> output
        # the patches see (hidden, key source, value source) before the projections (ToMe and
        # HyperTile regroup the tokens) and the attention output after to_out (they undo it)
        if "attn1_patch" in patches or "attn1_output_patch" in patches or replace is not None:
            extra = {**transformer_options, "n_heads": self.attn1.heads, "dim_head": self.attn1.dim_head,
                     "attn_precision": None}
            q = k = v = n
            for p in patches.get("attn1_patch", ()):
                q, k, v = p(q, k, v, extra)
            q, k, v = self.attn1.to_q(q), self.attn1.to_k(k), self.attn1.to_v(v)
            a = replace(q, k, v, extra) if replace is not None else attention(q, k, v, self.attn1.heads)
            a = self.attn1.to_out(a)
            for p in patches.get("attn1_output_patch", ()):
                a = p(a, extra)
            x = add(a, x)
        else:
            x = add(self.attn1(n), x)
        for p in patches.get("middle_patch", ()):  # e.g. GLIGEN's gated self-attention
            x = p(x, transformer_options)
        n = self.norm2(x)
        bias = transformer_options.get("cross_attn_bias")  # per context token, e.g. style strength
        if "attn2_patch" in patches or "attn2_output_patch" in patches:
            extra = {**transformer_options, "n_heads": self.attn2.heads, "dim_head": self.attn2.dim_head,
                     "attn_precision": None}
            q, k, v = n, context, context
            for p in patches.get("attn2_patch", ()):
                q, k, v = p(q, k, v, extra)
            a = attention(self.attn2.to_q(q), self.attn2.to_k(k), self.attn2.to_v(v), self.attn2.heads, bias)
            a = self.attn2.to_out(a)
            for p in patches.get("attn2_output_patch", ()):
                a = p(a, extra)
            x = add(a, x)
        else:
            x = add(self.attn2(n, context, bias), x)
        return add(self.ff(self.norm3(x)), x)


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int | None,
                 use_linear: bool):
        super().__init__()
        inner = heads * dim_head
        self.norm = _norm(channels, eps=1e-6)
        self.use_linear = use_linear
        if use_linear:
            self.proj_in = ops.Linear(channels, inner)
            self.proj_out = ops.Linear(inner, channels)
        else:
            self.proj_in = ops.Conv2d(channels, inner, 1)
            self.proj_out = ops.Conv2d(inner, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, transformer_options: dict) -> torch.Tensor:
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1)
        if self.use_linear:
            x = self.proj_in(x)
        for i, block in enumerate(self.transformer_blocks):
            transformer_options["block_index"] = i
            x = block(x, context, transformer_options)
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        if not self.use_linear:
            x = self.proj_out(x.contiguous(memory_format=x_in_format(x_in)))
        if _inplace_ok():
            return _add_inplace(x, x_in)
        return x + x_in


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                transformer_options: dict | None = None, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, transformer_options if transformer_options is not None else {})
                if transformer_options is not None and "transformer_index" in transformer_options:
                    transformer_options["transformer_index"] += 1  # counts transformers in run order
            elif isinstance(layer, Upsample):
                x = layer(x, output_shape)
            else:
                x = layer(x)
        return x


def _apply_control(h: torch.Tensor, control: dict | None, name: str) -> torch.Tensor:
    if control is not None and name in control and len(control[name]) > 0:
        ctrl = control[name].pop()
        if ctrl is not None:
            h = h + ctrl.to(h)
    return h


class UNetModel(nn.Module):
    def __init__(self, in_channels: int = 4, out_channels: int = 4, model_channels: int = 320,
                 num_res_blocks: int | Sequence[int] = 2, channel_mult: Sequence[int] = (1, 2, 4, 4),
                 transformer_depth: Sequence[int] | int = 1, transformer_depth_output: Sequence[int] | None = None,
                 transformer_depth_middle: int | None = None, context_dim: int | None = 768,
                 num_heads: int = -1, num_head_channels: int = -1, use_linear_in_transformer: bool = False,
                 adm_in_channels: int | None = None, device: torch.device | None = None,
                 dtype: torch.dtype | None = None, **unused: Any):
        super().__init__()
        levels = len(channel_mult)
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * levels
        num_res_blocks = list(num_res_blocks)
        if isinstance(transformer_depth, int):
            transformer_depth = [transformer_depth] * sum(num_res_blocks)
        transformer_depth = list(transformer_depth)
        if transformer_depth_output is None:
            transformer_depth_output = []
            for lvl in range(levels):
                d = transformer_depth[sum(num_res_blocks[:lvl])] if num_res_blocks[lvl] else 0
                transformer_depth_output += [d] * (num_res_blocks[lvl] + 1)
        transformer_depth_output = list(transformer_depth_output)
        if transformer_depth_middle is None:
            transformer_depth_middle = max(transformer_depth) if transformer_depth else 0
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.adm_in_channels = adm_in_channels
        self.dtype = dtype

        def heads_for(ch: int) -> tuple[int, int]:
            if num_head_channels == -1:
                return num_heads, ch // num_heads
            return ch // num_head_channels, num_head_channels

        def transformer(ch: int, depth: int) -> SpatialTransformer:
            h, d = heads_for(ch)
            return SpatialTransformer(ch, h, d, depth, context_dim, use_linear_in_transformer)

        ted = model_channels * 4
        self.time_embed = nn.Sequential(ops.Linear(model_channels, ted), nn.SiLU(), ops.Linear(ted, ted))
        if adm_in_channels is not None:
            self.label_emb = nn.Sequential(nn.Sequential(ops.Linear(adm_in_channels, ted), nn.SiLU(), ops.Linear(ted, ted)))

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(ops.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans = [model_channels]
        ch = model_channels
        td = list(transformer_depth)
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks[level]):
                layers: list[nn.Module] = [ResBlock(ch, ted, mult * model_channels)]
                ch = mult * model_channels
                depth = td.pop(0)
                if depth > 0:
                    layers.append(transformer(ch, depth))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)

        mid: list[nn.Module] = [ResBlock(ch, ted)]
        if transformer_depth_middle > 0:
            mid.append(transformer(ch, transformer_depth_middle))
        mid.append(ResBlock(ch, ted))
        self.middle_block = TimestepEmbedSequential(*mid)

        self.output_blocks = nn.ModuleList()
        tdo = list(transformer_depth_output)
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks[level] + 1):
                ich = chans.pop()
                layers = [ResBlock(ch + ich, ted, model_channels * mult)]
                ch = model_channels * mult
                depth = tdo.pop()
                if depth > 0:
                    layers.append(transformer(ch, depth))
                if level and i == num_res_blocks[level]:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), ops.Conv2d(ch, out_channels, 3, padding=1))
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, control: dict | None = None,
                transformer_options: dict | None = None, **kwargs: Any) -> torch.Tensor:
        transformer_options = dict(transformer_options or {})
        transformer_options["original_shape"] = list(x.shape)
        transformer_options["transformer_index"] = 0
        if control is not None:
            control = {k: list(v) for k, v in control.items()}
        t_emb = timestep_embedding(timesteps.reshape(-1), self.model_channels).to(x.dtype)
        if t_emb.shape[0] == 1 and x.shape[0] > 1:
            t_emb = t_emb.expand(x.shape[0], -1)
        emb = self.time_embed(t_emb)
        if self.adm_in_channels is not None:
            if y is None:
                raise ValueError("this model needs a 'y' (pooled/size) conditioning input")
            emb = emb + self.label_emb(y.to(emb.dtype))
        patches = transformer_options.get("patches", {})
        hs = []
        h = x
        if x.device.type == "cpu" and self.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last):
            h = x.contiguous(memory_format=torch.channels_last)  # the layout set_weight_layout chose
        for i, block in enumerate(self.input_blocks):
            transformer_options["block"] = ("input", i)
            h = block(h, emb, context, transformer_options)
            h = _apply_control(h, control, "input")
            for p in patches.get("input_block_patch", ()):
                h = p(h, transformer_options)
            hs.append(h)
            for p in patches.get("input_block_patch_after_skip", ()):  # e.g. Deep Shrink
                h = p(h, transformer_options)
        transformer_options["block"] = ("middle", 0)
        h = self.middle_block(h, emb, context, transformer_options)
        h = _apply_control(h, control, "middle")
        for i, block in enumerate(self.output_blocks):
            transformer_options["block"] = ("output", i)
            skip = _apply_control(hs.pop(), control, "output")
            for p in patches.get("output_block_patch", ()):  # e.g. FreeU, Deep Shrink
                h, skip = p(h, skip, transformer_options)
            h = torch.cat([h, skip], dim=1)
            out_shape = hs[-1].shape if hs else None
            h = block(h, emb, context, transformer_options, out_shape)
        out = _norm_act_conv(self.out, h, _inplace_ok()).to(x.dtype)
        return out.contiguous(memory_format=x_in_format(x))

    def set_weight_layout(self, device: torch.device) -> None:
        """Store the convolution weights channels-last on a CPU, contiguous elsewhere. The
        ModelPatcher calls it once per load, on the placed and patched weights; the CPU forward
        pass then runs channels-last: oneDNN runs its NHWC convolutions (faster than NCHW,
        which reorders the input and output of every conv to and from a blocked layout), a
        transformer's tokens are a view of its proj_in output instead of a permuted copy, and
        the nearest-neighbour upsampling is cheaper. The weights keep their values."""
        layout = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
        with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable outside inference mode too
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and not m.weight.is_contiguous(memory_format=layout):
                    m.weight.data = m.weight.data.contiguous(memory_format=layout)
