"""ControlNet, control-LoRA and T2I-Adapter: what a CONTROL_NET socket carries.

Files are recognised from their keys, never from their names:

* original ControlNet v1.0/v1.1 layout (``control_model.input_blocks...``, ``zero_convs``,
  ``input_hint_block``, ``middle_block_out``; SD1.x, SD2.x and SDXL), also without the
  ``control_model.`` prefix, and "difference" ControlNets (``difference`` key: the weights are
  deltas to add to the base model, DiffControlNetLoader);
* the diffusers ``ControlNetModel`` layout (``controlnet_cond_embedding``,
  ``controlnet_down_blocks``, ``controlnet_mid_block``, ``down_blocks``...), including union
  ControlNets (ControlNet++: ``task_embedding``, ``transformer_layes``, ``spatial_ch_projs``,
  ``control_add_embedding``; the type is chosen with SetUnionControlNetType and the hint is
  merged as ComfyUI does);
* control-LoRA (``lora_controlnet``): low-rank deltas on the base UNet's input half plus full
  hint/zero-conv weights; the network is built from the sampled model when sampling starts;
* T2I-Adapters (TencentARC ``conv_in`` / ``body.N.block1`` layout, the light variant with
  ``body.N.in_conv``, and the diffusers ``adapter.body.N.resnets.M`` layout), SD1.x and SDXL;
* the DiT ControlNets: SD3.5 large and SD3 diffusers (:mod:`.mmdit`), Flux XLabs /
  InstantX / union (:mod:`.flux`); they work on VAE-encoded hints (a VAE on the apply node).

This package is an add-on above the families: :mod:`.base` (ControlBase, ControlNet) imports
none, the network modules import the family they extend.

The objects follow ComfyUI's ControlBase protocol, which the sampler calls:
``pre_run(model, percent_to_sigma)``, ``get_control(x, sigma, cond, batched_number,
transformer_options) -> {"input": [...], "middle": [...], "output": [...]}`` (residuals the
UNet adds, popped from the end), ``get_models()`` (patchers to load), ``cleanup()``,
``copy()``, ``set_cond_hint(image, strength, (start, end), vae)`` and
``set_previous_controlnet(prev)`` (chains: each ControlNet adds its residuals to the previous
one's).
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import memory, ops
from ..base import timestep_embedding
from ..loading import ModelFileError, load_torch_file
from ..patcher import ModelPatcher
from . import flux, mmdit
from .base import ControlBase, ControlNet, broadcast_image_to, common_upscale  # noqa: F401 (re-exported)
from ..stable_diffusion.unet import Downsample, ResBlock, TimestepEmbedSequential, UNetModel, attention

log = logging.getLogger(__name__)


# ------------------------------------------------------------------- ControlNet network
def _count(keys: set[str], fmt: str) -> int:
    n = 0
    while any(k.startswith(fmt.format(n)) for k in keys):
        n += 1
    return n


def detect_control_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """UNet-style config of an LDM-layout ControlNet (keys without ``control_model.``)."""
    keys = set(sd)
    if "input_blocks.0.0.weight" not in keys:
        raise ModelFileError("ControlNet without input_blocks.0.0.weight")
    mc = sd["input_blocks.0.0.weight"].shape[0]
    cfg: dict[str, Any] = {"in_channels": sd["input_blocks.0.0.weight"].shape[1], "model_channels": mc,
                           "out_channels": 4}
    if "label_emb.0.0.weight" in keys:
        cfg["adm_in_channels"] = sd["label_emb.0.0.weight"].shape[1]
    n_in = _count(keys, "input_blocks.{}.")
    channel_mult, nrb, td = [], [], []
    context_dim, use_linear, cur = None, False, 0
    for i in range(1, n_in):
        p = f"input_blocks.{i}."
        if p + "0.op.weight" in keys:
            nrb.append(cur)
            cur = 0
            continue
        if cur == 0:
            channel_mult.append(sd[p + "0.out_layers.3.weight"].shape[0] // mc)
        cur += 1
        depth = _count(keys, p + "1.transformer_blocks.{}.")
        td.append(depth)
        if depth:
            context_dim = sd[p + "1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
            use_linear = sd[p + "1.proj_in.weight"].ndim == 2
    nrb.append(cur)
    tdm = _count(keys, "middle_block.1.transformer_blocks.{}.")
    if tdm and context_dim is None:
        context_dim = sd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
        use_linear = sd["middle_block.1.proj_in.weight"].ndim == 2
    if "middle_block.1.transformer_blocks.0.attn2.to_k.weight" not in keys and "middle_block.2.in_layers.0.weight" not in keys:
        tdm = 0
    cfg.update(channel_mult=channel_mult, num_res_blocks=nrb, transformer_depth=td, transformer_depth_middle=tdm,
               context_dim=context_dim, use_linear_in_transformer=use_linear)
    # heads as the UNet of the same family (see comfyui.models.detection)
    if cfg.get("adm_in_channels") is not None or use_linear:
        cfg["num_heads"], cfg["num_head_channels"] = -1, 64
    else:
        cfg["num_heads"], cfg["num_head_channels"] = 8, -1
    return cfg


class _UnionAttention(nn.Module):
    def __init__(self, c: int, heads: int):
        super().__init__()
        self.c, self.heads = c, heads
        self.in_proj = ops.Linear(c, 3 * c)
        self.out_proj = ops.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.in_proj(x).split(self.c, dim=2)
        return self.out_proj(attention(q, k, v, self.heads))


class _UnionBlock(nn.Module):
    """The union ControlNet's task transformer layer (``transformer_layes.N``)."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.attn = _UnionAttention(c, heads)
        self.ln_1 = ops.LayerNorm(c)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", ops.Linear(c, 4 * c))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", ops.Linear(4 * c, c))
        self.ln_2 = ops.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ControlAddEmbedding(nn.Module):
    """Embeds the selected control types (one-hot over ``n`` types, each slot embedded
    sinusoidally) into the time embedding."""

    def __init__(self, in_dim: int, out_dim: int, n: int):
        super().__init__()
        self.n, self.in_dim = n, in_dim
        self.linear_1 = ops.Linear(in_dim * n, out_dim)
        self.linear_2 = ops.Linear(out_dim, out_dim)

    def forward(self, control_type: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        c = torch.zeros((self.n,), device=device)
        if control_type:
            c[list(control_type)] = 1.0
        e = timestep_embedding(c, self.in_dim).to(dtype).reshape(1, self.n * self.in_dim)
        return self.linear_2(F.silu(self.linear_1(e)))


class ControlNetModel(nn.Module):
    """The cldm ControlNet: the UNet's time embedding, input blocks and middle block (same
    classes and key names as :class:`comfyui.models.stable_diffusion.unet.UNetModel`), a hint encoder
    (``input_hint_block``) added after the first input block, and one 1x1 "zero conv" per
    input block plus ``middle_block_out``."""

    def __init__(self, hint_channels: int = 3, union_num_control_type: int | None = None,
                 union_channels: int = 320, **unet_config: Any):
        super().__init__()
        cfg = dict(unet_config)
        cfg.pop("out_channels", None)
        cfg.pop("device", None)
        with torch.device("meta"):
            u = UNetModel(out_channels=4, **cfg)
        self.model_channels = u.model_channels
        self.adm_in_channels = u.adm_in_channels
        self.time_embed = u.time_embed
        if u.adm_in_channels is not None:
            self.label_emb = u.label_emb
        self.input_blocks = u.input_blocks
        self.middle_block = u.middle_block
        chans = [self._out_channels(b) for b in self.input_blocks]
        mc = self.model_channels
        with torch.device("meta"):
            hint: list[nn.Module] = []
            for i, (cin, cout, stride) in enumerate([(hint_channels, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1),
                                                     (32, 96, 2), (96, 96, 1), (96, 256, 2), (256, mc, 1)]):
                hint.append(ops.Conv2d(cin, cout, 3, padding=1, stride=stride))
                if i < 7:
                    hint.append(nn.SiLU())
            self.input_hint_block = TimestepEmbedSequential(*hint)
            self.zero_convs = nn.ModuleList([TimestepEmbedSequential(ops.Conv2d(c, c, 1)) for c in chans])
            self.middle_block_out = TimestepEmbedSequential(ops.Conv2d(chans[-1], chans[-1], 1))
            self.num_control_type = union_num_control_type
            if union_num_control_type is not None:  # union ControlNet (ControlNet++)
                self.task_embedding = nn.Parameter(torch.empty(union_num_control_type, union_channels))
                self.transformer_layes = nn.Sequential(_UnionBlock(union_channels, 8))
                self.spatial_ch_projs = ops.Linear(union_channels, union_channels)
                self.control_add_embedding = _ControlAddEmbedding(256, mc * 4, union_num_control_type)

    @staticmethod
    def _out_channels(block: nn.Module) -> int:
        ch = None
        for layer in block:
            if isinstance(layer, ResBlock):
                ch = layer.out_layers[3].out_channels
            elif isinstance(layer, Downsample):
                ch = layer.op.out_channels
            elif isinstance(layer, nn.Conv2d) and ch is None:
                ch = layer.out_channels
        return ch

    @property
    def dtype(self) -> torch.dtype:
        return self.time_embed[0].weight.dtype

    def _union_merge(self, hint: torch.Tensor, control_type: list[int], emb: torch.Tensor,
                     context: torch.Tensor | None) -> torch.Tensor:
        # one hint image (the selected type): its features' mean plus the type's task
        # embedding go through the task transformer, whose projection shifts the features
        cond = self.input_hint_block(hint, emb, context, {})
        feat = cond.mean(dim=(2, 3)) + self.task_embedding[control_type[0]].to(cond)
        x = self.transformer_layes(feat.unsqueeze(1))
        return cond + self.spatial_ch_projs(x[:, 0])[:, :, None, None]

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None,
                y: torch.Tensor | None = None, **kwargs: Any) -> dict[str, list[torch.Tensor]]:
        t_emb = timestep_embedding(timesteps.reshape(-1), self.model_channels).to(x.dtype)
        emb = self.time_embed(t_emb)
        guided = None
        if self.num_control_type is not None:
            control_type = list(kwargs.get("control_type") or [])
            if any(c >= self.num_control_type for c in control_type):
                raise ValueError(f"this union ControlNet has {self.num_control_type} control types; "
                                 f"type {max(control_type)} was selected")
            emb = emb + self.control_add_embedding(control_type, emb.dtype, emb.device)
            if control_type:
                guided = self._union_merge(hint, control_type, emb, context)
        if guided is None:
            guided = self.input_hint_block(hint, emb, context, {})
        if self.adm_in_channels is not None:
            if y is None:
                raise ValueError("this ControlNet (SDXL) needs the 'y' conditioning input")
            emb = emb + self.label_emb(y.to(emb.dtype))
        outs = []
        h = x
        for block, zc in zip(self.input_blocks, self.zero_convs):
            h = block(h, emb, context, {})
            if guided is not None:
                h = h + guided
                guided = None
            outs.append(zc(h, emb, context, {}))
        h = self.middle_block(h, emb, context, {})
        return {"middle": [self.middle_block_out(h, emb, context, {})], "output": outs}


# ---------------------------------------------------------------------- diffusers layout
def _diffusers_control_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    levels = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("down_blocks."))
    blocks = [sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)]
    mc = sd["conv_in.weight"].shape[0]
    nrb = [_count(set(sd), f"down_blocks.{i}.resnets.{{}}.") for i in range(levels)]
    td = []
    context_dim, use_linear = None, False
    for i in range(levels):
        for j in range(nrb[i]):
            d = _count(set(sd), f"down_blocks.{i}.attentions.{j}.transformer_blocks.{{}}.")
            td.append(d)
            if d:
                context_dim = sd[f"down_blocks.{i}.attentions.{j}.transformer_blocks.0.attn2.to_k.weight"].shape[1]
                use_linear = sd[f"down_blocks.{i}.attentions.{j}.proj_in.weight"].ndim == 2
    tdm = _count(set(sd), "mid_block.attentions.0.transformer_blocks.{}.")
    if tdm and context_dim is None:
        context_dim = sd["mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape[1]
        use_linear = sd["mid_block.attentions.0.proj_in.weight"].ndim == 2
    cfg: dict[str, Any] = dict(in_channels=sd["conv_in.weight"].shape[1], out_channels=4, model_channels=mc,
                               num_res_blocks=nrb, channel_mult=[b // mc for b in blocks], transformer_depth=td,
                               transformer_depth_middle=tdm, context_dim=context_dim,
                               use_linear_in_transformer=use_linear)
    if "add_embedding.linear_1.weight" in sd:
        cfg["adm_in_channels"] = sd["add_embedding.linear_1.weight"].shape[1]
    if cfg.get("adm_in_channels") is not None or use_linear:
        cfg["num_heads"], cfg["num_head_channels"] = -1, 64
    else:
        cfg["num_heads"], cfg["num_head_channels"] = 8, -1
    return cfg


def diffusers_control_to_ldm(sd: dict[str, torch.Tensor], cfg: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename diffusers ControlNetModel keys to the LDM layout; returns (sd, leftover keys)."""
    from ..convert import unet_to_diffusers
    mapping = dict(unet_to_diffusers(cfg))
    for s in ("weight", "bias"):
        mapping[f"controlnet_mid_block.{s}"] = f"middle_block_out.0.{s}"
        i = 0
        while f"controlnet_down_blocks.{i}.{s}" in sd:
            mapping[f"controlnet_down_blocks.{i}.{s}"] = f"zero_convs.{i}.0.{s}"
            i += 1
        mapping[f"controlnet_cond_embedding.conv_in.{s}"] = f"input_hint_block.0.{s}"
        j = 0
        while f"controlnet_cond_embedding.blocks.{j}.{s}" in sd:
            mapping[f"controlnet_cond_embedding.blocks.{j}.{s}"] = f"input_hint_block.{(j + 1) * 2}.{s}"
            j += 1
        mapping[f"controlnet_cond_embedding.conv_out.{s}"] = f"input_hint_block.{(j + 1) * 2}.{s}"
    out, left = {}, []
    for k, v in sd.items():
        if k in mapping:
            out[mapping[k]] = v
        else:
            left.append(k)
    return out, left


class ControlLora(ControlNet):
    """A control-LoRA: the ControlNet is the sampled UNet's input half plus low-rank deltas;
    it is (re)built in :meth:`pre_run` from the model being sampled."""

    def __init__(self, control_weights: dict[str, torch.Tensor]):
        super().__init__(None)
        self.control_weights = control_weights

    def copy(self) -> "ControlLora":
        c = ControlLora(self.control_weights)
        self.copy_to(c)
        return c

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        ControlBase.pre_run(self, model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling
        dm = model.diffusion_model
        ucfg = dict(model.model_config.unet_config)
        hint_ch = self.control_weights["input_hint_block.0.weight"].shape[1]
        with torch.device("meta"):
            cm = ControlNetModel(hint_channels=hint_ch, **ucfg)
        base = {k: v for k, v in dm.state_dict().items()}
        sd: dict[str, torch.Tensor] = {}
        own = cm.state_dict(keep_vars=True)
        dtype = model.compute_dtype() if hasattr(model, "compute_dtype") else next(dm.parameters()).dtype
        for k in own:
            if k in base:
                sd[k] = base[k].detach().to("cpu", torch.float32)
        for k, v in self.control_weights.items():
            if k.endswith(".up") or k.endswith(".down") or k == "lora_controlnet":
                continue
            if k in own:
                sd[k] = v.float()
        for k in self.control_weights:
            if k.endswith(".up"):
                name = k[:-3]
                up = self.control_weights[k].float()
                down = self.control_weights[name + ".down"].float()
                w = sd.get(name + ".weight")
                if w is None:
                    continue
                sd[name + ".weight"] = w + (up.flatten(1) @ down.flatten(1)).reshape(w.shape)
        missing, _ = ops.assign_state_dict(cm, sd, dtype)
        if missing:
            log.warning("control-lora: %d weights missing, e.g. %s", len(missing), missing[:3])
        cm.eval().requires_grad_(False)
        self.control_model = cm
        device = next(dm.parameters()).device
        cm.to(device)
        self.patcher = ModelPatcher(cm, load_device=device, offload_device=memory.unet_offload_device())

    def cleanup(self) -> None:
        super().cleanup()
        self.control_model = None
        self.patcher = None

    def get_models(self) -> list[Any]:
        return ControlBase.get_models(self)


# ----------------------------------------------------------------------------- T2I-Adapter
class _Down(nn.Module):
    def __init__(self, ch: int, use_conv: bool):
        super().__init__()
        self.use_conv = use_conv
        self.op = ops.Conv2d(ch, ch, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_conv:
            return F.avg_pool2d(x, 2, 2, padding=(x.shape[2] % 2, x.shape[3] % 2))
        return self.op(x)


class _AdapterResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, ksize: int, sk: bool, use_conv: bool):
        super().__init__()
        ps = ksize // 2
        self.in_conv = ops.Conv2d(cin, cout, ksize, 1, ps) if (cin != cout or not sk) else None
        self.block1 = ops.Conv2d(cout, cout, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = ops.Conv2d(cout, cout, ksize, 1, ps)
        self.skep = ops.Conv2d(cin, cout, ksize, 1, ps) if not sk else None
        self.down = down
        if down:
            self.down_opt = _Down(cin, use_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        h = self.block2(self.act(self.block1(x)))
        return h + (self.skep(x) if self.skep is not None else x)


class T2IAdapterModel(nn.Module):
    """The full T2I-Adapter (``conv_in``, ``body.N``): pixel-unshuffle, 4 levels of resblocks,
    one feature map per UNet level (SD1.x: after the last resblock of each level; SDXL:
    16x unshuffle, features for levels 1..3 and the middle block)."""

    def __init__(self, channels: list[int], nums_rb: int, cin: int, ksize: int, sk: bool, use_conv: bool, xl: bool):
        super().__init__()
        self.xl = xl
        self.unshuffle_amount = 16 if xl else 8
        self.input_channels = cin // (self.unshuffle_amount ** 2)
        self.channels = channels
        self.nums_rb = nums_rb
        down_at = [2] if xl else [3, 2, 1]
        no_down_at = [1] if xl else []
        body = []
        for i in range(len(channels)):
            for j in range(nums_rb):
                if i in down_at and j == 0:
                    body.append(_AdapterResBlock(channels[i - 1], channels[i], True, ksize, sk, use_conv))
                elif i in no_down_at and j == 0:
                    body.append(_AdapterResBlock(channels[i - 1], channels[i], False, ksize, sk, use_conv))
                else:
                    body.append(_AdapterResBlock(channels[i], channels[i], False, ksize, sk, use_conv))
        self.body = nn.ModuleList(body)
        self.conv_in = ops.Conv2d(cin, channels[0], 3, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, list]:
        x = F.pixel_unshuffle(x, self.unshuffle_amount)
        x = self.conv_in(x)
        feats: list[torch.Tensor | None] = []
        for i in range(len(self.channels)):
            for j in range(self.nums_rb):
                x = self.body[i * self.nums_rb + j](x)
            if self.xl:
                feats.append(None)
                if i == 0:
                    feats += [None, None]
                if i == 2:
                    feats.append(None)
            else:
                feats += [None, None]
            feats.append(x)
        feats = feats[::-1]
        if self.xl:
            return {"input": feats[1:], "middle": feats[:1]}
        return {"input": feats}


class _LightBlock(nn.Module):
    def __init__(self, cin: int, cout: int, nums_rb: int, down: bool):
        super().__init__()
        inter = cout // 4
        self.down = down
        self.down_opt = _Down(cin, False)
        self.in_conv = ops.Conv2d(cin, inter, 1)
        self.body = nn.Sequential(*[_LightRes(inter) for _ in range(nums_rb)])
        self.out_conv = ops.Conv2d(inter, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = self.down_opt(x)
        return self.out_conv(self.body(self.in_conv(x)))


class _LightRes(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block1 = ops.Conv2d(ch, ch, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = ops.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.act(self.block1(x))) + x


class T2IAdapterLight(nn.Module):
    """The light T2I-Adapter (``body.N.in_conv`` / ``body.N.body.M`` / ``body.N.out_conv``)."""

    def __init__(self, channels: list[int], nums_rb: int, cin: int):
        super().__init__()
        self.xl = False
        self.unshuffle_amount = 8
        self.input_channels = cin // 64
        self.channels = channels
        self.body = nn.ModuleList([_LightBlock(cin if i == 0 else channels[i - 1], channels[i], nums_rb, i != 0)
                                   for i in range(len(channels))])

    def forward(self, x: torch.Tensor) -> dict[str, list]:
        x = F.pixel_unshuffle(x, self.unshuffle_amount)
        feats: list[torch.Tensor | None] = []
        for blk in self.body:
            x = blk(x)
            feats += [None, None, x]
        return {"input": feats[::-1]}


class T2IAdapter(ControlBase):
    """Runs the adapter once per hint size (its features do not depend on the timestep)."""

    def __init__(self, t2i_model: nn.Module, channels_in: int, compression_ratio: int = 8,
                 upscale_algorithm: str = "nearest-exact", device: torch.device | None = None):
        super().__init__()
        self.t2i_model = t2i_model
        self.channels_in = channels_in
        self.control_input: dict[str, list] | None = None
        self.compression_ratio = compression_ratio
        self.upscale_algorithm = upscale_algorithm
        self.device = device or memory.get_torch_device()

    def copy(self) -> "T2IAdapter":
        c = T2IAdapter(self.t2i_model, self.channels_in, self.compression_ratio, self.upscale_algorithm, self.device)
        self.copy_to(c)
        return c

    def scale_image_to(self, width: int, height: int) -> tuple[int, int]:
        u = self.t2i_model.unshuffle_amount
        return math.ceil(width / u) * u, math.ceil(height / u) * u

    def cleanup(self) -> None:
        super().cleanup()
        self.control_input = None

    def get_control(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict, batched_number: int,
                    transformer_options: dict | None = None) -> dict[str, list] | None:
        prev = None
        if self.previous_controlnet is not None:
            prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        if self._outside_range(t):
            return prev
        w, h = self.scale_image_to(x_noisy.shape[3] * self.compression_ratio, x_noisy.shape[2] * self.compression_ratio)
        if self.cond_hint is None or self.cond_hint.shape[2] != h or self.cond_hint.shape[3] != w:
            self.control_input = None
            hint = common_upscale(self.cond_hint_original, w, h, self.upscale_algorithm, "center").float()
            if self.channels_in == 1 and hint.shape[1] > 1:
                hint = hint.mean(dim=1, keepdim=True)
            self.cond_hint = hint.to(self.device)
        hint = self.cond_hint
        if x_noisy.shape[0] != hint.shape[0]:
            hint = broadcast_image_to(hint, x_noisy.shape[0], batched_number)
        if self.control_input is None or self.control_input["_batch"] != hint.shape[0]:
            self.t2i_model.to(device=self.device, dtype=x_noisy.dtype)
            with torch.no_grad():
                out = self.t2i_model(hint.to(x_noisy.dtype))
            self.t2i_model.to(memory.unet_offload_device())
            self.control_input = dict(out, _batch=hint.shape[0])
        control = {k: [None if a is None else a.clone() for a in v] for k, v in self.control_input.items() if k != "_batch"}
        return self.control_merge(control, prev, x_noisy.dtype)


def load_t2i_adapter(sd: dict[str, torch.Tensor]) -> T2IAdapter | None:
    if "adapter" in sd and isinstance(sd["adapter"], dict):
        sd = sd["adapter"]
    if "adapter.body.0.resnets.0.block1.weight" in sd:  # diffusers
        out = {}
        for k, v in sd.items():
            p = k.split(".")
            if k.startswith("adapter.body.") and p[3] == "resnets":
                i, j = int(p[2]), int(p[4])
                out[f"body.{i * 2 + j}." + ".".join(p[5:])] = v
            elif k.startswith("adapter.body."):
                out[f"body.{int(p[2]) * 2}." + ".".join(p[3:])] = v
            else:
                out[k[len("adapter."):] if k.startswith("adapter.") else k] = v
        sd = out
    if "body.0.in_conv.weight" in sd:
        cin = sd["body.0.in_conv.weight"].shape[1]
        nblocks = _count(set(sd), "body.{}.")
        channels = [sd[f"body.{i}.out_conv.weight"].shape[0] for i in range(nblocks)]
        nums_rb = _count(set(sd), "body.0.body.{}.")
        model: nn.Module = T2IAdapterLight(channels, nums_rb, cin)
    elif "conv_in.weight" in sd:
        cin = sd["conv_in.weight"].shape[1]
        ch = sd["conv_in.weight"].shape[0]
        ksize = sd["body.0.block2.weight"].shape[2]
        use_conv = any(k.endswith("down_opt.op.weight") for k in sd)
        xl = cin in (256, 768)
        nb = _count(set(sd), "body.{}.")
        nums_rb = nb // 4 if nb % 4 == 0 else 2
        model = T2IAdapterModel([ch, ch * 2, ch * 4, ch * 4], nums_rb, cin, ksize, True, use_conv, xl)
    else:
        return None
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing:
        raise ModelFileError(f"T2I-Adapter weights missing: {missing[:5]}")
    if unexpected:
        log.debug("t2i adapter unexpected keys %s", unexpected[:5])
    model.eval().requires_grad_(False)
    return T2IAdapter(model, model.input_channels)


# -------------------------------------------------------------------------------- loading
def load_controlnet_state_dict(sd: dict[str, torch.Tensor], model: Any = None, source: str = "controlnet",
                               global_average_pooling: bool = False) -> ControlBase:
    """A CONTROL_NET from a state dict of any supported layout (``model``: the MODEL patcher,
    needed for "difference" ControlNets)."""
    if "lora_controlnet" in sd:
        return ControlLora(sd)
    sd = dict(sd)
    if mmdit.is_sd35(sd):
        return mmdit.load_sd35(sd, source)
    if mmdit.is_sd3_diffusers(sd):
        return mmdit.load_sd3_diffusers(sd, source)
    if flux.is_xlabs(sd):
        return flux.load_xlabs(sd, source)
    if flux.is_mistoline(sd):
        return flux.load_xlabs(sd, source, mistoline=True)
    if flux.is_instantx(sd):
        return flux.load_instantx(sd, source)
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        cfg = _diffusers_control_config(sd)
        union = "control_add_embedding.linear_1.weight" in sd
        raw = sd
        sd, left = diffusers_control_to_ldm(sd, cfg)
        if union:  # ControlNet++ union: its extra modules keep their names
            cfg["union_num_control_type"] = raw["task_embedding"].shape[0]
            cfg["union_channels"] = raw["task_embedding"].shape[1]
            for k in left:
                if k.startswith(("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")):
                    sd[k.replace(".attn.in_proj_", ".attn.in_proj.")] = raw[k]
            left = [k for k in left if k.replace(".attn.in_proj_", ".attn.in_proj.") not in sd]
        if left:
            log.debug("%s: keys not used: %s", source, left[:5])
        prefix = ""
    elif "control_model.zero_convs.0.0.weight" in sd:
        prefix = "control_model."
        cfg = None
    elif "zero_convs.0.0.weight" in sd:
        prefix = ""
        cfg = None
    else:
        net = load_t2i_adapter(sd)
        if net is None:
            from ..family import describe_state_dict
            raise ModelFileError(f"{source}: not a ControlNet, control-LoRA or T2I-Adapter. "
                                 f"Found {describe_state_dict(sd)}")
        return net
    csd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if cfg is None:
        cfg = detect_control_config(csd)
        if "task_embedding" in csd:
            cfg["union_num_control_type"] = csd["task_embedding"].shape[0]
            cfg["union_channels"] = csd["task_embedding"].shape[1]
            csd = {k.replace(".attn.in_proj_", ".attn.in_proj."): v for k, v in csd.items()}
    if "difference" in sd:
        if model is None:
            log.warning("%s: a difference ControlNet loaded without a model (use DiffControlNetLoader); "
                        "it will very likely not work", source)
        else:
            memory.load_models_gpu([model])
            msd = model.model_state_dict()
            for k in list(csd):
                mk = "diffusion_model." + k
                if mk in msd:
                    csd[k] = csd[k] + msd[mk].to(csd[k].device, csd[k].dtype)
    hint_channels = csd["input_hint_block.0.weight"].shape[1]
    load_device = memory.get_torch_device()
    weight_dtype = memory.unet_dtype(load_device, (torch.float16, torch.float32)) if load_device.type != "cpu" else torch.float32
    manual_cast = memory.unet_manual_cast(weight_dtype, load_device, (torch.float16, torch.float32))
    cm = ControlNetModel(hint_channels=hint_channels, **cfg)
    missing, unexpected = ops.assign_state_dict(cm, csd, weight_dtype)
    if missing:
        raise ModelFileError(f"{source}: ControlNet weights missing for {len(missing)} parameters, e.g. {missing[:4]}")
    if unexpected:
        log.debug("%s: unexpected keys %s", source, unexpected[:5])
    cm.eval().requires_grad_(False)
    if manual_cast is not None and manual_cast != weight_dtype:
        ops.set_manual_cast(cm, True)
    cm.to(memory.unet_offload_device())
    return ControlNet(cm, global_average_pooling=global_average_pooling, load_device=load_device,
                      manual_cast_dtype=manual_cast if manual_cast != weight_dtype else None)


def load_controlnet(path: str, model: Any = None) -> ControlBase:
    """ControlNetLoader / DiffControlNetLoader: a file from ``models/controlnet``."""
    name = os.path.splitext(path)[0]
    gap = name.endswith("_shuffle") or name.endswith("_shuffle_fp16")
    sd = load_torch_file(path)
    return load_controlnet_state_dict(sd, model=model, source=os.path.basename(path), global_average_pooling=gap)
