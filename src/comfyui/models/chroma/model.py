"""The Chroma transformer (lodestones' Flux.1-schnell derivative: Chroma1-HD, Chroma v48-v50).

Flux's double/single-stream blocks without their own modulation layers: every block's
(shift, scale, gate) triples come from one small network, the ``distilled_guidance_layer``
approximator, which maps (timestep, guidance, modulation index) embeddings to one vector per
modulation slot. No CLIP pooled vector, no ``time_in`` / ``vector_in`` / ``guidance_in``; the
final layer has no adaLN linear (its shift and scale are the last two slots).

Modulation slots, in order (as upstream and diffusers lay them out): 3 per single block,
6 per double block for the image stream, 6 per double block for the text stream, 2 for the
final layer -- 344 for the real 19 + 38 blocks.

The module's ``state_dict()`` keys are the native file's (``img_in``, ``txt_in``,
``distilled_guidance_layer.{in_proj,layers.N.{in_layer,out_layer},norms.N.scale,out_proj}``,
``double_blocks.N.*``, ``single_blocks.N.*``, ``final_layer.linear``). Inputs as Flux's: the
latent [B, C, H, W] cut into 2x2 patches, ``timestep`` = sigma in [0, 1] (x1000 inside), the
T5 hidden states, ``guidance`` (0 by default), an optional additive ``attention_mask`` over
[text, image tokens]. Output: the velocity.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..dit import (DoubleStreamBlock, LastLayer, MLPEmbedder, RMSNorm, SingleStreamBlock,
                   rope_angles, timestep_embedding)


class Approximator(nn.Module):
    """``distilled_guidance_layer``: in_proj, n residual (RMS norm -> SiLU MLP) layers, out_proj."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, n_layers: int, device: Any = None):
        super().__init__()
        self.in_proj = ops.Linear(in_dim, hidden_dim, device=device)
        self.layers = nn.ModuleList(MLPEmbedder(hidden_dim, hidden_dim, device=device) for _ in range(n_layers))
        self.norms = nn.ModuleList(RMSNorm(hidden_dim, device=device) for _ in range(n_layers))
        self.out_proj = ops.Linear(hidden_dim, out_dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        for layer, norm in zip(self.layers, self.norms):
            x = x + layer(norm(x))
        return self.out_proj(x)


def _triple(mods: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(shift, scale, gate) [B, 1, dim] from slots offset .. offset+2 of ``mods`` [B, slots, dim]."""
    return mods[:, offset:offset + 1], mods[:, offset + 1:offset + 2], mods[:, offset + 2:offset + 3]


class Chroma(nn.Module):
    """The network. ``config``: the dict :func:`comfyui.models.chroma.detect` returns
    (``in_channels`` / ``out_channels`` are the patched widths, 64 = 16 latent channels x 2x2,
    as upstream counts them)."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64, context_in_dim: int = 4096,
                 hidden_size: int = 3072, mlp_ratio: float = 4.0, num_heads: int = 24, depth: int = 19,
                 depth_single_blocks: int = 38, axes_dim: list[int] = (16, 56, 56), theta: int = 10000,
                 patch_size: int = 2, qkv_bias: bool = True, in_dim: int = 64, out_dim: int = 3072,
                 hidden_dim: int = 5120, n_layers: int = 5, device: Any = None, **_: Any):
        super().__init__()
        if hidden_size % num_heads or sum(axes_dim) != hidden_size // num_heads:
            raise ValueError(f"Chroma: head dim {hidden_size}/{num_heads} does not match RoPE axes {list(axes_dim)}")
        if in_dim % 4:
            raise ValueError(f"Chroma: approximator input width {in_dim} is not a multiple of 4")
        self.patch_size = patch_size
        self.out_channels = out_channels // (patch_size * patch_size)
        self.axes_dim = list(axes_dim)
        self.theta = theta
        self.depth, self.depth_single = depth, depth_single_blocks
        # approximator input: timestep (in_dim/4) ++ guidance (in_dim/4) ++ slot index (in_dim/2)
        self.embed_dim = in_dim // 4
        self.build_image_io(in_channels, out_channels, hidden_size, device)
        self.txt_in = ops.Linear(context_in_dim, hidden_size, device=device)
        self.distilled_guidance_layer = Approximator(in_dim, out_dim, hidden_dim, n_layers, device=device)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(hidden_size, num_heads, mlp_ratio, qkv_bias, device=device) for _ in range(depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(hidden_size, num_heads, mlp_ratio, device=device) for _ in range(depth_single_blocks))

    def build_image_io(self, in_channels: int, out_channels: int, hidden_size: int, device: Any) -> None:
        """The image tokens' input projection and output head (Chroma Radiance has its own)."""
        self.img_in = ops.Linear(in_channels, hidden_size, device=device)
        self.final_layer = LastLayer(hidden_size, out_channels, device=device)

    def embed_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.img_in(tokens)

    def image_head(self, tokens: torch.Tensor, mods: torch.Tensor) -> torch.Tensor:
        """The transformer's image tokens -> patches (the last two modulation slots: shift, scale)."""
        return self.final_layer(tokens, mods[:, -2:-1], mods[:, -1:])

    @property
    def mod_slots(self) -> int:
        return 3 * self.depth_single + 12 * self.depth + 2

    def modulations(self, timestep: torch.Tensor, guidance: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """[B, slots, hidden]: the approximator on (timestep, guidance, slot index) embeddings."""
        b, device = timestep.shape[0], timestep.device
        if guidance is None:
            guidance = torch.zeros_like(timestep)
        t_emb = timestep_embedding(timestep, self.embed_dim)
        g_emb = timestep_embedding(guidance.to(timestep.device).expand(b), self.embed_dim)
        index = timestep_embedding(torch.arange(self.mod_slots, device=device), 2 * self.embed_dim)
        vec = torch.cat([torch.cat([t_emb, g_emb], dim=1)[:, None].expand(-1, self.mod_slots, -1),
                         index[None].expand(b, -1, -1)], dim=-1)
        return self.distilled_guidance_layer(vec.to(dtype))

    def patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C, H, W] -> tokens [B, h*w, C*p*p] (channel-major patches) and ids (0, row, col);
        a side that is not a multiple of the patch is padded circularly."""
        p = self.patch_size
        b, c, height, width = x.shape
        pad_h, pad_w = (-height) % p, (-width) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="circular")
        h, w = x.shape[-2] // p, x.shape[-1] // p
        tokens = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p)
        ids = torch.zeros(h, w, 3, device=x.device, dtype=torch.float32)
        ids[..., 1] = torch.arange(h, device=x.device, dtype=torch.float32)[:, None]
        ids[..., 2] = torch.arange(w, device=x.device, dtype=torch.float32)[None, :]
        return tokens, ids.reshape(1, h * w, 3).expand(b, -1, -1)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                guidance: torch.Tensor | None = None, control: dict | None = None,
                transformer_options: dict | None = None, attention_mask: torch.Tensor | None = None,
                **_: Any) -> torch.Tensor:
        b, _, height, width = x.shape
        img, img_ids = self.patchify(x)
        txt_ids = torch.zeros(b, context.shape[1], 3, device=x.device, dtype=torch.float32)
        rope = rope_angles(torch.cat((txt_ids, img_ids), dim=1), self.axes_dim, self.theta)
        out = self.forward_tokens(img, context, timestep, guidance, rope, control, transformer_options or {},
                                  attention_mask)
        p = self.patch_size
        h, w = (height + p - 1) // p, (width + p - 1) // p
        out = out.reshape(b, h, w, -1, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, h * p, w * p)
        return out[:, :, :height, :width]

    def forward_tokens(self, img: torch.Tensor, txt: torch.Tensor, timestep: torch.Tensor,
                       guidance: torch.Tensor | None, rope: tuple, control: dict | None = None,
                       transformer_options: dict | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The transformer on token sequences: img [B, L, in_channels], txt [B, T, context_in_dim]."""
        dtype = img.dtype
        img = self.embed_image(img)
        mods = self.modulations(timestep, guidance, dtype)
        txt = self.txt_in(txt)
        if mask is not None:
            mask = mask.to(img.device)
            mask = mask if mask.dtype == torch.bool else mask.to(dtype)
            if mask.ndim == 3:
                mask = mask[:, None]
        n_single, n_double = self.depth_single, self.depth
        replace = (transformer_options or {}).get("patches_replace", {}).get("dit", {})
        for i, block in enumerate(self.double_blocks):
            img_off = 3 * n_single + 6 * i
            txt_off = img_off + 6 * n_double
            block_mods = ((_triple(mods, img_off), _triple(mods, img_off + 3)),
                          (_triple(mods, txt_off), _triple(mods, txt_off + 3)))
            if ("double_block", i) in replace:
                def original(args, block=block):
                    out_img, out_txt = block(args["img"], args["txt"], args["vec"], args["pe"], args.get("attn_mask"))
                    return {"img": out_img, "txt": out_txt}
                out = replace[("double_block", i)](
                    {"img": img, "txt": txt, "vec": block_mods, "pe": rope, "attn_mask": mask,
                     "transformer_options": transformer_options}, {"original_block": original})
                img, txt = out["img"], out["txt"]
            else:
                img, txt = block(img, txt, block_mods, rope, mask)
            if control is not None and i < len(control.get("input") or ()) and control["input"][i] is not None:
                img = img + control["input"][i]

        n_txt = txt.shape[1]
        x = torch.cat((txt, img), dim=1)
        for i, block in enumerate(self.single_blocks):
            block_mods = _triple(mods, 3 * i)
            if ("single_block", i) in replace:
                def original(args, block=block):
                    return {"img": block(args["img"], args["vec"], args["pe"], args.get("attn_mask"))}
                x = replace[("single_block", i)](
                    {"img": x, "vec": block_mods, "pe": rope, "attn_mask": mask,
                     "transformer_options": transformer_options}, {"original_block": original})["img"]
            else:
                x = block(x, block_mods, rope, mask)
            if control is not None and i < len(control.get("output") or ()) and control["output"][i] is not None:
                x = torch.cat((x[:, :n_txt], x[:, n_txt:] + control["output"][i]), dim=1)
        return self.image_head(x[:, n_txt:], mods)
