"""Tiny random ControlNet / T2I-Adapter / control-LoRA files in the layouts users download.

``diffusers_controlnet``: a random diffusers ``ControlNetModel`` (an independent
implementation) for the tiny UNet shapes; ``write_controlnet`` saves its weights either as
diffusers keys or renamed to the original ControlNet v1.1 layout (``control_model.*``, as in
``control_v11p_sd15_scribble_fp16.safetensors``) with the renaming checked by the tests
against diffusers' outputs. ``write_t2i_adapter`` writes a TencentARC-layout full adapter
(``conv_in``, ``body.N.block1/2``, ``body.N.in_conv``, ``body.N.down_opt.op``) as a .pth
pickle, like ``t2iadapter_depth_sd15v2.pth``.
"""
from __future__ import annotations

import os
from typing import Any

import torch

# the SD1.5 UNet structure (4 levels, 2 res blocks, 12 input blocks) at a tiny width
SD15_SHAPED_UNET = dict(in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[2, 2, 2, 2],
                        channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                        transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                        context_dim=32, num_heads=8, num_head_channels=-1, use_linear_in_transformer=False)


def sd15_shaped_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny single-file checkpoint (UNet, VAE, CLIP-L) with the SD1.5 UNet structure, built
    with the models engineer's fixture helpers."""
    from models import fixtures as fx
    sd = fx._prefixed(fx.unet_sd(SD15_SHAPED_UNET, seed), "model.diffusion_model.")
    sd.update(fx._prefixed(fx.vae_sd(fx.TINY_VAE, seed + 1), "first_stage_model."))
    te = fx.hf_text_model(32, 2, None, "quick_gelu", seed + 2)
    sd.update(fx._prefixed(fx.hf_text_sd(te), "cond_stage_model.transformer."))
    return sd


def control_lora_from(ldm: dict[str, torch.Tensor], unet: dict[str, torch.Tensor], rank: int = 4, seed: int = 0):
    """A control-LoRA (``lora_controlnet`` + ``<layer>.up/.down`` deltas on the base UNet's
    input half + full hint / zero-conv / norm weights) and the full ControlNet it is equivalent
    to (LDM keys without prefix): weights on the UNet take the base weight plus up @ down."""
    g = torch.Generator().manual_seed(seed)
    lora: dict[str, torch.Tensor] = {"lora_controlnet": torch.tensor([])}
    full: dict[str, torch.Tensor] = {}
    for k, v in ldm.items():
        k = k[len("control_model."):]
        base = unet.get(k)
        if base is not None and k.endswith(".weight") and v.ndim >= 2:
            name = k[:-len(".weight")]
            up = torch.randn((v.shape[0], rank) + (1,) * (v.ndim - 2), generator=g) * 0.05
            down = torch.randn((rank,) + tuple(v.shape[1:]), generator=g) * 0.05
            lora[name + ".up"], lora[name + ".down"] = up, down
            full[k] = base + (up.flatten(1) @ down.flatten(1)).reshape(v.shape)
        else:
            lora[k] = v
            full[k] = v
    return lora, full


def diffusers_config(ucfg: dict[str, Any]) -> dict[str, Any]:
    levels = len(ucfg["channel_mult"])
    td = ucfg["transformer_depth"]
    nrb = ucfg["num_res_blocks"]
    types = []
    for lvl in range(levels):
        d = td[sum(nrb[:lvl])]
        types.append("CrossAttnDownBlock2D" if d else "DownBlock2D")
    cfg = dict(in_channels=ucfg["in_channels"], block_out_channels=[ucfg["model_channels"] * m for m in ucfg["channel_mult"]],
               layers_per_block=nrb[0], down_block_types=types, cross_attention_dim=ucfg["context_dim"],
               norm_num_groups=32, conditioning_embedding_out_channels=(16, 32, 96, 256))
    if ucfg.get("use_linear_in_transformer"):
        cfg["use_linear_projection"] = True
    if ucfg.get("num_heads", -1) > 0:
        cfg["attention_head_dim"] = ucfg["num_heads"]
    else:
        cfg["attention_head_dim"] = [c // ucfg["num_head_channels"] for c in cfg["block_out_channels"]]
    if ucfg.get("adm_in_channels"):
        cfg.update(addition_embed_type="text_time", addition_time_embed_dim=256,
                   projection_class_embeddings_input_dim=ucfg["adm_in_channels"],
                   transformer_layers_per_block=[max(1, td[sum(nrb[:i])]) for i in range(levels)])
    return cfg


def diffusers_controlnet(ucfg: dict[str, Any] = SD15_SHAPED_UNET, seed: int = 0):
    from diffusers import ControlNetModel
    torch.manual_seed(seed)
    m = ControlNetModel(**diffusers_config(ucfg)).eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # zero convs are zero-initialised: make them (and norms) non-trivial
        for n, p in m.named_parameters():
            if n.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "norm" in n and n.endswith("weight"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def ldm_from_diffusers(m) -> dict[str, torch.Tensor]:
    """The original ControlNet layout (``control_model.`` prefix) of a diffusers ControlNetModel."""
    from comfyui.models.controlnet import _diffusers_control_config, diffusers_control_to_ldm
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    ldm, left = diffusers_control_to_ldm(sd, _diffusers_control_config(sd))
    assert not left, left[:5]
    return {"control_model." + k: v for k, v in ldm.items()}


def _save(sd: dict[str, torch.Tensor], path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sd = {k: v.contiguous() for k, v in sd.items()}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, path)
    else:
        torch.save(sd, path)
    return path


def write_controlnet(path: str, layout: str = "ldm", seed: int = 0, ucfg: dict[str, Any] = SD15_SHAPED_UNET,
                     dtype: torch.dtype = torch.float16):
    """Write a tiny ControlNet; returns the diffusers model it was made from (float32)."""
    m = diffusers_controlnet(ucfg, seed)
    sd = ldm_from_diffusers(m) if layout == "ldm" else {k: v.detach().clone() for k, v in m.state_dict().items()}
    _save({k: v.to(dtype) for k, v in sd.items()}, path)
    if dtype != torch.float32:  # the model the file really holds
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.to(dtype).float())
    return m


def t2i_adapter_sd(cin: int = 64 * 3, ch: int = 32, nums_rb: int = 2, ksize: int = 1, seed: int = 0,
                   use_conv: bool = False) -> dict[str, torch.Tensor]:
    """TencentARC full adapter keys (sk=True): in_conv only where the channel count changes."""
    g = torch.Generator().manual_seed(seed)
    chans = [ch, ch * 2, ch * 4, ch * 4]
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin_: int, k: int) -> None:
        sd[name + ".weight"] = torch.randn(cout, cin_, k, k, generator=g) * (1.0 / (cin_ * k * k)) ** 0.5
        sd[name + ".bias"] = torch.randn(cout, generator=g) * 0.02

    conv("conv_in", chans[0], cin, 3)
    for i in range(4):
        for j in range(nums_rb):
            n = i * nums_rb + j
            cin_ = chans[i - 1] if (j == 0 and i > 0) else chans[i]
            if j == 0 and i > 0 and use_conv:
                conv(f"body.{n}.down_opt.op", cin_, cin_, 3)
            if cin_ != chans[i]:
                conv(f"body.{n}.in_conv", chans[i], cin_, ksize)
            conv(f"body.{n}.block1", chans[i], chans[i], 3)
            conv(f"body.{n}.block2", chans[i], chans[i], ksize)
    return sd


def write_t2i_adapter(path: str, seed: int = 0, **kw) -> dict[str, torch.Tensor]:
    sd = t2i_adapter_sd(seed=seed, **kw)
    _save(sd, path)
    return sd


def diffusers_union_controlnet(ucfg: dict[str, Any], seed: int = 0, num_control_type: int = 6):
    """A random diffusers ``ControlNetUnionModel`` (ControlNet++ layout) for the tiny shapes."""
    from diffusers import ControlNetUnionModel
    torch.manual_seed(seed)
    cfg = diffusers_config(ucfg)
    cfg.pop("conditioning_embedding_out_channels")
    mc = ucfg["model_channels"]
    cfg.update(conditioning_embedding_out_channels=(16, 32, 96, 256), num_control_type=num_control_type,
               num_trans_channel=mc, num_trans_head=8, num_proj_channel=mc, addition_time_embed_dim=256)
    m = ControlNetUnionModel(**cfg).eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out",
                             "spatial_ch_projs")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "norm" in n and n.endswith("weight"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return m
