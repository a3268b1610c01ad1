"""ControlNets for the SD3 family's MMDiT, in the two layouts upstream loads.

* **SD3.5 large** (Stability's ``sd3.5_large_controlnet_{blur,canny,depth}.safetensors``):
  ``transformer_blocks.N`` are image-only DiT blocks (``attn.qkv``, ``attn.proj``, ``mlp``,
  ``adaLN_modulation.1``), ``controlnet_blocks.N`` one Linear each, ``pos_embed_input`` the
  hint's patch embedding, ``time_text_embed.*`` (diffusers names) the timestep and pooled
  embedders, a scalar ``control_type`` (0 blur, 1 canny, 2 depth). The file has no patch
  embedding of its own: it is copied from the sampled MMDiT when sampling starts, and a fixed
  sin-cos grid (centre 7.5, half-width 7.5 on the shorter side) is the position code. With
  ``y_embedder`` square ("double y": a second pooled embedder ``orig_y_embedder`` comes from
  the MMDiT) the blocks all read the embedded input and are not chained. Canny hints are
  remapped to ``x * 127.5 + 0.5``, depth hints to ``1 - x`` before the VAE (upstream's
  numbers); the encoded hint goes through the SD3 latent format.
* **SD3 diffusers** (``SD3ControlNetModel`` with a text stream: InstantX's): joint blocks in
  diffusers names (converted with the family's key map), the MMDiT's learned position table,
  the pooled vector zeroed, the encoded hint scaled without the latent shift; a 17-channel
  ``pos_embed_input`` is an inpainting ControlNet (a mask channel follows the latent).

Both return ``{"output": [...]}``: one residual per MMDiT joint block (block i of an N-block
ControlNet feeds ``depth / N`` consecutive blocks), which :class:`..sd3.mmdit.MMDiT` adds to
the image tokens after each block. The SD3 diffusers ControlNet leaves the last block
without one (as upstream and diffusers do).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .. import memory, ops
from ..base import timestep_embedding
from ..latent_formats import SD3 as SD3Latent
from ..loading import ModelFileError
from ..sd3 import convert as sd3_convert
from ..sd3.mmdit import HEAD_DIM, Embedder, JointBlock, PatchEmbed, StreamBlock, attention
from .base import ControlNet

# the SD3.5 file's diffusers-named embedders -> the MMDiT's names
_SD35_RENAMES = {
    "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
    "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.",
    "pos_embed.proj.": "x_embedder.proj.",
    "context_embedder.": "context_embedder.",
}


def _count(sd: Mapping[str, Any], stem: str) -> int:
    n = 0
    while any(k.startswith(f"{stem}{n}.") for k in sd):
        n += 1
    return n


def sincos_grid(dim: int, height: int, width: int, device: Any = None) -> torch.Tensor:
    """[height*width, dim] sin-cos position code of a patch grid whose shorter side spans
    0..15 (centre 7.5); the first half of the features encodes the column, the second the row."""
    small = min(height, width)
    half_h, half_w = height / small * 7.5, width / small * 7.5
    rows = torch.linspace(7.5 - half_h, 7.5 + half_h, height, device=device, dtype=torch.float32)
    cols = torch.linspace(7.5 - half_w, 7.5 + half_w, width, device=device, dtype=torch.float32)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")

    def encode(pos: torch.Tensor, d: int) -> torch.Tensor:
        freq = 1.0 / 10000 ** (torch.arange(d // 2, device=device, dtype=torch.float32) / (d / 2.0))
        angles = pos.reshape(-1, 1) * freq[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(grid_c, dim // 2), encode(grid_r, dim // 2)], dim=1)


def _self_block(block: StreamBlock, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """An image-only DiT block: the stream's attention over its own tokens, then its MLP."""
    qkv, state = block.pre_attention(x, c)
    return block.post_attention(attention(*qkv), state)


class SD35ControlNet(nn.Module):
    """The SD3.5 large ControlNet (see the module docstring)."""

    def __init__(self, hidden: int, num_layers: int, main_depth: int, double_y_emb: bool,
                 adm_in_channels: int = 2048, in_channels: int = 16, hint_channels: int = 16, patch_size: int = 2,
                 device: Any = None):
        super().__init__()
        self.hidden, self.main_depth, self.double_y_emb = hidden, main_depth, double_y_emb
        self.patch_size = patch_size
        self.x_embedder = PatchEmbed(in_channels, hidden, patch_size, device=device)
        self.t_embedder = Embedder(256, hidden, device=device)
        if double_y_emb:
            self.orig_y_embedder = Embedder(adm_in_channels, hidden, device=device)
            self.y_embedder = Embedder(hidden, hidden, device=device)
        else:
            self.y_embedder = Embedder(adm_in_channels, hidden, device=device)
        self.transformer_blocks = nn.ModuleList(StreamBlock(hidden, 4.0, qk_norm=False, device=device)
                                                for _ in range(num_layers))
        self.controlnet_blocks = nn.ModuleList(ops.Linear(hidden, hidden, device=device) for _ in range(num_layers))
        self.pos_embed_input = PatchEmbed(hint_channels, hidden, patch_size, device=device)

    @property
    def dtype(self) -> torch.dtype:
        return self.controlnet_blocks[0].weight.dtype

    def copy_from_model(self, mmdit: nn.Module) -> None:
        """Take the embedder the file leaves out from the sampled MMDiT."""
        if self.double_y_emb:
            width = mmdit.y_embedder.mlp[0].in_features
            if self.orig_y_embedder.mlp[0].in_features != width:  # the sampled model's pooled width
                dev = self.y_embedder.mlp[0].weight.device
                self.orig_y_embedder = Embedder(width, self.hidden, device=dev).to(self.dtype)
        src, dst = (mmdit.y_embedder, self.orig_y_embedder) if self.double_y_emb else (mmdit.x_embedder, self.x_embedder)
        theirs = dict(src.named_modules())
        with torch.no_grad():
            for name, layer in dst.named_modules():
                if not isinstance(layer, ops.CastWeightBias):
                    continue
                other = theirs[name]  # real values, also from scaled fp8 weights
                layer.weight.copy_(other.dequantized_weight(torch.float32, layer.weight.device))
                if layer.bias is not None:
                    layer.bias.copy_(other.bias.detach())

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None, **_: Any) -> dict[str, list[torch.Tensor]]:
        height, width = x.shape[-2:]
        tokens = self.x_embedder(x)
        if not self.double_y_emb:
            p = self.patch_size
            grid = sincos_grid(self.hidden, (height + 1) // p, (width + 1) // p, device=x.device)
            tokens = tokens + grid.to(tokens.dtype)
        c = self.t_embedder(timestep_embedding(timesteps, 256).to(tokens.dtype))
        if y is not None:
            y = y.to(tokens.dtype)
            if self.double_y_emb:
                y = self.orig_y_embedder(y)
            c = c + self.y_embedder(y)
        tokens = tokens + self.pos_embed_input(hint.to(tokens.dtype))
        repeat = math.ceil(self.main_depth / len(self.transformer_blocks))
        out: list[torch.Tensor] = []
        for block, proj in zip(self.transformer_blocks, self.controlnet_blocks):
            h = _self_block(block, tokens, c)
            if not self.double_y_emb:
                tokens = h
            out += [proj(h)] * repeat
        return {"output": out}


class SD3ControlNet(nn.Module):
    """The SD3 diffusers-layout ControlNet: the MMDiT's embedders and its first ``num_blocks``
    joint blocks (none of them ``pre_only``), a Linear per block, the hint's patch embedding."""

    def __init__(self, depth: int, num_blocks: int, in_channels: int, patch_size: int, adm_in_channels: int,
                 context_in: int, pos_embed_max_size: int, qk_norm: bool, x_block_self_attn_layers: tuple = (),
                 hint_channels: int = 16, device: Any = None):
        super().__init__()
        dim = HEAD_DIM * depth
        self.depth, self.patch_size, self.pos_embed_max_size = depth, patch_size, pos_embed_max_size
        self.x_embedder = PatchEmbed(in_channels, dim, patch_size, device=device)
        self.register_buffer("pos_embed", torch.empty(1, pos_embed_max_size ** 2, dim, device=device))
        self.t_embedder = Embedder(256, dim, device=device)
        self.y_embedder = Embedder(adm_in_channels, dim, device=device)
        self.context_embedder = ops.Linear(context_in, dim, device=device)
        self_attn = set(x_block_self_attn_layers)
        self.joint_blocks = nn.ModuleList(JointBlock(dim, 4.0, qk_norm, last=False, x_self_attn=i in self_attn,
                                                     device=device) for i in range(num_blocks))
        self.controlnet_blocks = nn.ModuleList(ops.Linear(dim, dim, device=device) for _ in range(num_blocks))
        self.pos_embed_input = PatchEmbed(hint_channels, dim, patch_size, device=device)

    @property
    def dtype(self) -> torch.dtype:
        return self.controlnet_blocks[0].weight.dtype

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None, **_: Any) -> dict[str, list[torch.Tensor]]:
        from ..sd3.mmdit import MMDiT
        height, width = x.shape[-2:]
        dtype = x.dtype
        tokens = self.x_embedder(x) + MMDiT.cropped_pos_embed(self, height, width).to(dtype)
        tokens = tokens + self.pos_embed_input(hint.to(dtype))
        c = self.t_embedder(timestep_embedding(timesteps, 256).to(dtype))
        if y is not None:  # the SD3 ControlNets are trained with the pooled vector zeroed
            c = c + self.y_embedder(torch.zeros_like(y, dtype=dtype))
        if context is None:
            context = torch.zeros(x.shape[0], 0, self.context_embedder.in_features, device=x.device, dtype=dtype)
        context = self.context_embedder(context.to(dtype))
        n = len(self.joint_blocks)
        out: list[torch.Tensor] = []
        for i, (block, proj) in enumerate(zip(self.joint_blocks, self.controlnet_blocks)):
            context, tokens = block(context, tokens, c)
            count = self.depth // n - (1 if i == n - 1 else 0)
            out += [proj(tokens)] * count
        return {"output": out}


class ControlNetSD35(ControlNet):
    """Copies the MMDiT's missing embedder into the network when sampling starts."""

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        self.control_model.copy_from_model(model.diffusion_model)
        super().pre_run(model, percent_to_timestep_function)


def _load(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str, optional: tuple[str, ...] = ()) -> tuple:
    load_device = memory.get_torch_device()
    supported = (torch.float16, torch.bfloat16, torch.float32)
    weight_dtype = memory.unet_dtype(load_device, supported) if load_device.type != "cpu" else torch.float32
    manual_cast = memory.unet_manual_cast(weight_dtype, load_device, supported)
    missing, _ = ops.assign_state_dict(net, dict(sd), weight_dtype)
    missing = [k for k in missing if not k.startswith(optional)]
    if missing:
        raise ModelFileError(f"{source}: ControlNet weights missing for {len(missing)} parameters, e.g. {missing[:4]}")
    net.eval().requires_grad_(False)
    if manual_cast is not None and manual_cast != weight_dtype:
        ops.set_manual_cast(net, True)
    net.to(memory.unet_offload_device())
    return load_device, (manual_cast if manual_cast != weight_dtype else None)


def is_sd35(sd: Mapping[str, torch.Tensor]) -> bool:
    return ("controlnet_blocks.0.weight" in sd and "pos_embed_input.proj.weight" in sd
            and "transformer_blocks.0.adaLN_modulation.1.bias" in sd)


def is_sd3_diffusers(sd: Mapping[str, torch.Tensor]) -> bool:
    return ("controlnet_blocks.0.weight" in sd and "pos_embed_input.proj.weight" in sd
            and "transformer_blocks.0.attn.add_q_proj.weight" in sd)


def load_sd35(sd: Mapping[str, torch.Tensor], source: str = "controlnet") -> ControlNetSD35:
    """An SD3.5 large ControlNet (Stability layout)."""
    sd = dict(sd)
    control_type = round(float(sd.pop("control_type").item())) if "control_type" in sd else -1
    native: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        for old, new in _SD35_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        native[key] = value
    y_shape = native["y_embedder.mlp.0.weight"].shape
    hidden = y_shape[0]
    double_y = y_shape[0] == y_shape[1]
    net = SD35ControlNet(hidden, _count(native, "transformer_blocks."), main_depth=hidden // HEAD_DIM,
                         double_y_emb=double_y, adm_in_channels=2048 if double_y else y_shape[1],
                         in_channels=16, hint_channels=native["pos_embed_input.proj.weight"].shape[1],
                         patch_size=native["pos_embed_input.proj.weight"].shape[2], device="meta")
    # the embedder the file leaves out comes from the sampled model (pre_run)
    load_device, manual_cast = _load(net, native, source, optional=("x_embedder.", "orig_y_embedder."))
    preprocess = None
    if control_type == 1:  # canny
        preprocess = _canny_remap
    elif control_type == 2:  # depth
        preprocess = _depth_remap
    return ControlNetSD35(net, load_device=load_device, manual_cast_dtype=manual_cast, compression_ratio=1,
                          latent_format=SD3Latent(), preprocess_image=preprocess)


def _canny_remap(image: torch.Tensor) -> torch.Tensor:
    return image * 255 * 0.5 + 0.5


def _depth_remap(image: torch.Tensor) -> torch.Tensor:
    return 1.0 - image


def _zero_shift_sd3_latent() -> SD3Latent:
    fmt = SD3Latent()
    fmt.shift_factor = 0.0  # the SD3 ControlNets encode their hint without the latent shift
    return fmt


def load_sd3_diffusers(sd: Mapping[str, torch.Tensor], source: str = "controlnet") -> ControlNet:
    """A diffusers ``SD3ControlNetModel`` with joint blocks (the SD3 ControlNets)."""
    extra = {k: v for k, v in sd.items() if k.startswith(("controlnet_blocks.", "pos_embed_input."))}
    body = {k: v for k, v in sd.items() if k not in extra}
    native = sd3_convert.diffusers_to_native(body)
    if not native:
        raise ModelFileError(f"{source}: not an SD3 diffusers ControlNet")
    num_blocks = _count(native, "joint_blocks.")
    # every block of the ControlNet is a full one: undo the key map's last-block swap of the
    # text modulation (it assumes the MMDiT's pre_only last block)
    for suffix in ("weight", "bias"):
        key = f"joint_blocks.{num_blocks - 1}.context_block.adaLN_modulation.1.{suffix}"
        if key in native:
            scale, shift = native[key].chunk(2, dim=0)
            native[key] = torch.cat((shift, scale), dim=0)
    native.update(extra)
    embed = native["x_embedder.proj.weight"]
    depth = embed.shape[0] // HEAD_DIM
    hint_channels = native["pos_embed_input.proj.weight"].shape[1]
    stem, tail = "joint_blocks.", ".x_block.attn2.qkv.weight"
    net = SD3ControlNet(depth, num_blocks, embed.shape[1], embed.shape[2],
                        native["y_embedder.mlp.0.weight"].shape[1], native["context_embedder.weight"].shape[1],
                        round(math.sqrt(native["pos_embed"].shape[1])),
                        "joint_blocks.0.context_block.attn.ln_q.weight" in native,
                        tuple(int(k[len(stem):-len(tail)]) for k in native if k.startswith(stem) and k.endswith(tail)),
                        hint_channels=hint_channels, device="meta")
    load_device, manual_cast = _load(net, native, source)
    return ControlNet(net, load_device=load_device, manual_cast_dtype=manual_cast, compression_ratio=1,
                      latent_format=_zero_shift_sd3_latent(), concat_mask=hint_channels == 17)
