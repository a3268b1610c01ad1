"""The Wan 2.1 causal 3-D VAE (``wan_2.1_vae.safetensors``), in the released key layout
(``encoder.conv1``, ``encoder.downsamples.{i}``, ``encoder.middle``, ``encoder.head``,
``conv1``, ``conv2``, ``decoder.*``).

Pictures [B, 3, T, H, W] in -1..1 <-> latents [B, z, (T - 1) // 4 + 1, H / 8, W / 8] (raw: the
``Wan21`` latent format normalises them for the model).

Every 3-D convolution is causal in time (zero padding before the first frame only) and the
network runs chunk by chunk along time, so memory is bounded by one chunk: the encoder takes
the first picture alone and then 4 pictures at a time (one latent frame each), the decoder one
latent frame at a time (1 picture for the first, 4 for each later one). A chunk sees the past
through a feature cache: each time convolution keeps the last two frames of its input (the
frames its kernel reaches back to) for the next chunk. The temporal resamplers are special on
the first chunk: the down-sampler passes the first frame through without its time
convolution (so 1 + 4k pictures give 1 + k latents), the up-sampler does not double it.

Normalisation is RMS over channels (``gamma`` scaled by sqrt(channels)), so any width works;
the widths and counts are read from the weights (real file: dim 96, z 16, mult 1/2/4/4, two
residual blocks per level, time down-sampling in the 2nd and 3rd levels).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops

CACHE_FRAMES = 2
_FIRST = object()  # an up-sampler's cache before its first chunk went through


class CausalConv3d(ops.Conv3d):
    """A Conv3d padded in time on the past side only; with ``cache`` (a dict shared by one
    encode/decode call) it continues from the frames the previous chunk left."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pt, ph, pw = self.padding
        self.causal_padding = (pw, pw, ph, ph, 2 * pt, 0)
        self.padding = (0, 0, 0)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if cache is None or self.causal_padding[4] == 0:
            return self.with_past(x, None)
        prev = cache.get(self)
        keep = x[:, :, -CACHE_FRAMES:]
        if keep.shape[2] < CACHE_FRAMES and prev is not None:
            keep = torch.cat((prev[:, :, -1:], keep), dim=2)
        cache[self] = keep.clone()
        return self.with_past(x, prev)

    def with_past(self, x: torch.Tensor, past: torch.Tensor | None) -> torch.Tensor:
        """The convolution of ``x`` continuing after the frames ``past`` (zeros before them)."""
        pad = list(self.causal_padding)
        if past is not None and pad[4] > 0:
            x = torch.cat((past.to(x), x), dim=2)
            pad[4] = max(0, pad[4] - past.shape[2])
        return super().forward(F.pad(x, pad))


class RMSNorm(nn.Module):
    """x / ||x|| over the channels, times sqrt(channels) * gamma (shape [C, 1, 1(, 1)])."""

    def __init__(self, dim: int, video: bool = True):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1, 1) if video else (dim, 1, 1)))
        self.scale = dim ** 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma.to(x)


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    b, c, t = x.shape[:3]
    y = fn(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        h = x
        for layer in self.residual:
            h = layer(h, cache) if isinstance(layer, CausalConv3d) else layer(h)
        return h + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, video=False)
        self.to_qkv = ops.Conv2d(dim, dim * 3, 1)
        self.proj = ops.Conv2d(dim, dim, 1)

    def _frame(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return self.proj(out.transpose(-1, -2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        return x + _per_frame(self._frame, x)


class Resample(nn.Module):
    """2x spatial down/up-sampling, with a time convolution when ``temporal`` (down: stride 2;
    up: doubles the frames)."""

    def __init__(self, dim: int, mode: str, up_out: int | None = None):
        super().__init__()
        self.mode = mode
        if mode.startswith("up"):  # Wan 2.1 halves the width here, Wan 2.2 keeps it
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          ops.Conv2d(dim, dim // 2 if up_out is None else up_out, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), ops.Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        if self.mode == "upsample3d":
            prev = cache.get(self)
            if prev is None:
                cache[self] = _FIRST  # the first latent frame stays one picture
            else:
                keep = x[:, :, -CACHE_FRAMES:]
                if keep.shape[2] < CACHE_FRAMES:
                    last = torch.zeros_like(keep[:, :, -1:]) if prev is _FIRST else prev[:, :, -1:].to(keep)
                    keep = torch.cat((last, keep), dim=2)
                x = self.time_conv.with_past(x, None if prev is _FIRST else prev)
                cache[self] = keep.clone()
                b, c2, t = x.shape[:3]
                x = x.reshape(b, 2, c2 // 2, t, *x.shape[3:]).permute(0, 2, 3, 1, 4, 5)
                x = x.reshape(b, c2 // 2, t * 2, *x.shape[4:])
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            prev = cache.get(self)
            cache[self] = x[:, :, -1:].clone()
            if prev is not None:  # the first chunk's frame passes through
                x = self.time_conv(torch.cat((prev.to(x), x), dim=2))
        return x


def _run(layers, x, cache):
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, (CausalConv3d, ResidualBlock, AttentionBlock, Resample)) else layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, temporal_downsample):
        super().__init__()
        dims = [dim * m for m in [1, *dim_mult]]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                layers.append(Resample(out_dim, "downsample3d" if temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(dims[-1], dims[-1]), AttentionBlock(dims[-1]),
                                    ResidualBlock(dims[-1], dims[-1]))
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = self.conv1(x, cache)
        for part in (self.downsamples, self.middle, self.head):
            x = _run(part, x, cache)
        return x


class Decoder3d(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, temporal_upsample):
        super().__init__()
        dims = [dim * m for m in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the up-sampler's convolution halves the width
            for _ in range(num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                layers.append(Resample(out_dim, "upsample3d" if temporal_upsample[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = self.conv1(x, cache)
        for part in (self.middle, self.upsamples, self.head):
            x = _run(part, x, cache)
        return x


class WanVAE(nn.Module):
    """``encode``: [B, 3, T, H, W] in -1..1 -> the posterior mean [B, z, (T-1)//4+1, H/8, W/8];
    ``decode``: the inverse map, one latent frame at a time."""

    temporal_compression = 4

    def __init__(self, dim: int = 96, z_dim: int = 16, dim_mult=(1, 2, 4, 4), num_res_blocks: int = 2,
                 temporal_downsample=(False, True, True)):
        super().__init__()
        self.z_dim = z_dim
        self.spatial_compression = 2 ** (len(dim_mult) - 1)
        self.encoder = Encoder3d(dim, z_dim * 2, dim_mult, num_res_blocks, temporal_downsample)
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(dim, z_dim, dim_mult, num_res_blocks, tuple(temporal_downsample)[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        cache: dict = {}
        t = x.shape[2]
        chunks = [x[:, :, :1]] + [x[:, :, 1 + 4 * i:5 + 4 * i] for i in range((t - 1) // 4)]
        out = torch.cat([self.encoder(c, cache) for c in chunks], dim=2)
        return self.conv1(out)[:, :self.z_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        cache: dict = {}
        x = self.conv2(z)
        return torch.cat([self.decoder(x[:, :, i:i + 1], cache) for i in range(x.shape[2])], dim=2)


# ------------------------------------------------------------------------------ Wan 2.2
def _avg_down(x: torch.Tensor, out_channels: int, ft: int, fs: int) -> torch.Tensor:
    """The parameter-free shortcut of a Wan 2.2 down block: (ft x fs x fs) cells folded into
    channels (time zero-padded in front to a multiple of ft), then channel groups averaged."""
    x = F.pad(x, (0, 0, 0, 0, (ft - x.shape[2] % ft) % ft, 0))
    b, c, t, h, w = x.shape
    x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
    x = x.reshape(b, out_channels, c * ft * fs * fs // out_channels, t // ft, h // fs, w // fs)
    return x.mean(dim=2)


def _dup_up(x: torch.Tensor, out_channels: int, ft: int, fs: int, first_chunk: bool) -> torch.Tensor:
    """The parameter-free shortcut of a Wan 2.2 up block: channels repeated and unfolded into
    (ft x fs x fs) cells; the first chunk drops the ft - 1 leading frames (causal start)."""
    b, c, t, h, w = x.shape
    x = x.repeat_interleave(out_channels * ft * fs * fs // c, dim=1)
    x = x.view(b, out_channels, ft, fs, fs, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    x = x.reshape(b, out_channels, t * ft, h * fs, w * fs)
    return x[:, :, ft - 1:] if first_chunk else x


class DownBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, blocks: int, temporal: bool, down: bool):
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, 2 if temporal else 1, 2 if down else 1
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if down:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        return _run(self.downsamples, x, cache) + _avg_down(x, self.out_dim, self.ft, self.fs)


class UpBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, blocks: int, temporal: bool, up: bool):
        super().__init__()
        self.out_dim, self.ft, self.up = out_dim, 2 if temporal else 1, up
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if up:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", up_out=out_dim))
        self.upsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cache: dict, first_chunk: bool) -> torch.Tensor:
        out = _run(self.upsamples, x, cache)
        return out + _dup_up(x, self.out_dim, self.ft, 2, first_chunk) if self.up else out


class Encoder3d22(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, temporal_downsample):
        super().__init__()
        dims = [dim * m for m in [1, *dim_mult]]
        self.conv1 = CausalConv3d(12, dims[0], 3, padding=1)
        self.downsamples = nn.Sequential(*(
            DownBlock(a, b, num_res_blocks, i < len(temporal_downsample) and temporal_downsample[i], i != len(dim_mult) - 1)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))))
        self.middle = nn.Sequential(ResidualBlock(dims[-1], dims[-1]), AttentionBlock(dims[-1]),
                                    ResidualBlock(dims[-1], dims[-1]))
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = self.conv1(x, cache)
        for block in self.downsamples:
            x = block(x, cache)
        return _run(self.head, _run(self.middle, x, cache), cache)


class Decoder3d22(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, temporal_upsample):
        super().__init__()
        dims = [dim * m for m in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        self.upsamples = nn.Sequential(*(
            UpBlock(a, b, num_res_blocks + 1, i < len(temporal_upsample) and temporal_upsample[i], i != len(dim_mult) - 1)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))))
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 12, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict, first_chunk: bool) -> torch.Tensor:
        x = _run(self.middle, self.conv1(x, cache), cache)
        for block in self.upsamples:
            x = block(x, cache, first_chunk)
        return _run(self.head, x, cache)


class WanVAE22(nn.Module):
    """The Wan 2.2 VAE (``wan2.2_vae.safetensors``, for the 5B model): pictures folded 2x2 into
    12 channels, residual down/up blocks with parameter-free shortcuts; 16x spatial, 4x
    temporal, 48 latent channels (real file: encoder dim 160, decoder dim 256)."""

    temporal_compression = 4

    def __init__(self, dim: int = 160, dec_dim: int = 256, z_dim: int = 48, dim_mult=(1, 2, 4, 4),
                 num_res_blocks: int = 2, temporal_downsample=(False, True, True)):
        super().__init__()
        self.z_dim = z_dim
        self.spatial_compression = 2 * 2 ** (len(dim_mult) - 1)
        self.encoder = Encoder3d22(dim, z_dim * 2, dim_mult, num_res_blocks, temporal_downsample)
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d22(dec_dim, z_dim, dim_mult, num_res_blocks, tuple(temporal_downsample)[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape  # 2x2 pixel cells -> channels (c, col, row)
        x = x.view(b, c, t, h // 2, 2, w // 2, 2).permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * 4, t, h // 2, w // 2)
        cache: dict = {}
        chunks = [x[:, :, :1]] + [x[:, :, 1 + 4 * i:5 + 4 * i] for i in range((t - 1) // 4)]
        out = torch.cat([self.encoder(ch, cache) for ch in chunks], dim=2)
        return self.conv1(out)[:, :self.z_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        cache: dict = {}
        x = self.conv2(z)
        out = torch.cat([self.decoder(x[:, :, i:i + 1], cache, i == 0) for i in range(x.shape[2])], dim=2)
        b, c4, t, h, w = out.shape
        out = out.view(b, c4 // 4, 2, 2, t, h, w).permute(0, 1, 4, 5, 3, 6, 2)
        return out.reshape(b, c4 // 4, t, h * 2, w * 2)


def is_wan22_vae(sd: Mapping[str, Any]) -> bool:
    return "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd


def vae22_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The WanVAE22 config read from the weights."""
    dim = sd["encoder.conv1.weight"].shape[0]
    dim_mult, temporal = [], []
    i = 0
    while f"encoder.downsamples.{i}.downsamples.0.residual.2.weight" in sd:
        dim_mult.append(sd[f"encoder.downsamples.{i}.downsamples.0.residual.2.weight"].shape[0] // dim)
        i += 1
    blocks = 0
    while f"encoder.downsamples.0.downsamples.{blocks}.residual.2.weight" in sd:
        blocks += 1
    for j in range(i - 1):
        temporal.append(f"encoder.downsamples.{j}.downsamples.{blocks}.time_conv.weight" in sd)
    return {"dim": dim, "dec_dim": sd["decoder.conv1.weight"].shape[0] // dim_mult[-1],
            "z_dim": sd["conv2.weight"].shape[0], "dim_mult": tuple(dim_mult), "num_res_blocks": blocks,
            "temporal_downsample": tuple(temporal)}


def is_wan21_vae(sd: Mapping[str, Any]) -> bool:
    return "decoder.middle.0.residual.0.gamma" in sd and "decoder.upsamples.0.upsamples.0.residual.2.weight" not in sd


def vae_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The WanVAE config read from the weights: the encoder's layers in order are residual
    blocks (``residual.2``) and resamplers (``resample.1``, with ``time_conv`` when temporal)."""
    dim = sd["encoder.conv1.weight"].shape[0]
    dim_mult, temporal, blocks, run = [], [], [], 0
    i = 0
    while True:
        pre = f"encoder.downsamples.{i}."
        if pre + "residual.2.weight" in sd:
            run += 1
            width = sd[pre + "residual.2.weight"].shape[0]
        elif pre + "resample.1.weight" in sd:
            temporal.append(pre + "time_conv.weight" in sd)
        else:
            break
        if pre + "resample.1.weight" in sd or f"encoder.downsamples.{i + 1}.residual.2.weight" not in sd:
            if run:
                dim_mult.append(width // dim)
                blocks.append(run)
            run = 0
        i += 1
    return {"dim": dim, "z_dim": sd["conv2.weight"].shape[0], "dim_mult": tuple(dim_mult),
            "num_res_blocks": blocks[0], "temporal_downsample": tuple(temporal)}


def _bytes(dtype) -> int:
    return torch.finfo(dtype).bits // 8


def load_video_vae(sd: dict[str, torch.Tensor], device: torch.device | None = None,
                   dtype: torch.dtype | None = None):
    """The VAE object (:class:`comfyui.models.video_vae.VideoVAE`) of Wan 2.1 or Wan 2.2 VAE
    weights; activation estimates per latent frame as upstream's (the decode runs frame by
    frame, so they do not grow with the length)."""
    from .. import memory
    from ..video_vae import VideoVAE
    if is_wan22_vae(sd):
        config, cls = vae22_config(sd), WanVAE22
        decode_bytes = lambda shape, dt: 8000 * shape[3] * shape[4] * 256 * _bytes(dt)  # noqa: E731
        encode_bytes = lambda shape, dt: 3300 * shape[3] * shape[4] * _bytes(dt)  # noqa: E731
    else:
        config, cls = vae_config(sd), WanVAE
        decode_bytes = lambda shape, dt: 7000 * shape[3] * shape[4] * 64 * _bytes(dt)  # noqa: E731
        encode_bytes = lambda shape, dt: 6000 * shape[3] * shape[4] * _bytes(dt)  # noqa: E731
    device = device or memory.vae_device()
    dtype = dtype or memory.vae_dtype(device)
    with torch.device("meta"):
        network = cls(**config)
    missing, _ = ops.assign_state_dict(network, sd, dtype)
    if missing:
        raise ValueError(f"Wan VAE: missing weights {missing[:5]}")
    return VideoVAE(network, latent_channels=config["z_dim"], temporal_compression=cls.temporal_compression,
                    spatial_compression=network.spatial_compression, device=device, dtype=dtype,
                    memory_used_decode=decode_bytes, memory_used_encode=encode_bytes)


__all__ = ["WanVAE", "WanVAE22", "is_wan21_vae", "is_wan22_vae", "vae_config", "vae22_config", "load_video_vae"]
