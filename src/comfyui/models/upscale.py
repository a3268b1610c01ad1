"""Image upscale models (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, OmniSR, ... : every single-image
architecture spandrel knows) and tiled inference that keeps memory bounded by the tile size.

``load_upscale_model(path)`` returns spandrel's ``ImageModelDescriptor`` (what an
UPSCALE_MODEL socket carries, as in ComfyUI). ``upscale_image(model, image)`` runs it on an
IMAGE [B,H,W,C] tile by tile:

* tiles of at most ``tile`` input pixels a side, ``overlap`` pixels shared between
  neighbours, spread evenly so every tile has the same size;
* each tile's output is blended with a linear ramp over the overlap. The ramps are
  separable (a row profile times a column profile) and the tile grid is a product grid, so
  the sum of the weights is ``Dy(y) * Dx(x)``: the weights are normalised with two 1-D
  vectors and written straight into the preallocated [B, H*s, W*s, C] output. No full-size
  weight buffer, no channel-first copy of the output: the working memory is one tile's
  activations, whatever the image size;
* a device out-of-memory error halves the tile (down to 64 px) and starts over;
* progress goes through :class:`comfyui.engine.progress.ProgressBar` (one step per tile),
  which also raises when the prompt is interrupted.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import torch

from . import memory
from .loading import ModelFileError, load_torch_file

log = logging.getLogger(__name__)

MIN_TILE = 64


def load_upscale_model(path: str) -> Any:
    """An upscale model file (.pth/.pt/.safetensors/.ckpt) as a spandrel ImageModelDescriptor."""
    from spandrel import ImageModelDescriptor, ModelLoader
    from spandrel import UnsupportedModelError

    sd = load_torch_file(path)
    if "params_ema" in sd and isinstance(sd["params_ema"], dict):  # BasicSR / Real-ESRGAN releases
        sd = sd["params_ema"]
    elif "params" in sd and isinstance(sd["params"], dict):
        sd = sd["params"]
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel (SwinIR, ...)
        sd = {k[len("module."):]: v for k, v in sd.items()}
    try:
        desc = ModelLoader().load_from_state_dict(sd)
    except UnsupportedModelError as exc:
        raise ModelFileError(f"{os.path.basename(path)}: not an upscale model architecture spandrel knows ({exc})") from exc
    if not isinstance(desc, ImageModelDescriptor):
        raise ModelFileError(f"{os.path.basename(path)}: Upscale model must be a single-image model "
                             f"(got {type(desc).__name__}).")
    return desc.eval()


def tile_positions(size: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """(start positions, tile length) covering ``size`` with equal tiles of at most ``tile``
    sharing at least ``overlap`` pixels."""
    if size <= tile:
        return [0], size
    overlap = min(overlap, tile // 2)
    n = math.ceil((size - overlap) / (tile - overlap))
    length = min(tile, math.ceil((size + (n - 1) * overlap) / n))
    if n == 1:
        return [0], size
    return [round(i * (size - length) / (n - 1)) for i in range(n)], length


def _profiles(size: int, positions: list[int], length: int, scale: int, overlap: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-tile 1-D blend ramps (output pixels) and their sum over the tiles."""
    out_len = length * scale
    total = torch.zeros(size * scale, dtype=torch.float32)
    profs = []
    for i, p in enumerate(positions):
        w = torch.ones(out_len, dtype=torch.float32)
        if len(positions) > 1:
            prev_end = positions[i - 1] + length if i > 0 else None
            nxt = positions[i + 1] if i + 1 < len(positions) else None
            if prev_end is not None:  # ramp up over the part shared with the previous tile
                f = max(1, min(overlap, prev_end - p) * scale)
                w[:f] = torch.arange(1, f + 1, dtype=torch.float32) / (f + 1)
            if nxt is not None:
                f = max(1, min(overlap, p + length - nxt) * scale)
                w[out_len - f:] = torch.minimum(w[out_len - f:], torch.arange(f, 0, -1, dtype=torch.float32) / (f + 1))
        profs.append(w)
        total[p * scale:p * scale + out_len] += w
    return profs, total


def _model_call(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    cin = getattr(model, "input_channels", 3)
    cout = getattr(model, "output_channels", 3)

    def run(x: torch.Tensor) -> torch.Tensor:
        if cin == 1 and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        elif cin == 4 and x.shape[1] == 3:
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        y = model(x)
        if cout == 1:
            y = y.expand(-1, 3, -1, -1)
        elif y.shape[1] == 4:
            y = y[:, :3]
        return y

    return run


def _upscale_tiled(run: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int, tile: int,
                   overlap: int, device: torch.device, dtype: torch.dtype, pbar: Any,
                   channels_last: bool) -> torch.Tensor:
    B, H, W, C = image.shape
    ys, th = tile_positions(H, tile, overlap)
    xs, tw = tile_positions(W, tile, overlap)
    py, dy = _profiles(H, ys, th, scale, overlap)
    px, dx = _profiles(W, xs, tw, scale, overlap)
    out = torch.zeros((B, H * scale, W * scale, 3), dtype=torch.float32)
    from comfyui.engine.progress import throw_if_interrupted
    for b in range(B):
        for iy, y in enumerate(ys):
            for ix, x in enumerate(xs):
                throw_if_interrupted()
                piece = image[b, y:y + th, x:x + tw, :3].permute(2, 0, 1).unsqueeze(0)
                piece = piece.to(device=device, dtype=dtype)
                if channels_last:
                    piece = piece.contiguous(memory_format=torch.channels_last)
                else:
                    piece = piece.contiguous()
                with torch.inference_mode():
                    res = run(piece)
                res = res[0].to(device="cpu", dtype=torch.float32).permute(1, 2, 0)  # [h, w, 3]
                oy, ox = y * scale, x * scale
                wy = py[iy] / dy[oy:oy + res.shape[0]]
                wx = px[ix] / dx[ox:ox + res.shape[1]]
                res = res * wy[:, None, None] * wx[None, :, None]
                out[b, oy:oy + res.shape[0], ox:ox + res.shape[1], :] += res
                del res, piece
                if pbar is not None:
                    pbar.update(1)
    return out


def upscale_image(model: Any, image: torch.Tensor, tile: int = 512, overlap: int = 32,
                  device: torch.device | None = None, progress: bool = True,
                  channels_last: bool | None = None) -> torch.Tensor:
    """Upscale an IMAGE [B,H,W,C] (0..1) with a spandrel model, in tiles; returns [B,H*s,W*s,3]."""
    from comfyui.engine.progress import ProgressBar

    device = torch.device(device) if device is not None else memory.get_torch_device()
    scale = int(model.scale)
    net = model.model
    weights = sum(p.nelement() * p.element_size() for p in net.parameters())
    need = weights + (512 * 512 * 3) * image.element_size() * max(scale, 1.0) * 384.0 + image.nelement() * image.element_size()
    if device.type != "cpu":
        memory.free_memory(int(need), device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    first = next(iter(net.parameters()), None)
    dtype = first.dtype if first is not None else torch.float32
    model.to(device)
    prev_format = None
    if channels_last:
        net.to(memory_format=torch.channels_last)
        prev_format = torch.contiguous_format
    run = _model_call(model)
    try:
        while True:
            ys, _ = tile_positions(image.shape[1], tile, overlap)
            xs, _ = tile_positions(image.shape[2], tile, overlap)
            pbar = ProgressBar(image.shape[0] * len(ys) * len(xs)) if progress else None
            try:
                return _upscale_tiled(run, image, scale, tile, overlap, device, dtype, pbar,
                                      channels_last).clamp_(0.0, 1.0)
            except torch.OutOfMemoryError:
                if tile // 2 < MIN_TILE:
                    raise
                tile //= 2
                log.warning("upscale: out of memory, retrying with tile %d", tile)
                memory.soft_empty_cache(force=True)
    finally:
        if prev_format is not None:
            net.to(memory_format=prev_format)
        model.to(memory.unet_offload_device() if device.type != "cpu" else torch.device("cpu"))
