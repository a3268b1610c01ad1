"""The VAE object of video models (what a VAE socket carries for latents [B,C,T,H,W]) and the
tiling that keeps decode/encode memory bounded by the tile, not by the video's length.

A video family builds its autoencoder and wraps it::

    vae = VideoVAE(network, latent_channels=16, temporal_compression=4, spatial_compression=8)

``network.decode(z [B,C,t,h,w]) -> x [B,3,T,H,W]`` in -1..1 with ``T = (t-1)*tc + 1`` and
``network.encode(x [B,3,T,H,W]) -> z [B,C,(T-1)//tc+1,H/s,W/s]`` (raw VAE latents: the
latent format's scaling is the model's business, as for image VAEs). The network is *causal
in time* (Wan, HunyuanVideo, LTX-Video): the first latent frame stands for one picture, each
later one for ``tc`` pictures, and no output depends on later inputs.

The attributes are upstream's (comfy/sd.py ``VAE``), so nodes and custom nodes can tell a
video VAE from an image one: ``latent_dim == 3``, ``latent_channels``, ``upscale_ratio`` /
``downscale_ratio`` = ``(time formula, s, s)``, ``upscale_index_formula`` /
``downscale_index_formula`` = ``(tc, s, s)``, ``temporal_compression_decode() -> tc`` (None
on image VAEs), ``spacial_compression_decode() -> s``.

Images: ``decode`` returns [B,T,H,W,3] (``VAEDecode`` folds it into the IMAGE batch
[B*T,H,W,3]); ``encode`` takes a frame batch IMAGE [T,H,W,C] (one video) or [B,T,H,W,C].

Temporal tiling (``decode_tiled`` / ``encode_tiled`` with ``tile_t`` / ``overlap_t``) uses
causality instead of blending: each tile is run with ``overlap_t`` latent frames of context
before it, and the output of the context is dropped. For a network whose receptive field in
time is at most ``overlap_t`` latent frames the result equals the untiled one; spatial tiles
are blended with linear feathering as for image VAEs.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable

import torch

from . import memory
from .patcher import ModelPatcher

log = logging.getLogger(__name__)


def _feather_mask(shape_hw: tuple[int, int], feather: int, top: bool, bottom: bool, left: bool, right: bool,
                  device) -> torch.Tensor:
    h, w = shape_hw
    mask = torch.ones((h, w), device=device)
    for t in range(min(feather, h, w)):
        a = (t + 1) / (feather + 1)
        if top:
            mask[t, :] *= a
        if bottom:
            mask[h - 1 - t, :] *= a
        if left:
            mask[:, t] *= a
        if right:
            mask[:, w - 1 - t] *= a
    return mask


def _positions(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    return sorted(set(list(range(0, size - tile, step)) + [size - tile]))


def tiled_spatial(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], tile_h: int, tile_w: int,
                  overlap: int, scale: float, output_device) -> torch.Tensor:
    """Run ``fn`` on overlapping spatial tiles of ``x`` [B,C,T,H,W] (sizes in input pixels) and
    blend the outputs ([1,C',T',h*scale,w*scale]) with linear feathering."""
    H, W = x.shape[-2], x.shape[-1]
    tile_h, tile_w = min(tile_h, H), min(tile_w, W)
    overlap = max(0, min(overlap, tile_h // 4, tile_w // 4))
    ys, xs = _positions(H, tile_h, overlap), _positions(W, tile_w, overlap)
    outs = []
    for b in range(x.shape[0]):
        s = x[b:b + 1]
        if len(ys) == 1 and len(xs) == 1:
            outs.append(fn(s).to(output_device).float())
            continue
        out = div = None
        for y in ys:
            for x0 in xs:
                piece = fn(s[..., y:y + tile_h, x0:x0 + tile_w]).to(output_device).float()
                if out is None:
                    oh, ow = round(H * scale), round(W * scale)
                    out = torch.zeros(piece.shape[:3] + (oh, ow), device=output_device)
                    div = torch.zeros((1, 1, 1, oh, ow), device=output_device)
                mask = _feather_mask(piece.shape[-2:], round(overlap * scale), y > 0, y + tile_h < H, x0 > 0,
                                     x0 + tile_w < W, output_device)
                oy, ox = round(y * scale), round(x0 * scale)
                out[..., oy:oy + piece.shape[-2], ox:ox + piece.shape[-1]] += piece * mask
                div[..., oy:oy + piece.shape[-2], ox:ox + piece.shape[-1]] += mask
        outs.append(out / div.clamp_min(1e-8))
    return torch.cat(outs)


class VideoVAE:
    """A causal video autoencoder behind a VAE socket (see the module docstring)."""

    latent_dim = 3
    not_video = False

    def __init__(self, network: torch.nn.Module, latent_channels: int, temporal_compression: int = 4,
                 spatial_compression: int = 8, device: torch.device | None = None, dtype: torch.dtype | None = None,
                 output_channels: int = 3,
                 memory_used_decode: Callable[[tuple, torch.dtype], int] | None = None,
                 memory_used_encode: Callable[[tuple, torch.dtype], int] | None = None):
        tc, s = int(temporal_compression), int(spatial_compression)
        self.first_stage_model = network.eval().requires_grad_(False)
        self.latent_channels = int(latent_channels)
        self.output_channels = int(output_channels)
        self.temporal_compression = tc
        self.upscale_ratio = (lambda a: max(0, a * tc - (tc - 1)), s, s)
        self.downscale_ratio = (lambda a: max(0, math.floor((a + tc - 1) / tc)), s, s)
        self.upscale_index_formula = (tc, s, s)
        self.downscale_index_formula = (tc, s, s)
        self.device = device or memory.vae_device()
        self.vae_dtype = dtype or next((p.dtype for p in network.parameters()), torch.float32)
        self.output_device = memory.intermediate_device()
        self.patcher = ModelPatcher(self.first_stage_model, load_device=self.device,
                                    offload_device=memory.vae_offload_device())
        # activation estimates in bytes (per output picture element, as upstream's video VAEs)
        self.memory_used_decode = memory_used_decode or (
            lambda shape, dt: 2000 * shape[2] * shape[3] * shape[4] * (tc * s * s) * memory.dtype_size(dt))
        self.memory_used_encode = memory_used_encode or (
            lambda shape, dt: 1000 * max(shape[2], 2) * shape[3] * shape[4] * memory.dtype_size(dt))

    # ---------------------------------------------------------------- upstream's queries
    def get_sd(self) -> dict[str, torch.Tensor]:
        return self.first_stage_model.state_dict()

    def spacial_compression_decode(self) -> int:
        return self.upscale_ratio[-1]

    def spacial_compression_encode(self) -> int:
        return self.downscale_ratio[-1]

    def temporal_compression_decode(self) -> int:
        return self.temporal_compression

    def frames_for_latents(self, t: int) -> int:
        return self.upscale_ratio[0](t)

    def latents_for_frames(self, frames: int) -> int:
        return self.downscale_ratio[0](frames)

    # ---------------------------------------------------------------- raw calls
    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.first_stage_model.decode(z.to(self.device, self.vae_dtype))
        return out.float()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.first_stage_model.encode(x.to(self.device, self.vae_dtype)).float()

    def _to_image(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,T,H,W] in -1..1 -> [B,T,H,W,3] in 0..1."""
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)

    # ---------------------------------------------------------------- decode
    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Raw latent [B,C,t,h,w] -> pictures [B,T,H,W,3] float32 0..1 (T = (t-1)*tc + 1)."""
        if samples.ndim == 4:
            samples = samples.unsqueeze(2)
        per = self.memory_used_decode(tuple(samples.shape[:1]) + (1,) + tuple(samples.shape[2:]), self.vae_dtype)
        memory.load_models_gpu([self.patcher], memory_required=per)
        try:
            with torch.inference_mode():
                outs = [self._decode(samples[i:i + 1]).to(self.output_device) for i in range(samples.shape[0])]
        except torch.cuda.OutOfMemoryError:
            log.warning("video VAE decode ran out of memory; retrying with tiled decoding")
            tile = 256 // self.spacial_compression_decode()
            return self.decode_tiled(samples, tile_x=tile, tile_y=tile, overlap=tile // 4, tile_t=8, overlap_t=2)
        return self._to_image(torch.cat(outs))

    def decode_tiled(self, samples: torch.Tensor, tile_x: int = 32, tile_y: int = 32, overlap: int = 8,
                     tile_t: int | None = None, overlap_t: int | None = None) -> torch.Tensor:
        """Tiled decode. Spatial sizes in latent pixels; ``tile_t`` / ``overlap_t`` in latent frames
        (None: the whole length at once). Returns [B,T,H,W,3]."""
        if samples.ndim == 4:
            samples = samples.unsqueeze(2)
        tc = self.temporal_compression
        s = self.spacial_compression_decode()
        memory.load_models_gpu([self.patcher])
        t = samples.shape[2]
        tile_t = t if tile_t is None else max(2, int(tile_t))
        overlap_t = 0 if overlap_t is None else max(1, min(int(overlap_t), tile_t - 1))

        def run(z: torch.Tensor) -> torch.Tensor:
            return tiled_spatial(z, self._decode, tile_y, tile_x, overlap, s, self.output_device)

        with torch.inference_mode():
            if t <= tile_t:
                return self._to_image(run(samples))
            parts = [run(samples[:, :, :tile_t])]
            start, new = tile_t, tile_t - overlap_t
            while start < t:
                n = min(new, t - start)
                ctx = min(overlap_t, start)
                out = run(samples[:, :, start - ctx:start + n])
                drop = self.upscale_ratio[0](ctx)  # the pictures of the context latents
                parts.append(out[:, :, drop:])
                start += n
            return self._to_image(torch.cat(parts, dim=2))

    # ---------------------------------------------------------------- encode
    def _prepare_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """IMAGE [T,H,W,C] (one video) or [B,T,H,W,C] -> [B,3,T,H',W'] in -1..1, cropped to a
        multiple of the spatial compression around the centre."""
        if pixels.ndim == 4:
            pixels = pixels.unsqueeze(0)
        pixels = pixels[..., :3]
        r = self.spacial_compression_encode()
        for d in (2, 3):
            size = pixels.shape[d]
            keep = (size // r) * r
            if keep != size:
                pixels = pixels.narrow(d, (size % r) // 2, keep)
        return pixels.movedim(-1, 1) * 2.0 - 1.0

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames -> raw latent [B,C,(T-1)//tc+1,H/s,W/s]."""
        x = self._prepare_pixels(pixels)
        per = self.memory_used_encode(tuple(x.shape), self.vae_dtype)
        memory.load_models_gpu([self.patcher], memory_required=per)
        try:
            with torch.inference_mode():
                outs = [self._encode(x[i:i + 1]).to(self.output_device) for i in range(x.shape[0])]
        except torch.cuda.OutOfMemoryError:
            log.warning("video VAE encode ran out of memory; retrying with tiled encoding")
            return self._encode_tiled(x, 256, 256, 64, 8 * self.temporal_compression + 1, 2 * self.temporal_compression)
        return torch.cat(outs)

    def encode_tiled(self, pixels: torch.Tensor, tile_x: int = 512, tile_y: int = 512, overlap: int = 64,
                     tile_t: int | None = None, overlap_t: int | None = None) -> torch.Tensor:
        """Tiled encode; sizes in pictures (``tile_t`` / ``overlap_t`` in frames). Frames past the
        last whole latent frame (T not 1 + k*tc) are dropped, as upstream."""
        x = self._prepare_pixels(pixels)
        memory.load_models_gpu([self.patcher])
        return self._encode_tiled(x, tile_x, tile_y, overlap, tile_t, overlap_t)

    def _encode_tiled(self, x, tile_x, tile_y, overlap, tile_t, overlap_t) -> torch.Tensor:
        tc = self.temporal_compression
        s = self.spacial_compression_encode()
        frames = x.shape[2]
        t = self.latents_for_frames(frames)
        x = x[:, :, :self.frames_for_latents(t)]
        tile_lt = t if tile_t is None else max(2, self.latents_for_frames(int(tile_t)))
        overlap_lt = 0 if overlap_t is None else max(1, min(tile_lt - 1, self.latents_for_frames(int(overlap_t))))

        def run(p: torch.Tensor) -> torch.Tensor:
            return tiled_spatial(p, self._encode, tile_y, tile_x, overlap, 1.0 / s, self.output_device)

        with torch.inference_mode():
            if t <= tile_lt:
                return run(x)
            parts = [run(x[:, :, :self.frames_for_latents(tile_lt)])]
            start, new = tile_lt, tile_lt - overlap_lt
            while start < t:
                n = min(new, t - start)
                ctx = min(overlap_lt, start)
                first = (start - ctx) * tc  # picture of latent start-ctx, taken as a first frame
                last = (start + n - 1) * tc  # last picture of latent start+n-1
                out = run(x[:, :, first:last + 1])
                parts.append(out[:, :, ctx:])
                start += n
            return torch.cat(parts, dim=2)


def is_video_vae(vae: Any) -> bool:
    return getattr(vae, "latent_dim", 2) == 3


__all__ = ["VideoVAE", "tiled_spatial", "is_video_vae"]
