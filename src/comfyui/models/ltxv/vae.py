"""The LTX-Video causal video autoencoder (32x spatial, 8x temporal, 128 latent channels), in
the checkpoint's key layout (``encoder.*``, ``decoder.*``, ``per_channel_statistics.*``; under
``vae.`` inside an all-in-one checkpoint).

The network is described by block lists (upstream's config format): ``res_x`` (residual
blocks at one width), ``res_x_y`` (one residual block changing the width), ``compress_*``
(strided causal convolutions in the encoder, depth-to-space upsamplers in the decoder, with
``residual`` / ``multiplier`` options), ``compress_*_res`` (the 0.9.5 space-to-depth
downsamplers). The version (0.9.0, 0.9.1, 0.9.5) is read from the shapes, a file's
``metadata["config"]["vae"]`` overrides it, and every width comes from the tensors.

The 0.9.1+ decoders are timestep-conditioned and blend noise into the latent before decoding
(``decode(timestep=0.05, noise_scale=0.025)``). Upstream draws that noise unseeded; here it is
drawn from a generator seeded with ``decode_seed`` (the prompt's seed when a sampler set it,
else 0): a documented deviation that makes decodes reproducible.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .model import _TimestepEmbedder, timestep_embedding

V090_BLOCKS = [["res_x", 4], ["compress_all", 1], ["res_x_y", 1], ["res_x", 3], ["compress_all", 1],
               ["res_x_y", 1], ["res_x", 3], ["compress_all", 1], ["res_x", 3], ["res_x", 4]]
V091_DECODER = [["res_x", {"num_layers": 5, "inject_noise": True}], ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 6, "inject_noise": True}], ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 7, "inject_noise": True}], ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 8, "inject_noise": False}]]
V095_ENCODER = [["res_x", {"num_layers": 4}], ["compress_space_res", {"multiplier": 2}], ["res_x", {"num_layers": 6}],
                ["compress_time_res", {"multiplier": 2}], ["res_x", {"num_layers": 6}],
                ["compress_all_res", {"multiplier": 2}], ["res_x", {"num_layers": 2}],
                ["compress_all_res", {"multiplier": 2}], ["res_x", {"num_layers": 2}]]
V095_DECODER = [["res_x", {"num_layers": 5, "inject_noise": False}], ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 5, "inject_noise": False}], ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 5, "inject_noise": False}], ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 5, "inject_noise": False}]]

_STRIDES = {"compress_time": (2, 1, 1), "compress_space": (1, 2, 2), "compress_all": (2, 2, 2),
            "compress_all_x_y": (2, 2, 2), "compress_all_res": (2, 2, 2), "compress_space_res": (1, 2, 2),
            "compress_time_res": (2, 1, 1)}


def _params(p: Any) -> dict:
    return {"num_layers": p} if isinstance(p, int) else dict(p or {})


def guess_config(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
    """Upstream's version guess from the shapes: 0.9.0 (decoder width 512 at the first block),
    0.9.1 (wider, timestep-conditioned), 0.9.5 (+ a space-to-depth encoder)."""
    config: dict[str, Any] = {"patch_size": 4, "norm_layer": "pixel_norm", "latent_log_var": "uniform",
                              "causal_decoder": False}
    key = prefix + "decoder.up_blocks.0.res_blocks.0.conv1.conv.weight"
    width = sd[key].shape[0] if key in sd else 512
    if width == 512 and prefix + "decoder.last_time_embedder.timestep_embedder.linear_1.weight" not in sd:
        config.update(encoder_blocks=V090_BLOCKS, decoder_blocks=V090_BLOCKS, timestep_conditioning=False)
    elif prefix + "encoder.down_blocks.1.conv.conv.bias" in sd:
        config.update(encoder_blocks=V095_ENCODER, decoder_blocks=V095_DECODER, timestep_conditioning=True)
    else:
        config.update(encoder_blocks=V090_BLOCKS, decoder_blocks=V091_DECODER, timestep_conditioning=True)
    return config


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + eps)


class CausalConv3d(nn.Module):
    """3x3x3 convolution; time is padded by repeating the first frame (causal) or the first and
    last frames (non-causal); space by ``padding_mode``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride=1, padding_mode: str = "zeros"):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2),
                              padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, causal: bool = True) -> torch.Tensor:
        if self.kernel > 1:
            if causal:
                x = torch.cat([x[:, :, :1].expand(-1, -1, self.kernel - 1, -1, -1), x], dim=2)
            else:
                half = (self.kernel - 1) // 2
                x = torch.cat([x[:, :, :1].expand(-1, -1, half, -1, -1), x,
                               x[:, :, -1:].expand(-1, -1, half, -1, -1)], dim=2)
        return self.conv(x)


class _ChannelLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str, inject_noise: bool = False, timestep: bool = False,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.norm_layer = norm
        if norm == "group_norm":
            self.norm1 = nn.GroupNorm(32, cin, eps=1e-6)
            self.norm2 = nn.GroupNorm(32, cout, eps=1e-6)
        self.conv1 = CausalConv3d(cin, cout, padding_mode=padding_mode)
        self.conv2 = CausalConv3d(cout, cout, padding_mode=padding_mode)
        self.inject_noise = inject_noise
        if inject_noise:
            self.per_channel_scale1 = nn.Parameter(torch.zeros(cin, 1, 1))
            self.per_channel_scale2 = nn.Parameter(torch.zeros(cin, 1, 1))
        if cin != cout:
            self.norm3 = _ChannelLayerNorm(cin)
            self.conv_shortcut = nn.Conv3d(cin, cout, 1)
        else:
            self.norm3 = self.conv_shortcut = None
        self.timestep = timestep
        if timestep:
            self.scale_shift_table = nn.Parameter(torch.zeros(4, cin))

    def _norm(self, x: torch.Tensor, which: int) -> torch.Tensor:
        if self.norm_layer == "group_norm":
            return (self.norm1 if which == 1 else self.norm2)(x)
        return pixel_norm(x)

    def _noise(self, x: torch.Tensor, scale: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(x.shape[-2:], generator=generator, device="cpu").to(x)
        return x + (noise[None] * scale.to(x))[None, :, None]

    def forward(self, x: torch.Tensor, causal: bool = True, temb: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        h = self._norm(x, 1)
        if self.timestep:
            b = x.shape[0]
            ada = self.scale_shift_table[None, :, :, None, None, None].to(x) + temb.reshape(b, 4, -1, 1, 1, 1)
            shift1, scale1, shift2, scale2 = ada.unbind(dim=1)
            h = h * (1 + scale1) + shift1
        h = self.conv1(F.silu(h), causal)
        if self.inject_noise:
            h = self._noise(h, self.per_channel_scale1, generator)
        h = self._norm(h, 2)
        if self.timestep:
            h = h * (1 + scale2) + shift2
        h = self.conv2(F.silu(h), causal)
        if self.inject_noise:
            h = self._noise(h, self.per_channel_scale2, generator)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(self.norm3(x))
        return x + h


class _TimeEmbedder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = _TimestepEmbedder(dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.timestep_embedder(timestep_embedding(t).to(dtype))


class MidBlock(nn.Module):
    def __init__(self, ch: int, layers: int, norm: str, inject_noise: bool = False, timestep: bool = False,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.time_embedder = _TimeEmbedder(ch * 4) if timestep else None
        self.res_blocks = nn.ModuleList(ResBlock(ch, ch, norm, inject_noise, timestep, padding_mode)
                                        for _ in range(layers))

    def forward(self, x: torch.Tensor, causal: bool = True, timestep: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        temb = None
        if self.time_embedder is not None:
            temb = self.time_embedder(timestep.flatten(), x.dtype).view(x.shape[0], -1, 1, 1, 1)
        for block in self.res_blocks:
            x = block(x, causal, temb, generator)
        return x


def _space_to_depth(x: torch.Tensor, stride) -> torch.Tensor:
    b, c, d, h, w = x.shape
    st, sh, sw = stride
    x = x.reshape(b, c, d // st, st, h // sh, sh, w // sw, sw)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * st * sh * sw, d // st, h // sh, w // sw)


def _depth_to_space(x: torch.Tensor, stride) -> torch.Tensor:
    b, c, d, h, w = x.shape
    st, sh, sw = stride
    n = st * sh * sw
    x = x.reshape(b, c // n, st, sh, sw, d, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c // n, d * st, h * sh, w * sw)


class SpaceToDepthDown(nn.Module):
    def __init__(self, cin: int, cout: int, stride, padding_mode: str = "zeros"):
        super().__init__()
        self.stride = stride
        self.group = cin * math.prod(stride) // cout
        self.conv = CausalConv3d(cin, cout // math.prod(stride), padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, causal: bool = True) -> torch.Tensor:
        if self.stride[0] == 2:
            x = torch.cat([x[:, :, :1], x], dim=2)
        skip = _space_to_depth(x, self.stride)
        skip = skip.unflatten(1, (-1, self.group)).mean(dim=2)
        return _space_to_depth(self.conv(x, causal), self.stride) + skip


class DepthToSpaceUp(nn.Module):
    def __init__(self, cin: int, stride, residual: bool = False, reduction: int = 1, padding_mode: str = "zeros"):
        super().__init__()
        self.stride = stride
        self.residual = residual
        self.reduction = reduction
        self.conv = CausalConv3d(cin, math.prod(stride) * cin // reduction, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, causal: bool = True) -> torch.Tensor:
        skip = None
        if self.residual:
            skip = _depth_to_space(x, self.stride).repeat(1, math.prod(self.stride) // self.reduction, 1, 1, 1)
            if self.stride[0] == 2:
                skip = skip[:, :, 1:]
        x = _depth_to_space(self.conv(x, causal), self.stride)
        if self.stride[0] == 2:
            x = x[:, :, 1:]
        return x if skip is None else x + skip


class Encoder(nn.Module):
    def __init__(self, blocks: list, base: int, latent_channels: int = 128, patch_size: int = 4,
                 norm: str = "pixel_norm", latent_log_var: str = "uniform", padding_mode: str = "zeros"):
        super().__init__()
        self.patch_size = patch_size
        self.norm_layer = norm
        self.latent_log_var = latent_log_var
        self.latent_channels = latent_channels
        self.conv_in = CausalConv3d(3 * patch_size ** 2, base, padding_mode=padding_mode)
        self.down_blocks = nn.ModuleList()
        ch = base
        for name, p in blocks:
            p = _params(p)
            if name == "res_x":
                block = MidBlock(ch, p["num_layers"], norm, padding_mode=padding_mode)
            elif name == "res_x_y":
                out = ch * p.get("multiplier", 2)
                block = ResBlock(ch, out, norm, padding_mode=padding_mode)
                ch = out
            elif name in ("compress_time", "compress_space", "compress_all", "compress_all_x_y"):
                out = ch * p.get("multiplier", 2) if name == "compress_all_x_y" else ch
                block = CausalConv3d(ch, out, stride=_STRIDES[name], padding_mode=padding_mode)
                ch = out
            elif name.endswith("_res"):
                out = ch * p.get("multiplier", 2)
                block = SpaceToDepthDown(ch, out, _STRIDES[name], padding_mode)
                ch = out
            else:
                raise ValueError(f"LTX-Video VAE: unknown encoder block {name!r}")
            self.down_blocks.append(block)
        if norm == "group_norm":
            self.conv_norm_out = nn.GroupNorm(32, ch, eps=1e-6)
        extra = {"per_channel": latent_channels, "uniform": 1, "constant": 1, "none": 0}[latent_log_var]
        self.conv_out = CausalConv3d(ch, latent_channels + extra, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pictures [B,3,1+8k,H,W] in -1..1 -> the latent means [B,128,1+k,H/32,W/32]."""
        p = self.patch_size
        b, c, f, h, w = x.shape
        x = x.reshape(b, c, f, h // p, p, w // p, p).permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, f, h // p, w // p)
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.conv_norm_out(x) if self.norm_layer == "group_norm" else pixel_norm(x)
        x = self.conv_out(F.silu(x))
        return x[:, :self.latent_channels]  # the means (the log-variance channels follow)


class Decoder(nn.Module):
    def __init__(self, blocks: list, width: int, latent_channels: int = 128, patch_size: int = 4,
                 norm: str = "pixel_norm", causal: bool = False, timestep_conditioning: bool = False,
                 padding_mode: str = "reflect"):
        super().__init__()
        self.patch_size = patch_size
        self.norm_layer = norm
        self.causal = causal
        self.conv_in = CausalConv3d(latent_channels, width, padding_mode=padding_mode)
        self.up_blocks = nn.ModuleList()
        ch = width
        for name, p in reversed(blocks):
            p = _params(p)
            if name in ("res_x", "attn_res_x"):
                block = MidBlock(ch, p["num_layers"], norm, p.get("inject_noise", False), timestep_conditioning,
                                 padding_mode)
            elif name == "res_x_y":
                out = ch // p.get("multiplier", 2)
                block = ResBlock(ch, out, norm, p.get("inject_noise", False), False, padding_mode)
                ch = out
            elif name in ("compress_time", "compress_space", "compress_all"):
                reduction = p.get("multiplier", 1) if name == "compress_all" else 1
                block = DepthToSpaceUp(ch, _STRIDES[name], p.get("residual", False), reduction, padding_mode)
                ch = ch // reduction
            else:
                raise ValueError(f"LTX-Video VAE: unknown decoder block {name!r}")
            self.up_blocks.append(block)
        if norm == "group_norm":
            self.conv_norm_out = nn.GroupNorm(32, ch, eps=1e-6)
        self.conv_out = CausalConv3d(ch, 3 * patch_size ** 2, padding_mode=padding_mode)
        self.timestep_conditioning = timestep_conditioning
        if timestep_conditioning:
            self.timestep_scale_multiplier = nn.Parameter(torch.tensor(1000.0))
            self.last_time_embedder = _TimeEmbedder(ch * 2)
            self.last_scale_shift_table = nn.Parameter(torch.zeros(2, ch))

    def forward(self, z: torch.Tensor, timestep: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        b = z.shape[0]
        x = self.conv_in(z, self.causal)
        scaled = None
        if self.timestep_conditioning:
            scaled = timestep.to(x) * self.timestep_scale_multiplier.to(x)
        for block in self.up_blocks:
            if isinstance(block, MidBlock):
                x = block(x, self.causal, scaled, generator)
            else:
                x = block(x, self.causal)
        x = self.conv_norm_out(x) if self.norm_layer == "group_norm" else pixel_norm(x)
        if self.timestep_conditioning:
            emb = self.last_time_embedder(scaled.flatten(), x.dtype).reshape(b, 2, -1, 1, 1, 1)
            shift, scale = (self.last_scale_shift_table[None, :, :, None, None, None].to(x) + emb).unbind(dim=1)
            x = x * (1 + scale) + shift
        x = self.conv_out(F.silu(x), self.causal)
        p = self.patch_size
        _, c, f, h, w = x.shape
        x = x.reshape(b, c // (p * p), p, p, f, h, w)  # channels (c, w-patch, h-patch)
        return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c // (p * p), f, h * p, w * p)


class Statistics(nn.Module):
    def __init__(self, channels: int = 128):
        super().__init__()
        for name in ("std-of-means", "mean-of-means", "mean-of-stds", "mean-of-stds_over_std-of-means", "channel"):
            self.register_buffer(name, torch.zeros(channels))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.get_buffer("mean-of-means").view(1, -1, 1, 1, 1).to(x)) / \
            self.get_buffer("std-of-means").view(1, -1, 1, 1, 1).to(x)

    def un_normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.get_buffer("std-of-means").view(1, -1, 1, 1, 1).to(x) + \
            self.get_buffer("mean-of-means").view(1, -1, 1, 1, 1).to(x)


class LTXVVAE(nn.Module):
    """encode(x [B,3,1+8k,H,W] in -1..1) -> normalised latent [B,128,1+k,H/32,W/32];
    decode(z) -> [B,3,1+8(t-1),32h,32w] in about -1..1."""

    def __init__(self, config: Mapping[str, Any], encoder_width: int, decoder_width: int):
        super().__init__()
        self.config = dict(config)
        self.timestep_conditioning = bool(config.get("timestep_conditioning", False))
        blocks = config.get("blocks")
        log_var = config.get("latent_log_var", "per_channel" if config.get("double_z", True) else "none")
        self.encoder = Encoder(config.get("encoder_blocks", blocks), encoder_width, config.get("latent_channels", 128),
                               config.get("patch_size", 4), config.get("norm_layer", "group_norm"), log_var,
                               config.get("spatial_padding_mode", "zeros"))
        self.decoder = Decoder(config.get("decoder_blocks", blocks), decoder_width, config.get("latent_channels", 128),
                               config.get("patch_size", 4), config.get("norm_layer", "group_norm"),
                               config.get("causal_decoder", False), self.timestep_conditioning,
                               config.get("spatial_padding_mode", "reflect"))
        self.per_channel_statistics = Statistics(config.get("latent_channels", 128))
        self.decode_timestep = 0.05
        self.decode_noise_scale = 0.025
        self.decode_seed = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if (x.shape[2] - 1) % 8:
            raise ValueError(f"LTX-Video VAE: encode takes 1 + 8k frames (1, 9, 17, ...), not {x.shape[2]}")
        return self.per_channel_statistics.normalize(self.encoder(x))

    def decode(self, z: torch.Tensor, timestep: float | None = None, noise_scale: float | None = None,
               seed: int | None = None) -> torch.Tensor:
        timestep = self.decode_timestep if timestep is None else timestep
        noise_scale = self.decode_noise_scale if noise_scale is None else noise_scale
        generator = torch.Generator().manual_seed(self.decode_seed if seed is None else seed)
        t = None
        if self.timestep_conditioning:
            noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z)
            z = noise * noise_scale + (1.0 - noise_scale) * z
            t = torch.full((z.shape[0],), float(timestep), device=z.device)
        return self.decoder(self.per_channel_statistics.un_normalize(z), t, generator)


def is_ltxv_vae(sd: Mapping[str, torch.Tensor], prefix: str = "") -> bool:
    return prefix + "per_channel_statistics.mean-of-means" in sd and prefix + "decoder.conv_in.conv.weight" in sd


def vae_config(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
    """The block config: the version guess, then the file's metadata ``config["vae"]``."""
    from .detection import metadata_config
    config = guess_config(sd, prefix)
    extra = metadata_config(sd, "vae")
    if extra:
        config.update(extra)
    return config


def build_vae(sd: Mapping[str, torch.Tensor], prefix: str = "") -> LTXVVAE:
    config = vae_config(sd, prefix)
    model = LTXVVAE(config, sd[prefix + "encoder.conv_in.conv.weight"].shape[0],
                    sd[prefix + "decoder.conv_in.conv.weight"].shape[0])
    return model


__all__ = ["LTXVVAE", "build_vae", "guess_config", "is_ltxv_vae", "vae_config"]


def load_video_vae(sd: Mapping[str, torch.Tensor], device: torch.device | None = None,
                   dtype: torch.dtype | None = None):
    """A :class:`~comfyui.models.video_vae.VideoVAE` (what a VAE socket carries) around the
    network built from ``sd`` (checkpoint keys without the ``vae.`` prefix; a ``.metadata``
    attribute with a ``config`` JSON is honoured)."""
    from .. import memory, ops
    from ..video_vae import VideoVAE
    with torch.device("meta"):
        network = build_vae(sd)
    dev = device or memory.vae_device()
    dtype = dtype or memory.vae_dtype(dev)
    missing, _ = ops.assign_state_dict(network, dict(sd), dtype)
    if missing:
        raise ValueError(f"LTX-Video VAE: weights missing for {len(missing)} tensors, e.g. {missing[:5]}")
    # activation estimates in bytes (upstream's LTX-Video figures)
    return VideoVAE(network, latent_channels=128, temporal_compression=8, spatial_compression=32, device=dev,
                    dtype=dtype,
                    memory_used_decode=lambda shape, dt: 900 * shape[2] * shape[3] * shape[4] * 512 * memory.dtype_size(dt),
                    memory_used_encode=lambda shape, dt: 70 * max(shape[2], 7) * shape[3] * shape[4] * memory.dtype_size(dt))
