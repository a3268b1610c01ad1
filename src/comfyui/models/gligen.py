"""GLIGEN (grounded generation with text boxes): what a GLIGEN socket carries.

File layout (``gligen_sd14_textbox_pruned.safetensors``): one gated self-attention "fuser" per
UNet transformer block, keyed by the block it sits in (``input_blocks.1.1.transformer_blocks.0.
fuser.*``, ``middle_block...``, ``output_blocks...``), and ``position_net.*`` which turns (text
embedding, box) pairs into grounding tokens.

At sampling time a conditioning entry carries ``"gligen": ("position", GLIGEN patcher,
[(pooled text embedding, height/8, width/8, y/8, x/8), ...])``; the sampler asks
:meth:`Gligen.set_position` for a ``middle_patch`` that the UNet applies after each block's
self-attention (``transformer_index`` selects the fuser).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import nn

from . import memory, ops
from .loading import ModelFileError, load_torch_file
from .patcher import ModelPatcher
from .stable_diffusion.unet import CrossAttention, FeedForward


class GatedSelfAttentionDense(nn.Module):
    def __init__(self, query_dim: int, context_dim: int, n_heads: int, d_head: int):
        super().__init__()
        self.linear = ops.Linear(context_dim, query_dim)
        self.attn = CrossAttention(query_dim, None, n_heads, d_head)
        self.ff = FeedForward(query_dim)
        self.norm1 = ops.LayerNorm(query_dim)
        self.norm2 = ops.LayerNorm(query_dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))
        self.scale = 1.0

    def forward(self, x: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        n_visual = x.shape[1]
        objs = self.linear(objs)
        a = self.attn(self.norm1(torch.cat([x, objs], dim=1)))[:, :n_visual]
        x = x + self.scale * torch.tanh(self.alpha_attn).to(x) * a
        return x + self.scale * torch.tanh(self.alpha_dense).to(x) * self.ff(self.norm2(x))


def fourier_embed(x: torch.Tensor, num_freqs: int = 8, temperature: float = 100.0) -> torch.Tensor:
    """[..., 4] boxes -> [..., num_freqs * 2 * 4]: sin and cos of each coordinate per frequency."""
    bands = temperature ** (torch.arange(num_freqs, dtype=torch.float32, device=x.device) / num_freqs)
    out = []
    for f in bands.to(x.dtype):
        out += [torch.sin(f * x), torch.cos(f * x)]
    return torch.cat(out, dim=-1)


class PositionNet(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, fourier_freqs: int = 8):
        super().__init__()
        self.fourier_freqs = fourier_freqs
        self.position_dim = fourier_freqs * 2 * 4
        self.linears = nn.Sequential(ops.Linear(in_dim + self.position_dim, 512), nn.SiLU(), ops.Linear(512, 512),
                                     nn.SiLU(), ops.Linear(512, out_dim))
        self.null_positive_feature = nn.Parameter(torch.zeros(in_dim))
        self.null_position_feature = nn.Parameter(torch.zeros(self.position_dim))

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, positive_embeddings: torch.Tensor) -> torch.Tensor:
        masks = masks.unsqueeze(-1)
        xyxy = fourier_embed(boxes, self.fourier_freqs)
        pos_null = self.null_positive_feature.to(boxes).view(1, 1, -1)
        xyxy_null = self.null_position_feature.to(boxes).view(1, 1, -1)
        positive_embeddings = positive_embeddings * masks + (1 - masks) * pos_null
        xyxy = xyxy * masks + (1 - masks) * xyxy_null
        return self.linears(torch.cat([positive_embeddings, xyxy], dim=-1))


class Gligen(nn.Module):
    max_objs = 30

    def __init__(self, modules: list[GatedSelfAttentionDense], position_net: PositionNet, key_dim: int):
        super().__init__()
        self.module_list = nn.ModuleList(modules)
        self.position_net = position_net
        self.key_dim = key_dim

    def _patch(self, boxes: torch.Tensor, masks: torch.Tensor, embeds: torch.Tensor) -> Callable:
        self.to(boxes.device)  # small: kept next to the UNet while sampling
        p = next(self.position_net.parameters())
        with torch.no_grad():
            objs = self.position_net(boxes.to(p), masks.to(p), embeds.to(p))

        def middle_patch(x: torch.Tensor, extra_options: dict) -> torch.Tensor:
            module = self.module_list[extra_options["transformer_index"]]
            with torch.no_grad():
                return module(x, objs.to(device=x.device, dtype=x.dtype))

        return middle_patch

    def set_position(self, latent_shape: tuple, position_params: list, device: torch.device) -> Callable:
        batch, _, h, w = latent_shape
        masks = torch.zeros(self.max_objs)
        boxes = torch.zeros(self.max_objs, 4)
        embeds = torch.zeros(self.max_objs, self.key_dim)
        for i, (emb, ph, pw, py, px) in enumerate(position_params[:self.max_objs]):
            masks[i] = 1.0
            boxes[i] = torch.tensor([px / w, py / h, (px + pw) / w, (py + ph) / h])
            embeds[i] = emb.reshape(-1)[:self.key_dim].float().cpu()
        rep = lambda t: t.unsqueeze(0).repeat((batch,) + (1,) * t.ndim).to(device)  # noqa: E731
        return self._patch(rep(boxes), rep(masks), rep(embeds))

    def set_empty(self, latent_shape: tuple, device: torch.device) -> Callable:
        batch = latent_shape[0]
        return self._patch(torch.zeros(batch, self.max_objs, 4, device=device),
                           torch.zeros(batch, self.max_objs, device=device),
                           torch.zeros(batch, self.max_objs, self.key_dim, device=device))


def gligen_from_state_dict(sd: dict[str, torch.Tensor]) -> Gligen:
    modules = []
    key_dim = 768
    for part in ("input_blocks", "middle_block", "output_blocks"):
        for b in range(64):
            pfx = f"{part}.{b}."
            found = sorted({k.split(".fuser.")[0] for k in sd if k.startswith(pfx) and ".fuser." in k})
            for blk in found:
                fsd = {k[len(blk) + len(".fuser."):]: v for k, v in sd.items() if k.startswith(blk + ".fuser.")}
                query_dim, key_dim = fsd["linear.weight"].shape
                if key_dim == 768 or query_dim % 64:
                    heads, d_head = 8, query_dim // 8
                else:
                    heads, d_head = query_dim // 64, 64
                m = GatedSelfAttentionDense(query_dim, key_dim, heads, d_head)
                missing, _ = m.load_state_dict(fsd, strict=False)
                if missing:
                    raise ModelFileError(f"GLIGEN fuser {blk}: missing {missing[:3]}")
                modules.append(m)
    if not modules or "position_net.null_positive_feature" not in sd:
        raise ModelFileError("not a GLIGEN model (no fuser layers / position_net)")
    in_dim = sd["position_net.null_positive_feature"].shape[0]
    out_dim = sd["position_net.linears.4.weight"].shape[0]
    freqs = sd["position_net.null_position_feature"].shape[0] // 8
    pn = PositionNet(in_dim, out_dim, freqs)
    pn.load_state_dict({k[len("position_net."):]: v for k, v in sd.items() if k.startswith("position_net.")})
    return Gligen(modules, pn, in_dim).eval().requires_grad_(False)


def load_gligen(path: str) -> ModelPatcher:
    """GLIGENLoader: the model wrapped in a patcher (``.model`` is the :class:`Gligen`)."""
    sd = load_torch_file(path)
    try:
        g = gligen_from_state_dict(sd)
    except ModelFileError as exc:
        raise ModelFileError(f"{os.path.basename(path)}: {exc}") from exc
    return ModelPatcher(g, load_device=memory.get_torch_device(), offload_device=memory.unet_offload_device())


def gligen_patch_for(entry: Any, input_shape: tuple, device: torch.device) -> Callable:
    """The middle_patch for a conditioning's ``gligen`` entry (used by the sampler)."""
    kind, patcher, params = entry[0], entry[1], entry[2] if len(entry) > 2 else []
    model = patcher.model if hasattr(patcher, "model") else patcher
    if kind == "position":
        return model.set_position(input_shape, params, device)
    return model.set_empty(input_shape, device)
