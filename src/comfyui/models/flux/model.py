"""The Flux.1 transformer (Black Forest Labs' MMDiT for flow matching).

The module's own ``state_dict()`` keys are BFL's (= ComfyUI's) names: ``img_in``, ``time_in``,
``vector_in``, ``guidance_in``, ``txt_in``, ``double_blocks.N.*``, ``single_blocks.N.*``,
``final_layer.*``; files in that layout load with ``load_state_dict`` as they are.

Inputs (:meth:`Flux.forward`): the latent ``x`` [B, C, H, W] (C = in_channels: 16, plus any
channel-concatenated conditioning), ``timestep`` = sigma in [0, 1] (scaled x1000 inside, like
the guidance value), the T5 hidden states ``context`` [B, T, 4096], the CLIP-L pooled vector
``y`` [B, 768]. The latent is cut into 2x2 patches (one token per patch, channel-major
``(c, ph, pw)`` features); every token gets a position id (index, row, column) and the
attention rotates query/key pairs by those (RoPE over three axes). The text tokens have id
(0, 0, 0). Output: the velocity [B, out_channels, H, W].
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import dit, ops
from ..dit import MLPEmbedder, clamp_fp16, rope_angles, timestep_embedding


class Modulation(nn.Module):
    """(shift, scale, gate) triples from the conditioning vector: two for a double-stream
    block (attention, MLP), one for a single-stream block."""

    def __init__(self, dim: int, double: bool, device: Any = None):
        super().__init__()
        self.count = 6 if double else 3
        self.lin = ops.Linear(dim, dim * self.count, device=device)

    def forward(self, vec: torch.Tensor) -> list[torch.Tensor]:
        return list(self.lin(F.silu(vec))[:, None, :].chunk(self.count, dim=-1))


class DoubleStreamBlock(dit.DoubleStreamBlock):
    """Image and text tokens keep their own weights and attend jointly (text first); each
    stream's modulation comes from the conditioning vector (``img_mod``, ``txt_mod``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, device: Any = None):
        super().__init__(dim, heads, mlp_ratio, qkv_bias, device=device)
        self.img_mod = Modulation(dim, double=True, device=device)
        self.txt_mod = Modulation(dim, double=True, device=device)

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor, rope: tuple,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        img_mods, txt_mods = self.img_mod(vec), self.txt_mod(vec)
        mods = ((img_mods[:3], img_mods[3:]), (txt_mods[:3], txt_mods[3:]))
        return super().forward(img, txt, mods, rope, mask)


class SingleStreamBlock(dit.SingleStreamBlock):
    """One weight set over the joined sequence; attention and MLP run in parallel from one
    input projection (``linear1``: q, k, v, mlp) into one output projection (``linear2``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, device: Any = None):
        super().__init__(dim, heads, mlp_ratio, device=device)
        self.modulation = Modulation(dim, double=False, device=device)

    def forward(self, x: torch.Tensor, vec: torch.Tensor, rope: tuple,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, self.modulation(vec), rope, mask)


class LastLayer(dit.LastLayer):
    def __init__(self, dim: int, out_features: int, device: Any = None):
        super().__init__(dim, out_features, device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(dim, 2 * dim, device=device))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec)[:, None, :].chunk(2, dim=-1)
        return super().forward(x, shift, scale)


class Flux(nn.Module):
    """The network. ``config``: the dict :func:`comfyui.models.flux.detect` returns."""

    def __init__(self, in_channels: int = 16, out_channels: int = 16, vec_in_dim: int = 768,
                 context_in_dim: int = 4096, hidden_size: int = 3072, mlp_ratio: float = 4.0,
                 num_heads: int = 24, depth: int = 19, depth_single_blocks: int = 38,
                 axes_dim: list[int] = (16, 56, 56), theta: int = 10000, patch_size: int = 2,
                 qkv_bias: bool = True, guidance_embed: bool = True, device: Any = None, **_: Any):
        super().__init__()
        if hidden_size % num_heads or sum(axes_dim) != hidden_size // num_heads:
            raise ValueError(f"Flux: head dim {hidden_size}/{num_heads} does not match RoPE axes {list(axes_dim)}")
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.vec_in_dim = vec_in_dim
        self.axes_dim = list(axes_dim)
        self.theta = theta
        patch = patch_size * patch_size
        self.img_in = ops.Linear(in_channels * patch, hidden_size, device=device)
        self.time_in = MLPEmbedder(256, hidden_size, device=device)
        self.vector_in = MLPEmbedder(vec_in_dim, hidden_size, device=device)
        self.guidance_in = MLPEmbedder(256, hidden_size, device=device) if guidance_embed else None
        self.txt_in = ops.Linear(context_in_dim, hidden_size, device=device)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(hidden_size, num_heads, mlp_ratio, qkv_bias, device=device) for _ in range(depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(hidden_size, num_heads, mlp_ratio, device=device) for _ in range(depth_single_blocks))
        self.final_layer = LastLayer(hidden_size, patch * out_channels, device=device)

    @property
    def in_channels(self) -> int:
        """Latent channels the input projection takes now (a control LoRA may widen it)."""
        return self.img_in.weight.shape[1] // (self.patch_size * self.patch_size)

    # ----------------------------------------------------------------------- tokens
    def patchify(self, x: torch.Tensor, index: int = 0, row_offset: int = 0,
                 col_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C, H, W] -> tokens [B, h*w, C*p*p] and their ids [B, h*w, 3] = (index, row, col);
        a side that is not a multiple of the patch is padded circularly."""
        p = self.patch_size
        b, c, height, width = x.shape
        pad_h, pad_w = (-height) % p, (-width) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="circular")
        h, w = x.shape[-2] // p, x.shape[-1] // p
        tokens = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p)
        ids = torch.zeros(h, w, 3, device=x.device, dtype=torch.float32)
        ids[..., 0] = index
        ids[..., 1] = torch.arange(h, device=x.device, dtype=torch.float32)[:, None] + row_offset
        ids[..., 2] = torch.arange(w, device=x.device, dtype=torch.float32)[None, :] + col_offset
        return tokens, ids.reshape(1, h * w, 3).expand(b, -1, -1)

    def unpatchify(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        p = self.patch_size
        h, w = (height + p - 1) // p, (width + p - 1) // p
        b = tokens.shape[0]
        x = tokens.reshape(b, h, w, -1, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, h * p, w * p)
        return x[:, :, :height, :width]

    def reference_tokens(self, refs: list[torch.Tensor], height: int, width: int,
                         method: str = "offset") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Tokens and ids of Kontext reference latents, placed (like upstream) in position-id
        space: "offset" (default) -- index 1, each next reference beside or below the ones
        before; "index" -- index 1, 2, ... at the origin; "uxo" -- index 0, diagonally after
        the image. Offsets are in latent pixels (converted to patches, rounding half up)."""
        p = self.patch_size
        h_len, w_len = (height + p // 2) // p, (width + p // 2) // p
        tokens, ids = [], []
        h = w = index = 0
        for ref in refs:
            row = col = 0
            if method == "index":
                index += 1
            elif method == "uxo":
                index = 0
                row, col = h_len * p + h, w_len * p + w
                h += ref.shape[-2]
                w += ref.shape[-1]
            elif method == "offset":
                index = 1
                if ref.shape[-2] + h > ref.shape[-1] + w:
                    col = w
                else:
                    row = h
                h = max(h, ref.shape[-2] + row)
                w = max(w, ref.shape[-1] + col)
            else:
                raise ValueError(f"unknown reference latents method {method!r} (offset, index or uxo)")
            t, i = self.patchify(ref, index, (row + p // 2) // p, (col + p // 2) // p)
            tokens.append(t)
            ids.append(i)
        return tokens, ids

    # ---------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None, guidance: torch.Tensor | None = None,
                ref_latents: list[torch.Tensor] | None = None, ref_latents_method: str = "offset",
                control: dict | None = None, transformer_options: dict | None = None,
                attention_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        """Velocity for ``x`` [B, C, H, W] at ``timestep`` (sigma) [B]. ``attention_mask``:
        an additive float or boolean mask over the joint sequence (text, then image tokens)."""
        b, _, height, width = x.shape
        img, img_ids = self.patchify(x)
        n_img = img.shape[1]
        if ref_latents:
            ref_tokens, ref_ids = self.reference_tokens(ref_latents, height, width, ref_latents_method)
            img = torch.cat([img] + [t.to(img) for t in ref_tokens], dim=1)
            img_ids = torch.cat([img_ids] + ref_ids, dim=1)
        txt_ids = torch.zeros(b, context.shape[1], 3, device=x.device, dtype=torch.float32)
        out = self.forward_tokens(img, context, timestep, y, guidance, (txt_ids, img_ids), control,
                                  transformer_options or {}, attention_mask)
        return self.unpatchify(out[:, :n_img], height, width)

    def forward_tokens(self, img: torch.Tensor, txt: torch.Tensor, timestep: torch.Tensor,
                       y: torch.Tensor | None, guidance: torch.Tensor | None, ids: tuple,
                       control: dict | None = None, transformer_options: dict | None = None,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """The transformer on token sequences: img [B, L, C*p*p], txt [B, T, context_in_dim];
        ``ids``: their position ids (txt_ids [B, T, 3], img_ids [B, L, 3]).

        ``transformer_options["patches"]["post_input"]`` patches (e.g. USOStyleReference) get
        ``{"img", "txt", "img_ids", "txt_ids"}`` after the input projections and return them,
        possibly with tokens added; tokens put before the text are allowed by any attention mask."""
        dtype = img.dtype
        img = self.img_in(img)
        vec = self.time_in(timestep_embedding(timestep).to(dtype))
        if self.guidance_in is not None and guidance is not None:
            vec = vec + self.guidance_in(timestep_embedding(guidance).to(dtype))
        if y is None:
            y = torch.zeros(img.shape[0], self.vec_in_dim, device=img.device, dtype=dtype)
        vec = vec + self.vector_in(y[:, :self.vec_in_dim])
        txt = self.txt_in(txt)
        txt_ids, img_ids = ids
        n_txt = txt.shape[1]
        for patch in (transformer_options or {}).get("patches", {}).get("post_input", ()):
            out = patch({"img": img, "txt": txt, "img_ids": img_ids, "txt_ids": txt_ids})
            img, txt, img_ids, txt_ids = out["img"], out["txt"], out["img_ids"], out["txt_ids"]
        rope = rope_angles(torch.cat((txt_ids, img_ids), dim=1), self.axes_dim, self.theta)
        if mask is not None:
            mask = mask.to(img.device)
            if mask.dtype != torch.bool:
                mask = mask.to(dtype)
            if mask.ndim == 3:
                mask = mask[:, None]
            added = txt.shape[1] - n_txt
            if added:
                mask = F.pad(mask, (added, 0, added, 0), value=True if mask.dtype == torch.bool else 0.0)

        replace = (transformer_options or {}).get("patches_replace", {}).get("dit", {})
        for i, block in enumerate(self.double_blocks):
            if ("double_block", i) in replace:
                def original(args, block=block):
                    out_img, out_txt = block(args["img"], args["txt"], args["vec"], args["pe"], args.get("attn_mask"))
                    return {"img": out_img, "txt": out_txt}
                out = replace[("double_block", i)](
                    {"img": img, "txt": txt, "vec": vec, "pe": rope, "attn_mask": mask,
                     "transformer_options": transformer_options}, {"original_block": original})
                img, txt = out["img"], out["txt"]
            else:
                img, txt = block(img, txt, vec, rope, mask)
            if control is not None and i < len(control.get("input") or ()) and control["input"][i] is not None:
                add = control["input"][i]
                img[:, :add.shape[1]] += add
        img = clamp_fp16(img)

        n_txt = txt.shape[1]
        x = torch.cat((txt, img), dim=1)
        for i, block in enumerate(self.single_blocks):
            if ("single_block", i) in replace:
                def original(args, block=block):
                    return {"img": block(args["img"], args["vec"], args["pe"], args.get("attn_mask"))}
                x = replace[("single_block", i)](
                    {"img": x, "vec": vec, "pe": rope, "attn_mask": mask,
                     "transformer_options": transformer_options}, {"original_block": original})["img"]
            else:
                x = block(x, vec, rope, mask)
            if control is not None and i < len(control.get("output") or ()) and control["output"][i] is not None:
                add = control["output"][i]
                x[:, n_txt:n_txt + add.shape[1]] += add
        return self.final_layer(x[:, n_txt:], vec)
