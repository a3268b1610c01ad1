"""``comfy.utils``: progress bars, tensor resizing and checkpoint file helpers."""
from __future__ import annotations

import math
import zlib
from typing import Any, Callable

import torch

from comfyui.engine.progress import ProgressBar as _EngineProgressBar

PROGRESS_BAR_ENABLED = True
_progress_bar_hook: Callable | None = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = bool(enabled)


def set_progress_bar_global_hook(function: Callable | None) -> None:
    """Extra ``hook(value, total, preview, node_id)`` called on every update (besides the engine)."""
    global _progress_bar_hook
    _progress_bar_hook = function


class ProgressBar(_EngineProgressBar):
    """``comfy.utils.ProgressBar(total)``: ``update(n)`` / ``update_absolute(value, total, preview)``;
    reports to the running prompt's ``progress`` events and raises on interrupt."""

    def update_absolute(self, value, total=None, preview=None):
        super().update_absolute(value, total, preview)
        if _progress_bar_hook is not None:
            _progress_bar_hook(self.current, self.total, preview, self.node_id)


# ----------------------------------------------------------------------------------------
# checkpoint files
# ----------------------------------------------------------------------------------------

def load_torch_file(ckpt: str, safe_load: bool = False, device: Any = None, return_metadata: bool = False):
    """Load a state dict from .safetensors/.sft or a torch pickle (weights only; pickles that
    need code are refused). Same loader the model stack uses."""
    from comfyui.models.loading import load_torch_file as impl

    return impl(ckpt, safe_load=True, device=device, return_metadata=return_metadata)


def save_torch_file(sd: dict, ckpt: str, metadata: dict | None = None) -> None:
    from comfyui.models.loading import save_torch_file as impl

    impl(sd, ckpt, metadata=metadata)


def calculate_parameters(sd: dict, prefix: str = "") -> int:
    return sum(v.nelement() for k, v in sd.items() if k.startswith(prefix))


def weight_dtype(sd: dict, prefix: str = "") -> torch.dtype | None:
    counts: dict[torch.dtype, int] = {}
    for k, v in sd.items():
        if k.startswith(prefix) and isinstance(v, torch.Tensor):
            counts[v.dtype] = counts.get(v.dtype, 0) + v.nelement()
    return max(counts, key=counts.get) if counts else None


def state_dict_key_replace(state_dict: dict, keys_to_replace: dict) -> dict:
    for old, new in keys_to_replace.items():
        if old in state_dict:
            state_dict[new] = state_dict.pop(old)
    return state_dict


def state_dict_prefix_replace(state_dict: dict, replace_prefix: dict, filter_keys: bool = False) -> dict:
    out = {} if filter_keys else state_dict
    for old, new in replace_prefix.items():
        for k in [k for k in state_dict if k.startswith(old)]:
            out[new + k[len(old):]] = state_dict.pop(k)
    return out


def get_attr(obj: Any, attr: str) -> Any:
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj


def set_attr(obj: Any, attr: str, value: Any) -> Any:
    *parents, last = attr.split(".")
    for name in parents:
        obj = getattr(obj, name)
    prev = getattr(obj, last)
    setattr(obj, last, value)
    return prev


def set_attr_param(obj: Any, attr: str, value: torch.Tensor) -> Any:
    return set_attr(obj, attr, torch.nn.Parameter(value, requires_grad=False))


def copy_to_param(obj: Any, attr: str, value: torch.Tensor) -> None:
    get_attr(obj, attr).data.copy_(value)


def string_to_seed(data: str) -> int:
    return zlib.crc32(data.encode("utf-8")) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------
# LDM <-> diffusers UNet key names (packs build their own conversions from these)
# ----------------------------------------------------------------------------------------

def unet_to_diffusers(unet_config: dict) -> dict[str, str]:
    """{diffusers UNet key: LDM key} for a UNet config."""
    from comfyui.models.convert import unet_to_diffusers as impl

    return impl(unet_config)


_WB = ("weight", "bias")
# keys of a SpatialTransformer itself, and of each of its transformer blocks (same in both layouts)
UNET_MAP_ATTENTIONS = {f"{layer}.{p}" for layer in ("proj_in", "proj_out", "norm") for p in _WB}
TRANSFORMER_BLOCKS = ({f"norm{i}.{p}" for i in (1, 2, 3) for p in _WB}
                      | {f"{a}.{w}.weight" for a in ("attn1", "attn2") for w in ("to_q", "to_k", "to_v", "to_out.0")}
                      | {f"{a}.to_out.0.bias" for a in ("attn1", "attn2")}
                      | {f"ff.net.{w}.{p}" for w in ("0.proj", "2") for p in _WB})
# ResBlock: LDM key -> diffusers key
UNET_MAP_RESNET = {f"{ldm}.{p}": f"{diffusers}.{p}" for ldm, diffusers in (
    ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"), ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"), ("in_layers.0", "norm1"), ("out_layers.0", "norm2")) for p in _WB}
# (LDM key, diffusers key) of the layers outside the blocks
UNET_MAP_BASIC = {(f"{ldm}.{p}", f"{diffusers}.{p}") for ldm, diffusers in (
    ("label_emb.0.0", "class_embedding.linear_1"), ("label_emb.0.2", "class_embedding.linear_2"),
    ("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2"),
    ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out"),
    ("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2")) for p in _WB}


# ----------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------

def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    n = tensor.shape[dim]
    if n > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if n < batch_size:
        reps = [1] * tensor.ndim
        reps[dim] = math.ceil(batch_size / n)
        return tensor.repeat(reps).narrow(dim, 0, batch_size)
    return tensor


def resize_to_batch_size(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Pick evenly spaced items (down) or spread existing ones (up) to reach ``batch_size``."""
    n = tensor.shape[0]
    if n == batch_size:
        return tensor
    if batch_size <= 1:
        return tensor[:batch_size]
    if n == 1:
        return tensor.expand((batch_size,) + tuple(tensor.shape[1:])).clone()
    idx = [min(n - 1, round(i * (n - 1) / (batch_size - 1))) for i in range(batch_size)]
    return tensor[idx]


# ----------------------------------------------------------------------------------------
# resizing ([B, C, H, W] channels-first, as ComfyUI's common_upscale)
# ----------------------------------------------------------------------------------------

def _source_coords(out_len: int, in_len: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos = (torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) * (in_len / out_len) - 0.5
    pos = pos.clamp(0, in_len - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=in_len - 1)
    return lo, hi, pos - lo


def _slerp(b1: torch.Tensor, b2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of vectors along the last dim; magnitudes are lerped."""
    n1 = b1.norm(dim=-1, keepdim=True)
    n2 = b2.norm(dim=-1, keepdim=True)
    u1 = b1 / n1.clamp_min(1e-12)
    u2 = b2 / n2.clamp_min(1e-12)
    dot = (u1 * u2).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    res = (torch.sin((1 - r) * omega) / so) * u1 + (torch.sin(r * omega) / so) * u2
    res = res * (n1 * (1 - r) + n2 * r)
    linear = b1 * (1 - r) + b2 * r
    # nearly parallel / opposite / zero vectors: slerp is ill-conditioned, use a lerp
    bad = (dot.abs() > 1 - 1e-5) | (n1 < 1e-12) | (n2 < 1e-12) | ~torch.isfinite(res).all(-1, keepdim=True)
    return torch.where(bad, linear, res)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize [B,C,H,W] treating each pixel's channel vector as a direction (slerp), per axis."""
    dtype = samples.dtype
    x = samples.float().movedim(1, -1)  # B,H,W,C
    lo, hi, r = _source_coords(width, x.shape[2], x.device)
    x = _slerp(x[:, :, lo], x[:, :, hi], r.view(1, 1, -1, 1))
    lo, hi, r = _source_coords(height, x.shape[1], x.device)
    x = _slerp(x[:, lo], x[:, hi], r.view(1, -1, 1, 1))
    return x.movedim(-1, 1).to(dtype)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos resize through PIL, per channel in float mode (values are not clamped)."""
    import numpy as np
    from PIL import Image

    out = torch.empty((samples.shape[0], samples.shape[1], height, width), dtype=samples.dtype)
    src = samples.detach().float().cpu().numpy()
    for b in range(src.shape[0]):
        for c in range(src.shape[1]):
            img = Image.fromarray(np.ascontiguousarray(src[b, c], dtype=np.float32))  # mode "F"
            out[b, c] = torch.from_numpy(np.array(img.resize((width, height), Image.Resampling.LANCZOS)))
    return out.to(samples.device)


def common_upscale(samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str) -> torch.Tensor:
    """Resize channels-first samples ([B,C,H,W], or [B,C,T,H,W] frame by frame).

    ``upscale_method``: nearest-exact, bilinear, area, bicubic, lanczos, bislerp.
    ``crop="center"`` first crops to the target aspect ratio; ``"disabled"`` stretches.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    orig_shape = tuple(samples.shape)
    if samples.ndim == 5:
        b, c, t, h, w = orig_shape
        samples = samples.movedim(2, 1).reshape(b * t, c, h, w)
    elif samples.ndim != 4:
        raise ValueError(f"common_upscale expects [B,C,H,W] or [B,C,T,H,W], got shape {orig_shape}")
    s = samples
    if crop == "center":
        old_w, old_h = s.shape[-1], s.shape[-2]
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        s = s.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
    if upscale_method == "bislerp":
        out = bislerp(s, width, height)
    elif upscale_method == "lanczos":
        out = lanczos(s, width, height)
    elif upscale_method in ("nearest-exact", "nearest", "bilinear", "area", "bicubic"):
        out = torch.nn.functional.interpolate(s, size=(height, width), mode=upscale_method)
    else:
        raise ValueError(f"unknown upscale_method {upscale_method!r}")
    if len(orig_shape) == 5:
        out = out.reshape(orig_shape[0], orig_shape[2], orig_shape[1], height, width).movedim(1, 2)
    return out


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def get_tiled_scale_steps(width: int, height: int, tile_x: int, tile_y: int, overlap: int) -> int:
    return len(_tile_starts(height, tile_y, overlap)) * len(_tile_starts(width, tile_x, overlap))


@torch.inference_mode()
def tiled_scale(samples: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], tile_x: int = 64,
                tile_y: int = 64, overlap: int = 8, upscale_amount: float = 4, out_channels: int = 3,
                output_device: Any = "cpu", pbar: Any = None) -> torch.Tensor:
    """Run ``function`` (e.g. an upscale model) over overlapping tiles of [B,C,H,W] and blend
    the results with linear feathering over the overlap."""
    B, _C, H, W = samples.shape
    out_h, out_w = round(H * upscale_amount), round(W * upscale_amount)
    output = torch.empty((B, out_channels, out_h, out_w), device=output_device)
    ys, xs = _tile_starts(H, tile_y, overlap), _tile_starts(W, tile_x, overlap)
    feather = max(0, round(overlap * upscale_amount))
    for b in range(B):
        s = samples[b:b + 1]
        acc = torch.zeros((1, out_channels, out_h, out_w), device=output_device)
        div = torch.zeros_like(acc)
        for y in ys:
            for x in xs:
                tile = s[:, :, y:y + tile_y, x:x + tile_x]
                ps = function(tile).to(output_device)
                ph, pw = ps.shape[-2], ps.shape[-1]
                mask = torch.ones((1, 1, ph, pw), device=output_device)
                f_y, f_x = min(feather, ph // 2), min(feather, pw // 2)
                # feather only edges that overlap a neighbouring tile
                for t in range(f_y):
                    w = (t + 1) / (f_y + 1)
                    if y > 0:
                        mask[:, :, t, :] *= w
                    if y + tile_y < H:
                        mask[:, :, ph - 1 - t, :] *= w
                for t in range(f_x):
                    w = (t + 1) / (f_x + 1)
                    if x > 0:
                        mask[:, :, :, t] *= w
                    if x + tile_x < W:
                        mask[:, :, :, pw - 1 - t] *= w
                oy, ox = round(y * upscale_amount), round(x * upscale_amount)
                acc[:, :, oy:oy + ph, ox:ox + pw] += ps * mask
                div[:, :, oy:oy + ph, ox:ox + pw] += mask
                if pbar is not None:
                    pbar.update(1)
        output[b:b + 1] = acc / div.clamp_min(1e-8)
    return output


def tiled_scale_multidim(samples: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], tile=(64, 64),
                         overlap: int = 8, upscale_amount: float = 4, out_channels: int = 3,
                         output_device: Any = "cpu", downscale: bool = False, index_formulas: Any = None,
                         pbar: Any = None) -> torch.Tensor:
    """:func:`tiled_scale` with upstream's n-dimensional signature; two spatial dims (``tile``
    is ``(tile_y, tile_x)``), upscaling only."""
    if len(tile) != 2 or downscale or index_formulas is not None:
        from comfyui.compat._unsupported import NotSupportedError

        raise NotSupportedError("comfy.utils.tiled_scale_multidim: only 2-D upscaling tiles are supported by comfyui")
    return tiled_scale(samples, function, tile_x=tile[1], tile_y=tile[0], overlap=overlap,
                       upscale_amount=upscale_amount, out_channels=out_channels, output_device=output_device, pbar=pbar)
