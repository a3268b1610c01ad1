"""ControlNets for Flux.1, in the layouts upstream loads.

* **XLabs** (``controlnet_blocks.N`` + BFL-named ``double_blocks``, ``input_hint_block``): the
  hint image (0..1, scaled to -1..1) goes through an 8x-downscaling conv stack, is cut into
  2x2 patches and added to the image tokens (``pos_embed_input``) before the double blocks.
  Its residuals cycle over the Flux blocks (block i gets ControlNet block i mod N).
* **Mistoline** (``controlnet_blocks.N.linear``, ``single_controlnet_blocks``,
  ``input_cond_block``): XLabs with SiLU after each output Linear and another hint encoder.
* **InstantX / Shakker union** (diffusers ``FluxControlNetModel``: ``controlnet_x_embedder``,
  converted with the family's key map): the hint is a VAE-encoded latent (Flux latent
  format), patched like the input; a 17-channel one (inpainting) has a mask channel; a union
  ControlNet (``controlnet_mode_embedder``) puts the embedding of the type chosen with
  SetUnionControlNetType before the text tokens. Block i of N feeds ceil(depth / N)
  consecutive Flux blocks.

The residual lists are ``{"input": [...], "output": [...]}`` (double, then single blocks),
which :class:`..flux.model.Flux` adds to the image tokens after each block. Upstream sizes
them for Flux.1's 19 + 38 blocks; here they follow the sampled model's block counts (the
same lists for Flux.1).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import memory, ops
from ..flux import convert as flux_convert
from ..flux.detection import detect as flux_detect
from ..flux.model import Flux, rope_angles, timestep_embedding
from ..latent_formats import Flux as FluxLatent
from ..loading import ModelFileError
from .base import ControlNet


def _hint_encoder(mistoline: bool, device: Any = None) -> nn.Sequential:
    """3 -> 16 channels, 8x smaller (three stride-2 convs); Mistoline's has 1x1 convs in places."""
    if mistoline:
        layout = [(3, 3, 1), (1, 1, 1), (3, 3, 1), (3, 3, 2), (3, 3, 1), (3, 3, 2), (3, 3, 1), (3, 3, 2), (1, 1, 1),
                  (3, 3, 1)]
    else:
        layout = [(3, 3, 1), (3, 3, 1), (3, 3, 2), (3, 3, 1), (3, 3, 2), (3, 3, 1), (3, 3, 2), (3, 3, 1)]
    layers: list[nn.Module] = []
    for i, (k, _, stride) in enumerate(layout):
        layers.append(ops.Conv2d(3 if i == 0 else 16, 16, k, padding=k // 2, stride=stride, device=device))
        if i < len(layout) - 1:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class _MistolineBlock(nn.Module):
    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.linear = ops.Linear(dim, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.linear(x))


class _MistolineCond(nn.Module):
    def __init__(self, device: Any = None):
        super().__init__()
        self.encoder = _hint_encoder(True, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class FluxControlNet(Flux):
    """Flux's embedders and blocks (no final layer) plus the ControlNet parts."""

    def __init__(self, latent_input: bool = False, num_union_modes: int = 0, mistoline: bool = False,
                 control_latent_channels: int | None = None, device: Any = None, **config: Any):
        super().__init__(device=device, **config)
        del self.final_layer
        dim = self.img_in.weight.shape[0]
        patch = self.patch_size * self.patch_size
        self.latent_input, self.mistoline = latent_input, mistoline
        block = (lambda: _MistolineBlock(dim, device)) if mistoline else (lambda: ops.Linear(dim, dim, device=device))
        self.controlnet_blocks = nn.ModuleList(block() for _ in self.double_blocks)
        self.controlnet_single_blocks = nn.ModuleList(block() for _ in self.single_blocks)
        self.num_control_type = num_union_modes or None
        if num_union_modes:
            self.controlnet_mode_embedder = nn.Embedding(num_union_modes, dim, device=device)
        hint_in = (control_latent_channels or config.get("in_channels", 16)) * patch
        self.pos_embed_input = ops.Linear(hint_in, dim, device=device)
        if not latent_input:
            if mistoline:
                self.input_cond_block = _MistolineCond(device)
            else:
                self.input_hint_block = _hint_encoder(False, device)
        self.main_double, self.main_single = 19, 38  # Flux.1's; pre_run sets the sampled model's

    @property
    def dtype(self) -> torch.dtype:
        return self.img_in.weight.dtype

    def _spread(self, outs: list[torch.Tensor], total: int) -> list[torch.Tensor]:
        if not outs:
            return []
        repeat = math.ceil(total / len(outs))
        if self.latent_input:  # each block's residual for `repeat` consecutive blocks
            spread = [o for o in outs for _ in range(repeat)]
        else:  # XLabs: the residuals cycle
            spread = outs * repeat
        return spread[:total]

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None, guidance: torch.Tensor | None = None,
                control_type: list[int] | None = None, **_: Any) -> dict[str, list[torch.Tensor]]:
        p = self.patch_size
        dtype = x.dtype
        hint = hint.to(dtype)
        if self.latent_input:
            pad_h, pad_w = (-hint.shape[-2]) % p, (-hint.shape[-1]) % p
            if pad_h or pad_w:
                hint = F.pad(hint, (0, pad_w, 0, pad_h), mode="circular")
        elif self.mistoline:
            hint = self.input_cond_block(hint * 2.0 - 1.0)
        else:
            hint = self.input_hint_block(hint * 2.0 - 1.0)
        b, c, hh, hw = hint.shape
        hint = hint.reshape(b, c, hh // p, p, hw // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)

        img, img_ids = self.patchify(x)
        img = self.img_in(img) + self.pos_embed_input(hint)
        vec = self.time_in(timestep_embedding(timesteps).to(dtype))
        if self.guidance_in is not None and guidance is not None:
            vec = vec + self.guidance_in(timestep_embedding(guidance).to(dtype))
        if y is None:
            y = torch.zeros(img.shape[0], self.vec_in_dim, device=img.device, dtype=dtype)
        vec = vec + self.vector_in(y[:, :self.vec_in_dim].to(dtype))
        txt = self.txt_in(context.to(dtype))
        txt_ids = torch.zeros(x.shape[0], txt.shape[1], 3, device=x.device, dtype=torch.float32)
        if self.num_control_type is not None and control_type:
            if any(t >= self.num_control_type for t in control_type):
                raise ValueError(f"this union ControlNet has {self.num_control_type} control types; "
                                 f"type {max(control_type)} was selected")
            modes = self.controlnet_mode_embedder(torch.tensor(list(control_type), device=x.device)).to(dtype)
            txt = torch.cat([modes.unsqueeze(0).expand(txt.shape[0], -1, -1), txt], dim=1)
            txt_ids = torch.cat([txt_ids[:, :len(control_type)], txt_ids], dim=1)
        rope = rope_angles(torch.cat((txt_ids, img_ids), dim=1), self.axes_dim, self.theta)

        double = []
        for block, proj in zip(self.double_blocks, self.controlnet_blocks):
            img, txt = block(img, txt, vec, rope)
            double.append(proj(img))
        n_txt = txt.shape[1]
        joint = torch.cat((txt, img), dim=1)
        single = []
        for block, proj in zip(self.single_blocks, self.controlnet_single_blocks):
            joint = block(joint, vec, rope)
            single.append(proj(joint[:, n_txt:]))
        out = {"input": self._spread(double, self.main_double)}
        if single:
            out["output"] = self._spread(single, self.main_single)
        return out


class ControlNetFlux(ControlNet):
    """Sizes the residual lists for the sampled model's block counts when sampling starts."""

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        dm = model.diffusion_model
        self.control_model.main_double = len(dm.double_blocks)
        self.control_model.main_single = len(dm.single_blocks)
        super().pre_run(model, percent_to_timestep_function)


def is_xlabs(sd: Mapping[str, torch.Tensor]) -> bool:
    return "controlnet_blocks.0.weight" in sd and "double_blocks.0.img_attn.norm.key_norm.scale" in sd


def is_mistoline(sd: Mapping[str, torch.Tensor]) -> bool:
    return "controlnet_blocks.0.linear.weight" in sd


def is_instantx(sd: Mapping[str, torch.Tensor]) -> bool:
    return "controlnet_blocks.0.weight" in sd and "controlnet_x_embedder.weight" in sd


def _config(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The Flux config of ControlNet weights in BFL names (no final layer: its width is the
    input's, which is what a ControlNet's would be)."""
    stub = dict(native)
    stub["final_layer.linear.weight"] = torch.empty(native["img_in.weight"].shape[1], 1, device="meta")
    config = flux_detect(stub)
    if config is None:
        raise ModelFileError("Flux ControlNet: no Flux blocks found")
    config.pop("image_model", None)
    return config


def _build(net_kwargs: dict[str, Any], native: dict[str, torch.Tensor], source: str, **wrap: Any) -> ControlNetFlux:
    net = FluxControlNet(device="meta", **net_kwargs)
    load_device = memory.get_torch_device()
    supported = (torch.bfloat16, torch.float16, torch.float32)
    weight_dtype = memory.unet_dtype(load_device, supported) if load_device.type != "cpu" else torch.float32
    manual_cast = memory.unet_manual_cast(weight_dtype, load_device, supported)
    missing, _ = ops.assign_state_dict(net, native, weight_dtype)
    if missing:
        raise ModelFileError(f"{source}: ControlNet weights missing for {len(missing)} parameters, e.g. {missing[:4]}")
    net.eval().requires_grad_(False)
    if manual_cast is not None and manual_cast != weight_dtype:
        ops.set_manual_cast(net, True)
    net.to(memory.unet_offload_device())
    return ControlNetFlux(net, load_device=load_device, extra_conds=("y", "guidance"),
                          manual_cast_dtype=manual_cast if manual_cast != weight_dtype else None, **wrap)


def load_xlabs(sd: Mapping[str, torch.Tensor], source: str = "controlnet", mistoline: bool = False) -> ControlNetFlux:
    """XLabs (and Mistoline) Flux ControlNets: pixel hints, BFL block names."""
    native = {("controlnet_single_blocks." + k[len("single_controlnet_blocks."):]
               if k.startswith("single_controlnet_blocks.") else k): v for k, v in sd.items()}
    config = _config(native)
    return _build(dict(config, mistoline=mistoline), native, source)


def load_instantx(sd: Mapping[str, torch.Tensor], source: str = "controlnet") -> ControlNetFlux:
    """InstantX / Shakker-Labs union Flux ControlNets (diffusers ``FluxControlNetModel``)."""
    own = {k: v for k, v in sd.items()
           if k.startswith(("controlnet_blocks.", "controlnet_single_blocks.", "controlnet_x_embedder.",
                            "controlnet_mode_embedder."))}
    body = {k: v for k, v in sd.items() if k not in own}
    inner = body["x_embedder.weight"].shape[0]
    body["proj_out.weight"] = torch.empty(body["x_embedder.weight"].shape[1], inner, device="meta")
    body["norm_out.linear.weight"] = torch.empty(2 * inner, inner, device="meta")
    native = flux_convert.diffusers_to_native(body)
    if native is None:
        raise ModelFileError(f"{source}: not a diffusers Flux ControlNet")
    native = {k: v for k, v in native.items() if not k.startswith("final_layer.")}
    for k, v in own.items():
        native[k.replace("controlnet_x_embedder.", "pos_embed_input.")] = v
    config = _config(native)
    patch = config["patch_size"] ** 2
    control_channels = native["pos_embed_input.weight"].shape[1] // patch
    modes = native["controlnet_mode_embedder.weight"].shape[0] if "controlnet_mode_embedder.weight" in native else 0
    return _build(dict(config, latent_input=True, num_union_modes=modes, control_latent_channels=control_channels),
                  native, source, compression_ratio=1, latent_format=FluxLatent(), concat_mask=control_channels == 17)
