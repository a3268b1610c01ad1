"""AutoencoderKL (the SD1/SD2/SDXL VAE) with the original LDM key names (``encoder.*``,
``decoder.*``, ``quant_conv``, ``post_quant_conv``) and the :class:`VAE` object that VAE
sockets carry.

``VAE.decode(latent [B,4,h,w]) -> IMAGE [B,8h,8w,3]`` in 0..1 and
``VAE.encode(IMAGE [B,H,W,3]) -> latent [B,4,H/8,W/8]`` (raw VAE latents, i.e. *not*
multiplied by the model's scale factor: that is ``BaseModel.process_latent_in``). Encoding
is deterministic (the posterior mean). ``decode_tiled`` / ``encode_tiled`` process
overlapping tiles and blend them with feathered masks.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import memory, ops
from .patcher import ModelPatcher

log = logging.getLogger(__name__)


def _norm(ch: int) -> nn.Module:
    return ops.GroupNorm(32, ch, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = ops.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = ops.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = ops.Conv2d(in_channels, out_channels, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = ops.Conv2d(channels, channels, 1)
        self.k = ops.Conv2d(channels, channels, 1)
        self.v = ops.Conv2d(channels, channels, 1)
        self.proj_out = ops.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, 1, c, hh * ww).transpose(2, 3)
        k = self.k(h).reshape(b, 1, c, hh * ww).transpose(2, 3)
        v = self.v(h).reshape(b, 1, c, hh * ww).transpose(2, 3)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(2, 3).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    pass


class _Mid(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block_1 = ResnetBlock(ch)
        self.attn_1 = AttnBlock(ch)
        self.block_2 = ResnetBlock(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, in_channels: int, z_channels: int,
                 double_z: bool = True):
        super().__init__()
        self.conv_in = ops.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(ch_mult):
            level = _Level()
            block_in = ch * in_mult[i]
            block_out = ch * mult
            level.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in)
        self.norm_out = _norm(block_in)
        self.conv_out = ops.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, out_ch: int, z_channels: int):
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = ops.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in)
        ups = []
        for i in reversed(range(len(ch_mult))):
            level = _Level()
            level.block = nn.ModuleList()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
            if i != 0:
                level.upsample = Upsample(block_in)
            ups.insert(0, level)
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(block_in)
        self.conv_out = ops.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch: int = 128, ch_mult: tuple[int, ...] = (1, 2, 4, 4), num_res_blocks: int = 2,
                 in_channels: int = 3, out_ch: int = 3, z_channels: int = 4, embed_dim: int = 4,
                 quant_conv: bool = True):
        super().__init__()
        self.config = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, in_channels=in_channels,
                           out_ch=out_ch, z_channels=z_channels, embed_dim=embed_dim, quant_conv=quant_conv)
        self.encoder = Encoder(ch, tuple(ch_mult), num_res_blocks, in_channels, z_channels)
        self.decoder = Decoder(ch, tuple(ch_mult), num_res_blocks, out_ch, z_channels)
        # Flux's (and SD3's) 16-channel VAE has no 1x1 convs around the latent
        self.quant_conv = ops.Conv2d(2 * z_channels, 2 * embed_dim, 1) if quant_conv else None
        self.post_quant_conv = ops.Conv2d(embed_dim, z_channels, 1) if quant_conv else None
        self.embed_dim = embed_dim
        self.downscale = 2 ** (len(ch_mult) - 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, _logvar = moments.chunk(2, dim=1)
        return mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


def vae_config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read an AutoencoderKL config back from LDM-layout keys."""
    if "encoder.conv_in.weight" not in sd and "decoder.conv_in.weight" not in sd:
        raise ValueError("not an AutoencoderKL state dict (no encoder.conv_in / decoder.conv_in)")
    ch = sd["decoder.conv_out.weight"].shape[1] if "decoder.conv_out.weight" in sd else sd["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("decoder.up.")})
    ch_mult = []
    for lvl in levels:
        w = sd[f"decoder.up.{lvl}.block.0.conv2.weight"]
        ch_mult.append(w.shape[0] // ch)
    nblocks = len({k.split(".")[4] for k in sd if k.startswith("decoder.up.0.block.")})
    z_channels = sd["decoder.conv_in.weight"].shape[1]
    embed_dim = sd["post_quant_conv.weight"].shape[1] if "post_quant_conv.weight" in sd else z_channels
    in_ch = sd["encoder.conv_in.weight"].shape[1] if "encoder.conv_in.weight" in sd else 3
    return dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=nblocks - 1, in_channels=in_ch,
                out_ch=sd["decoder.conv_out.weight"].shape[0], z_channels=z_channels, embed_dim=embed_dim,
                quant_conv="post_quant_conv.weight" in sd or "quant_conv.weight" in sd)


def convert_vae_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept LDM keys; convert diffusers AutoencoderKL keys and 2-D (linear) attention
    weights to the LDM layout."""
    if any(k.startswith("encoder.down_blocks.") or k.startswith("decoder.up_blocks.") for k in sd):
        from .convert import diffusers_vae_to_ldm
        sd = diffusers_vae_to_ldm(sd)
    out = {}
    for k, v in sd.items():
        if (".attn_1." in k) and k.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]
        out[k] = v
    return out


def tiled_scale(samples: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], tile_x: int, tile_y: int,
                overlap: int, upscale: float, out_channels: int, output_device: torch.device,
                pbar: Any = None) -> torch.Tensor:
    """Run ``function`` on overlapping tiles of ``samples`` [B,C,H,W] (tile sizes in input
    pixels) and blend the ``upscale``-times larger outputs with linear feathering."""
    B, _, H, W = samples.shape
    out_h, out_w = round(H * upscale), round(W * upscale)
    output = torch.zeros((B, out_channels, out_h, out_w), device=output_device)
    tile_x, tile_y = min(tile_x, W), min(tile_y, H)
    overlap = min(overlap, tile_x // 4, tile_y // 4)

    def positions(size: int, tile: int) -> list[int]:
        if size <= tile:
            return [0]
        step = tile - overlap
        pos = list(range(0, size - tile, step)) + [size - tile]
        return sorted(set(pos))

    for b in range(B):
        s = samples[b:b + 1]
        out = torch.zeros((1, out_channels, out_h, out_w), device=output_device)
        div = torch.zeros((1, 1, out_h, out_w), device=output_device)
        for y in positions(H, tile_y):
            for x in positions(W, tile_x):
                piece = s[:, :, y:y + tile_y, x:x + tile_x]
                ps = function(piece).to(output_device).float()
                mask = torch.ones((1, 1, ps.shape[2], ps.shape[3]), device=output_device)
                feather = round(overlap * upscale)
                for t in range(feather):
                    a = (t + 1) / (feather + 1)
                    if y > 0:
                        mask[:, :, t, :] *= a
                    if y + tile_y < H:
                        mask[:, :, mask.shape[2] - 1 - t, :] *= a
                    if x > 0:
                        mask[:, :, :, t] *= a
                    if x + tile_x < W:
                        mask[:, :, :, mask.shape[3] - 1 - t] *= a
                oy, ox = round(y * upscale), round(x * upscale)
                out[:, :, oy:oy + ps.shape[2], ox:ox + ps.shape[3]] += ps * mask
                div[:, :, oy:oy + ps.shape[2], ox:ox + ps.shape[3]] += mask
                if pbar is not None:
                    pbar.update(1)
        output[b:b + 1] = out / div.clamp_min(1e-8)
    return output


class VAE:
    """What a VAE socket carries. Build with ``VAE(sd=state_dict)`` (LDM or diffusers keys)."""

    def __init__(self, sd: dict[str, torch.Tensor] | None = None, device: torch.device | None = None,
                 config: dict[str, Any] | None = None, dtype: torch.dtype | None = None):
        if sd is not None:
            sd = convert_vae_state_dict(sd)
        if config is None:
            if sd is None:
                raise ValueError("VAE needs a state dict or a config")
            config = vae_config_from_state_dict(sd)
        with torch.device("meta"):
            self.first_stage_model = AutoencoderKL(**config)
        self.first_stage_model.eval().requires_grad_(False)
        self.latent_channels = config["embed_dim"]
        self.downscale_ratio = self.first_stage_model.downscale
        self.upscale_ratio = self.downscale_ratio
        self.output_device = memory.intermediate_device()
        self.device = device or memory.vae_device()
        offload = memory.vae_offload_device()
        self.vae_dtype = dtype or memory.vae_dtype(self.device)
        missing, unexpected = ops.assign_state_dict(self.first_stage_model, sd or {}, self.vae_dtype)
        if missing:
            log.warning("VAE: missing keys %s", missing[:10])
        if unexpected:
            log.debug("VAE: unexpected keys %s", unexpected[:10])
        self.patcher = ModelPatcher(self.first_stage_model, load_device=self.device, offload_device=offload)
        # activation memory estimates (bytes per latent/pixel element), as in ComfyUI
        self.memory_used_decode = lambda shape, dtype: (2178 * shape[2] * shape[3] * 64) * memory.dtype_size(dtype)
        self.memory_used_encode = lambda shape, dtype: (1767 * shape[2] * shape[3]) * memory.dtype_size(dtype)

    def get_sd(self) -> dict[str, torch.Tensor]:
        return self.first_stage_model.state_dict()

    def spacial_compression_decode(self) -> int:
        return self.upscale_ratio

    def spacial_compression_encode(self) -> int:
        return self.downscale_ratio

    latent_dim = 2  # image latents; video VAEs (models/video_vae.py) have 3

    def temporal_compression_decode(self) -> None:
        return None

    def _batch_size(self, per_item: int) -> int:
        free = memory.get_free_memory(self.device)
        return max(1, int(free // max(per_item, 1)))

    # --------------------------------------------------------------------------- decode
    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(self.device, self.vae_dtype)
        out = self.first_stage_model.decode(z)
        return torch.clamp((out.float() + 1.0) / 2.0, 0.0, 1.0)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Raw VAE latent [B,C,h,w] -> IMAGE [B,H,W,3] float32 in 0..1 (intermediate device)."""
        per = self.memory_used_decode(samples.shape, self.vae_dtype)
        memory.load_models_gpu([self.patcher], memory_required=per)
        batch = self._batch_size(per)
        try:
            with torch.inference_mode():
                outs = []
                for i in range(0, samples.shape[0], batch):
                    outs.append(self._decode(samples[i:i + batch]).to(self.output_device))
                pixels = torch.cat(outs)
        except torch.cuda.OutOfMemoryError:
            log.warning("VAE decode ran out of memory; retrying with tiled decoding")
            return self.decode_tiled(samples)
        return pixels.movedim(1, -1)

    def decode_tiled(self, samples: torch.Tensor, tile_x: int = 64, tile_y: int = 64, overlap: int = 16) -> torch.Tensor:
        """Tiled decode; tile sizes and overlap in latent pixels. Returns IMAGE."""
        memory.load_models_gpu([self.patcher])
        with torch.inference_mode():
            out = tiled_scale(samples, lambda a: self._decode(a) * 2.0 - 1.0, tile_x, tile_y, overlap,
                              self.upscale_ratio, 3, self.output_device)
        return ((out + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)

    # --------------------------------------------------------------------------- encode
    def _crop(self, pixels: torch.Tensor) -> torch.Tensor:
        r = self.downscale_ratio
        h = (pixels.shape[1] // r) * r
        w = (pixels.shape[2] // r) * r
        if pixels.shape[1] != h or pixels.shape[2] != w:
            oy = (pixels.shape[1] % r) // 2
            ox = (pixels.shape[2] % r) // 2
            pixels = pixels[:, oy:oy + h, ox:ox + w, :]
        return pixels

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.vae_dtype) * 2.0 - 1.0
        return self.first_stage_model.encode(x).float()

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """IMAGE [B,H,W,C] (C>=3, extra channels dropped) -> raw VAE latent [B,4,H/8,W/8]."""
        pixels = self._crop(pixels[..., :3]).movedim(-1, 1)
        per = self.memory_used_encode(pixels.shape, self.vae_dtype)
        memory.load_models_gpu([self.patcher], memory_required=per)
        batch = self._batch_size(per)
        try:
            with torch.inference_mode():
                outs = []
                for i in range(0, pixels.shape[0], batch):
                    outs.append(self._encode(pixels[i:i + batch]).to(self.output_device))
                return torch.cat(outs)
        except torch.cuda.OutOfMemoryError:
            log.warning("VAE encode ran out of memory; retrying with tiled encoding")
            return self.encode_tiled(pixels.movedim(1, -1))

    def encode_tiled(self, pixels: torch.Tensor, tile_x: int = 512, tile_y: int = 512, overlap: int = 64) -> torch.Tensor:
        """Tiled encode; tile sizes and overlap in image pixels. Returns raw latent."""
        pixels = self._crop(pixels[..., :3]).movedim(-1, 1)
        memory.load_models_gpu([self.patcher])
        with torch.inference_mode():
            return tiled_scale(pixels, self._encode, tile_x, tile_y, overlap, 1.0 / self.downscale_ratio,
                               self.latent_channels, self.output_device)


class PixelSpaceConversion(nn.Module):
    """The pixel_space "VAE" network: no weights, the latent is the image itself."""
    downscale = 1

    def get_dtype(self) -> torch.dtype:
        return torch.float32


class PixelSpaceVAE(VAE):
    """VAELoader's ``pixel_space`` entry (for pixel-space models such as Chroma Radiance): encode
    maps an IMAGE [B,H,W,C] in [0, 1] to the latent [B,3,H,W] in [-1, 1], decode maps back
    (clamped). Nothing to load or tile."""

    def __init__(self):
        self.first_stage_model = PixelSpaceConversion()
        self.latent_channels = 3
        self.downscale_ratio = self.upscale_ratio = 1
        self.output_device = memory.intermediate_device()
        self.device = memory.vae_device()
        self.vae_dtype = torch.float32
        self.patcher = ModelPatcher(self.first_stage_model, load_device=self.device,
                                    offload_device=memory.vae_offload_device())

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels[..., :3].movedim(-1, 1).float() * 2.0 - 1.0).to(self.output_device)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return ((samples.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).to(self.output_device)

    def encode_tiled(self, pixels: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return self.encode(pixels)

    def decode_tiled(self, samples: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return self.decode(samples)
