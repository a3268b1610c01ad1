"""Wan ATI's point tracks (WanTrackToVideo): parsing the tracks text, resampling the tracks to
the video's frames, and painting the start picture's latent features along them into the
latent video (``patch_motion``).

A track is up to 121 points ``{"x", "y"}`` in pixels of the output (24 fps; padded with
invisible points, longer ones cut). Each point becomes (time in [-1, 1], x, y relative to the
centre in units of half the short edge, visibility in {-1, 1}); the first point and then every
(120 / gcd(120, F))-th of the 120 others, each repeated F / gcd(120, F) times, give F + 1
points for F = length - 1 frames.
"""
from __future__ import annotations

import json
import math

from ._lazy import lazy

torch = lazy("torch")

TRACK_POINTS = 121


def parse_tracks(text: str) -> list:
    """Batches of tracks (lists of {"x", "y"} points) from the JSON ``text`` (single quotes
    allowed): one track, a list of tracks, or a list of such lists (one per batch item)."""
    try:
        data = json.loads(text.replace("'", '"'))
    except json.JSONDecodeError as e:
        raise ValueError(f"WanTrackToVideo: tracks is not valid JSON ({e})") from None
    if not isinstance(data, list) or not data:
        return []
    if isinstance(data[0], dict):
        data = [data]
    if isinstance(data[0], list) and data[0] and isinstance(data[0][0], dict):
        data = [data]
    for batch in data:
        for track in batch:
            if not all(isinstance(p, dict) and "x" in p and "y" in p for p in track):
                raise ValueError("WanTrackToVideo: every track point must be an object with x and y")
    return data


def track_tensor(batch: list, width: int, height: int, frames: int) -> torch.Tensor:
    """[frames + 1, N, 4] (time, x, y, visibility) of the N tracks of ``batch``."""
    points = torch.zeros(TRACK_POINTS, len(batch), 3)
    for n, track in enumerate(batch):
        kept = track[:TRACK_POINTS]
        points[:len(kept), n] = torch.tensor([[float(p["x"]), float(p["y"]), 1.0] for p in kept])
    xy = (points[..., :2] - torch.tensor([width / 2, height / 2])) / min(width, height) * 2
    visible = points[..., 2:] * 2 - 1
    time = torch.linspace(-1, 1, TRACK_POINTS).view(-1, 1, 1).expand_as(visible)
    out = torch.cat((time, xy, visible), dim=-1)
    g = math.gcd(120, frames)
    rest = torch.repeat_interleave(out[1:], frames // g, dim=0)[1::120 // g]
    return torch.cat((out[:1], rest), dim=0)


def patch_motion(tracks: torch.Tensor, video: torch.Tensor, temperature: float, topk: int):
    """One batch item: ``tracks`` [F + 1, N, 4], ``video`` [C, T, H, W] normalised latents
    (4 pictures per latent frame after the first). Each later latent frame gets the start
    frame's features sampled under each track's first point, spread around the track's mean
    visible position in that frame's 4 pictures with weights exp(-temperature * distance²)
    (the top ``topk`` tracks per position), over the video's own features faded by the total
    weight. Returns the mask [4, T, H, W] (1 for the first frame, else the total weight) and the
    features [C, T, H, W]."""
    _, t, h, w = video.shape
    n = tracks.shape[1]
    s = min(h, w)
    xy, visible = tracks[..., 1:3], tracks[..., 3:].clamp(0, 1)
    start = (xy[:1] / torch.tensor([w / s, h / s])).clamp(-1, 1)           # [1, N, 2] in [-1, 1]
    later_xy, later_visible = xy[1:].view(t - 1, 4, n, 2), visible[1:].view(t - 1, 4, n, 1)
    seen = later_visible.sum(1)                                             # [T-1, N, 1]
    mean_xy = (later_xy * later_visible).sum(1) / (seen + 1e-5)             # [T-1, N, 2]
    gx, gy = torch.linspace(-w / s, w / s, w), torch.linspace(-h / s, h / s, h)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)       # [H, W, 2] (x, y)
    distance = (mean_xy[:, None, None] - grid[None, :, :, None]).pow(2).sum(-1)   # [T-1, H, W, N]
    weight = torch.exp(-distance * temperature) * seen.clamp(0, 1).view(t - 1, 1, 1, n)
    top_weight, top_index = torch.topk(weight, k=min(topk, n), dim=-1)
    features = torch.nn.functional.grid_sample(video[:, :1].transpose(0, 1), start[None].to(video.dtype),
                                               mode="bilinear", padding_mode="zeros", align_corners=False)
    features = features[0, :, 0].transpose(0, 1)                            # [N, C]
    painted = (features[top_index] * top_weight[..., None]).sum(-2).permute(3, 0, 1, 2)   # [C, T-1, H, W]
    total = top_weight.sum(-1)                                              # [T-1, H, W]
    mixed = painted + video[:, 1:] * (1 - total.clamp(0, 1))
    mask = torch.cat((torch.ones_like(total[:1]), total), dim=0)
    return mask[None].expand(4, -1, -1, -1), torch.cat((video[:, :1], mixed), dim=1)
