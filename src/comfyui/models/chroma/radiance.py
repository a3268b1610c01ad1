"""Chroma Radiance: Chroma in pixel space (lodestones' ``Chroma1-Radiance``,
``chroma-radiance-x0.safetensors``). The Chroma transformer sees 16x16 RGB patches
(``img_in_patch``, a stride-16 convolution = a Linear on channel-major patches); instead of a
final layer, a small per-patch "NeRF" network turns each patch's transformer output back into
pixels:

1. every pixel of a patch: its noisy RGB value ++ a DCT-like code of its position in the patch
   (``cos(pi * fx * x) * cos(pi * fy * y) / (1 + fx * fy)`` for fx, fy < ``nerf_max_freqs``,
   x, y in [0, 1] across the patch) -> ``nerf_image_embedder`` (a Linear, run in float32);
2. ``nerf_blocks``: each makes, from the patch's transformer token, the weights of a gated MLP
   (``param_generator`` -> gate, value [nh, nh * ratio] and out [nh * ratio, nh], each column
   L2-normalised) applied to the RMS-normed pixel features, with a residual;
3. the pixel features, put back in image layout [B, nh, H, W], go through
   ``nerf_final_layer`` (RMS norm + Linear to RGB) or ``nerf_final_layer_conv`` (RMS norm +
   3x3 convolution).

Patches are processed ``nerf_tile_size`` at a time (memory only; ``ChromaRadianceOptions`` sets
it per sampling range through ``transformer_options["chroma_radiance_options"]``).

Output: the flow velocity, like Chroma. Files with the ``__x0__`` marker (the x0 release)
predict the clean image instead, turned into the velocity ``(x - x0) / sigma`` so that the
sampler's ``denoised = x - sigma * v`` is the network's image.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..dit import RMSNorm, rope_angles
from .model import Chroma

DEFAULT_TILE_SIZE = 32  # upstream's default nerf_tile_size
OPTION_KEYS = ("nerf_tile_size",)


def _linear(layer: ops.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer`` on ``x`` with its weights cast to ``x``'s dtype (for the float32 embedder)."""
    w, b = layer.cast_bias_weight(x)
    return F.linear(x, w, b)


def dct_positions(patch: int, max_freqs: int, device: torch.device) -> torch.Tensor:
    """[patch * patch, max_freqs ** 2] (float32): the position code of each pixel of a patch
    (row-major pixels; features ordered fx-major)."""
    pos = torch.linspace(0, 1, patch, device=device, dtype=torch.float32)
    y, x = torch.meshgrid(pos, pos, indexing="ij")
    freqs = torch.arange(max_freqs, device=device, dtype=torch.float32)
    fx, fy = freqs[None, :, None], freqs[None, None, :]
    code = (torch.cos(x.reshape(-1, 1, 1) * fx * torch.pi) * torch.cos(y.reshape(-1, 1, 1) * fy * torch.pi)
            / (1 + fx * fy))
    return code.reshape(patch * patch, max_freqs * max_freqs)


class NerfEmbedder(nn.Module):
    def __init__(self, in_channels: int, hidden: int, max_freqs: int, device: Any = None):
        super().__init__()
        self.max_freqs = max_freqs
        self.embedder = nn.Sequential(ops.Linear(in_channels + max_freqs ** 2, hidden, device=device))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [N, P*P, C] -> features [N, P*P, hidden] (computed in float32)."""
        n, p2, _ = pixels.shape
        code = dct_positions(int(round(p2 ** 0.5)), self.max_freqs, pixels.device)
        x = torch.cat((pixels.float(), code.expand(n, -1, -1)), dim=-1)
        return _linear(self.embedder[0], x).to(pixels.dtype)


class NerfGLUBlock(nn.Module):
    def __init__(self, hidden: int, nerf_hidden: int, mlp_ratio: int, device: Any = None):
        super().__init__()
        self.mlp_ratio = mlp_ratio
        self.param_generator = ops.Linear(hidden, 3 * nerf_hidden * nerf_hidden * mlp_ratio, device=device)
        self.norm = RMSNorm(nerf_hidden, device=device)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x [N, P*P, nh] pixel features, s [N, hidden] their patch's transformer output."""
        n, _, nh = x.shape
        wide = nh * self.mlp_ratio
        gate, value, out = self.param_generator(s).chunk(3, dim=-1)
        gate = F.normalize(gate.reshape(n, nh, wide), dim=-2)
        value = F.normalize(value.reshape(n, nh, wide), dim=-2)
        out = F.normalize(out.reshape(n, wide, nh), dim=-2)
        h = self.norm(x)
        return x + torch.bmm(F.silu(torch.bmm(h, gate)) * torch.bmm(h, value), out)


class NerfFinalLayer(nn.Module):
    def __init__(self, nerf_hidden: int, out_channels: int, device: Any = None):
        super().__init__()
        self.norm = RMSNorm(nerf_hidden, device=device)
        self.linear = ops.Linear(nerf_hidden, out_channels, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, nh, H, W] -> [B, C, H, W]
        return self.linear(self.norm(x.movedim(1, -1))).movedim(-1, 1)


class NerfFinalLayerConv(nn.Module):
    def __init__(self, nerf_hidden: int, out_channels: int, device: Any = None):
        super().__init__()
        self.norm = RMSNorm(nerf_hidden, device=device)
        self.conv = ops.Conv2d(nerf_hidden, out_channels, kernel_size=3, padding=1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x.movedim(1, -1)).movedim(-1, 1))


class ChromaRadiance(Chroma):
    """``config``: :func:`comfyui.models.chroma.detection.detect_radiance`'s dict (``in_channels``
    = ``out_channels`` = 3, ``patch_size`` 16 for the release)."""

    def __init__(self, patch_size: int = 16, nerf_hidden_size: int = 64, nerf_mlp_ratio: int = 4,
                 nerf_depth: int = 4, nerf_max_freqs: int = 8, nerf_tile_size: int = DEFAULT_TILE_SIZE,
                 nerf_final_head_type: str = "linear", x0: bool = False, device: Any = None, **config: Any):
        self.nerf_config = (nerf_hidden_size, nerf_mlp_ratio, nerf_depth, nerf_max_freqs, nerf_final_head_type)
        super().__init__(patch_size=patch_size, device=device, **config)
        self.nerf_tile_size, self.x0 = nerf_tile_size, x0

    def build_image_io(self, in_channels: int, out_channels: int, hidden_size: int, device: Any) -> None:
        nh, ratio, depth, freqs, head = self.nerf_config
        p = self.patch_size
        self.img_in_patch = ops.Conv2d(in_channels, hidden_size, kernel_size=p, stride=p, device=device)
        self.nerf_image_embedder = NerfEmbedder(in_channels, nh, freqs, device=device)
        self.nerf_blocks = nn.ModuleList(NerfGLUBlock(hidden_size, nh, ratio, device=device) for _ in range(depth))
        if head == "conv":
            self.nerf_final_layer_conv = NerfFinalLayerConv(nh, out_channels, device=device)
        else:
            self.nerf_final_layer = NerfFinalLayer(nh, out_channels, device=device)

    def embed_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """The stride-p convolution as a Linear on the channel-major patch tokens."""
        w, b = self.img_in_patch.cast_bias_weight(tokens)
        return F.linear(tokens, w.flatten(1), b)

    def image_head(self, tokens: torch.Tensor, mods: torch.Tensor) -> torch.Tensor:
        return tokens  # the NeRF head decodes the tokens (see forward)

    def nerf(self, pixels: torch.Tensor, hidden: torch.Tensor, tile_size: int) -> torch.Tensor:
        """Noisy pixels [B, C, H, W] (multiples of the patch) and the transformer's patch tokens
        [B, L, hidden] -> the output image [B, C, H, W]."""
        b, c, height, width = pixels.shape
        p = self.patch_size
        n = hidden.shape[1]
        # [B, C*P*P, L] -> one row of P*P pixels (C values each) per patch, batch-major
        patches = F.unfold(pixels, kernel_size=p, stride=p).transpose(1, 2).reshape(b * n, c, p * p).transpose(1, 2)
        tokens = hidden.reshape(b * n, -1)
        step = b * n if tile_size <= 0 else tile_size
        outs = []
        for start in range(0, b * n, step):
            x = self.nerf_image_embedder(patches[start:start + step])
            s = tokens[start:start + step]
            for block in self.nerf_blocks:
                x = block(x, s)
            outs.append(x)
        features = torch.cat(outs).transpose(1, 2).reshape(b, n, -1).transpose(1, 2)
        image = F.fold(features, output_size=(height, width), kernel_size=p, stride=p)
        head = self.nerf_final_layer_conv if hasattr(self, "nerf_final_layer_conv") else self.nerf_final_layer
        return head(image)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                guidance: torch.Tensor | None = None, control: dict | None = None,
                transformer_options: dict | None = None, attention_mask: torch.Tensor | None = None,
                **_: Any) -> torch.Tensor:
        options = (transformer_options or {}).get("chroma_radiance_options", {})
        unknown = set(options) - set(OPTION_KEYS)
        if unknown:
            raise ValueError(f"unknown chroma_radiance_options {sorted(unknown)} (known: {list(OPTION_KEYS)})")
        b, _, height, width = x.shape
        p = self.patch_size
        pixels = F.pad(x, (0, (-width) % p, 0, (-height) % p), mode="circular")
        tokens, img_ids = self.patchify(pixels)
        txt_ids = torch.zeros(b, context.shape[1], 3, device=x.device, dtype=torch.float32)
        rope = rope_angles(torch.cat((txt_ids, img_ids), dim=1), self.axes_dim, self.theta)
        hidden = self.forward_tokens(tokens, context, timestep, guidance, rope, control, transformer_options or {},
                                     attention_mask)
        out = self.nerf(pixels, hidden, options.get("nerf_tile_size", self.nerf_tile_size))[:, :, :height, :width]
        if self.x0:
            out = (x - out) / timestep.to(x.dtype).reshape(-1, 1, 1, 1)
        return out
