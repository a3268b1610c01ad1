"""Z-Image Fun ControlNet (alibaba-pai ``Z-Image-Turbo-Fun-Controlnet-Union``): a model patch
that steers a Z-Image NextDiT with a control image (canny, depth, pose, HED, MLSD), loaded by
``ModelPatchLoader`` from ``models/model_patches`` and applied by ``QwenImageDiffsynthControlnet``.

The file's layout is diffusers' ``ZImageControlNetModel`` (separate ``to_q/to_k/to_v``,
``to_out.0``, ``norm_q/norm_k``): ``control_all_x_embedder.2-1`` (the control latent's 2x2
patches -> the model width), ``control_noise_refiner.{i}`` (plain modulated NextDiT blocks) and
``control_layers.{k}`` (NextDiT blocks with ``after_proj``, block 0 also ``before_proj``).
:func:`native_keys` fuses q/k/v as the main model's ``qkv``.

What it computes (the Fun ControlNet's own formulation, which diffusers follows): the control
image is VAE-encoded and put in model space (``process_in``), patchified and embedded like the
noisy latent, padded with the main model's ``x_pad_token`` and refined by
``control_noise_refiner`` (image positions, the timestep modulation). Those tokens, joined with
the main model's refined caption tokens, are the control sequence ``c``; control layer k runs on
the joint positions, ``c = before_proj(c) + tokens`` first (``tokens``: the main layers' input),
and ``after_proj(c)`` is the hint added, times ``strength``, to the whole joint sequence after
main layer ``k * stride``. ``stride`` is main layers / control layers rounded (30 / 6 = 5 for
the release, diffusers' ``control_layers_places`` [0, 5, ..., 25]). Upstream ComfyUI runs the
control layers on the image tokens alone and adds hints to the image tokens only; this follows
the network's authors (VideoX-Fun) and diffusers, against which it is tested.

Not handled (refused when loaded, with the reason): the 2.x Union files whose
``control_noise_refiner`` blocks are control blocks and whose control input has inpainting
channels (``control_in_dim`` 33).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .. import ops
from ..controlnet.base import common_upscale
from ..family import count_indexed
from .detect import NORM_EPS, PATCH_SIZE
from .model import JointTransformerBlock

MARKER = "control_all_x_embedder.2-1.weight"
LATENT_CHANNELS = 16


class UnsupportedPatchError(ValueError):
    """A model-patch file of a known kind in a variant this build does not run."""


def native_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's diffusers-style attention keys -> the NextDiT block's (``qkv``, ``out``,
    ``q_norm``/``k_norm``); the rest unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            block = key.split(".attention.to_q.")[0]
            out[block + ".attention.qkv.weight"] = torch.cat([sd[f"{block}.attention.to_{n}.weight"] for n in "qkv"])
            continue
        key = key.replace(".attention.to_out.0.", ".attention.out.")
        key = key.replace(".attention.norm_q.", ".attention.q_norm.").replace(".attention.norm_k.", ".attention.k_norm.")
        out[key] = value
    return out


def detect(sd: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """The network config of a Z-Image Fun ControlNet file (native keys), or None when the keys
    are not one. Raises :class:`UnsupportedPatchError` for the 2.x layout."""
    if MARKER not in sd or "control_layers.0.attention.qkv.weight" not in sd:
        return None
    dim, patch_in = sd[MARKER].shape
    control_in = patch_in // (PATCH_SIZE * PATCH_SIZE)
    if "control_noise_refiner.0.after_proj.weight" in sd or control_in != LATENT_CHANNELS:
        raise UnsupportedPatchError(
            f"Z-Image Fun ControlNet 2.x layout ({control_in} control input channels, control blocks in the "
            "noise refiner) is not supported; the Union 1.0 file (16 control channels) is")
    block = "control_layers.0."
    head_dim = sd[block + "attention.q_norm.weight"].shape[0]
    n_heads = sd[block + "attention.out.weight"].shape[1] // head_dim
    qkv_heads = sd[block + "attention.qkv.weight"].shape[0] // head_dim
    return {
        "dim": dim,
        "control_in_channels": control_in,
        "n_control_layers": count_indexed(sd, "control_layers."),
        "n_refiner_layers": count_indexed(sd, "control_noise_refiner."),
        "n_heads": n_heads,
        "n_kv_heads": (qkv_heads - n_heads) // 2,
        "head_dim": head_dim,
        "ffn_hidden": sd[block + "feed_forward.w1.weight"].shape[0],
        "adaln_dim": sd[block + "adaLN_modulation.0.weight"].shape[1],
        "silu_modulation": False,
        "norm_eps": NORM_EPS,
    }


class ControlBlock(JointTransformerBlock):
    """A modulated NextDiT block whose output also gives the hint ``after_proj(c)``; the first
    one adds the projected control tokens to the main layers' input (``before_proj``)."""

    def __init__(self, cfg: dict[str, Any], first: bool):
        super().__init__(cfg, True)
        dim = cfg["dim"]
        self.before_proj = ops.Linear(dim, dim) if first else None
        self.after_proj = ops.Linear(dim, dim)

    def forward_control(self, c: torch.Tensor, tokens: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        adaln: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hint, next c)."""
        if self.before_proj is not None:
            c = self.before_proj(c) + tokens
        c = self(c, cos, sin, adaln)
        return self.after_proj(c), c


class ZImageFunControlNet(nn.Module):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        p, dim = PATCH_SIZE, cfg["dim"]
        self.control_all_x_embedder = nn.ModuleDict(
            {f"{p}-1": ops.Linear(p * p * cfg["control_in_channels"], dim)})
        self.control_noise_refiner = nn.ModuleList(JointTransformerBlock(cfg, True)
                                                   for _ in range(cfg["n_refiner_layers"]))
        self.control_layers = nn.ModuleList(ControlBlock(cfg, i == 0) for i in range(cfg["n_control_layers"]))

    def embed(self, latent: torch.Tensor, pad_to: int, pad_token: torch.Tensor | None, cos: torch.Tensor,
              sin: torch.Tensor, adaln: torch.Tensor) -> torch.Tensor:
        """Control latent [B, C, H, W] (model space, even H/W) -> refined control image tokens
        [B, pad_to, dim], padded like the main model's image tokens; cos/sin: their positions."""
        b, c, h, w = latent.shape
        p = PATCH_SIZE
        tokens = latent.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).flatten(3).flatten(1, 2)
        tokens = self.control_all_x_embedder[f"{p}-1"](tokens)
        if pad_to > tokens.shape[1]:
            pad = pad_token.to(tokens).expand(b, pad_to - tokens.shape[1], -1)
            tokens = torch.cat((tokens, pad), dim=1)
        for block in self.control_noise_refiner:
            tokens = block(tokens, cos, sin, adaln)
        return tokens


class ZImageFunControlPatch:
    """The ``double_block`` patch that runs a :class:`ZImageFunControlNet` beside a NextDiT (see
    the module docstring). ``model_patch``: the ModelPatcher holding the network; ``vae`` and
    ``image`` [B, H, W, 3]: the control image, VAE-encoded at the size of the latent being
    denoised (rescaled, centre-cropped, when it differs); ``process_in``: the main model's latent
    format."""

    def __init__(self, model_patch: Any, vae: Any, image: torch.Tensor, strength: float, process_in: Any):
        self.model_patch, self.vae, self.image = model_patch, vae, image
        self.strength, self.process_in = strength, process_in
        self.latent: torch.Tensor | None = None
        self.state: tuple[torch.Tensor, int] | None = None  # (control sequence, next control layer)

    def models(self) -> list[Any]:
        return [self.model_patch]

    def control_latent(self, height: int, width: int) -> torch.Tensor:
        """The control image in model space at latent size (height, width), cached."""
        if self.latent is None or self.latent.shape[-2:] != (height, width):
            ratio = self.vae.spacial_compression_encode()
            pixels = common_upscale(self.image.movedim(-1, 1), width * ratio, height * ratio, "area", "center")
            self.latent = self.process_in(self.vae.encode(pixels.movedim(1, -1)).float())
        return self.latent

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        net: ZImageFunControlNet = self.model_patch.model
        diffusion_model, i = args["diffusion_model"], args["block_index"]
        n_layers, n_control = args["total_blocks"], net.cfg["n_control_layers"]
        stride = max(1, round(n_layers / n_control))
        if i % stride or i // stride >= n_control:
            return args
        tokens, start, n_cap = args["img"], args["img_input"], args["txt_len"]
        cos, sin = args["pe"]
        adaln = args["vec"]
        if i == 0:
            if net.cfg["dim"] != diffusion_model.cfg["dim"] or net.cfg["head_dim"] != diffusion_model.cfg["head_dim"]:
                raise ValueError(f"this Z-Image Fun ControlNet is for a model {net.cfg['dim']} wide "
                                 f"({net.cfg['head_dim']}-wide heads), not {diffusion_model.cfg['dim']} "
                                 f"({diffusion_model.cfg['head_dim']})")
            x = args["x"]
            latent = self.control_latent(x.shape[-2], x.shape[-1]).to(x)
            p = PATCH_SIZE
            latent = nn.functional.pad(latent, (0, (-latent.shape[-1]) % p, 0, (-latent.shape[-2]) % p),
                                       mode="circular")
            latent = latent.expand(x.shape[0], -1, -1, -1) if latent.shape[0] == 1 else latent[:x.shape[0]]
            control = net.embed(latent, tokens.shape[1] - n_cap, getattr(diffusion_model, "x_pad_token", None),
                                cos[:, n_cap:], sin[:, n_cap:], adaln)
            self.state = (torch.cat((start[:, :n_cap], control), dim=1), 0)
        c, k = self.state
        hint, c = net.control_layers[k].forward_control(c, start, cos, sin, adaln)
        self.state = (c, k + 1)
        args["img"] = tokens + hint * self.strength
        return args
