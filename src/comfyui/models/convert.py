"""State-dict layout conversions: OpenCLIP text towers -> transformers layout, diffusers
UNet/VAE <-> original LDM names."""
from __future__ import annotations

from typing import Any

import torch


# ------------------------------------------------------------------------------ OpenCLIP
def open_clip_to_hf(sd: dict[str, torch.Tensor], prefix: str, out_prefix: str = "") -> dict[str, torch.Tensor]:
    """Convert an OpenCLIP text tower (``{prefix}token_embedding.weight``,
    ``transformer.resblocks.N.attn.in_proj_weight``, ``ln_final``, ``text_projection``
    [width, proj]) to transformers ``CLIPTextModel`` keys under ``out_prefix``."""
    out: dict[str, torch.Tensor] = {}
    p = prefix
    o = out_prefix + "text_model."
    if p + "token_embedding.weight" in sd:
        out[o + "embeddings.token_embedding.weight"] = sd[p + "token_embedding.weight"]
    if p + "positional_embedding" in sd:
        out[o + "embeddings.position_embedding.weight"] = sd[p + "positional_embedding"]
    if p + "ln_final.weight" in sd:
        out[o + "final_layer_norm.weight"] = sd[p + "ln_final.weight"]
        out[o + "final_layer_norm.bias"] = sd[p + "ln_final.bias"]
    if p + "text_projection" in sd:
        out[out_prefix + "text_projection.weight"] = sd[p + "text_projection"].transpose(0, 1).contiguous()
    elif p + "text_projection.weight" in sd:
        out[out_prefix + "text_projection.weight"] = sd[p + "text_projection.weight"]
    i = 0
    while p + f"transformer.resblocks.{i}.ln_1.weight" in sd:
        rb = p + f"transformer.resblocks.{i}."
        lo = o + f"encoder.layers.{i}."
        w = sd[rb + "attn.in_proj_weight"]
        b = sd[rb + "attn.in_proj_bias"]
        d = w.shape[0] // 3
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[lo + f"self_attn.{name}.weight"] = w[j * d:(j + 1) * d]
            out[lo + f"self_attn.{name}.bias"] = b[j * d:(j + 1) * d]
        pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for a, bname in pairs.items():
            for s in ("weight", "bias"):
                out[lo + f"{bname}.{s}"] = sd[rb + f"{a}.{s}"]
        i += 1
    return out


def hf_to_open_clip(sd: dict[str, torch.Tensor], prefix: str = "", out_prefix: str = "") -> dict[str, torch.Tensor]:
    """Inverse of :func:`open_clip_to_hf` (for CheckpointSave and fixtures)."""
    out: dict[str, torch.Tensor] = {}
    o = prefix + "text_model."
    out[out_prefix + "token_embedding.weight"] = sd[o + "embeddings.token_embedding.weight"]
    out[out_prefix + "positional_embedding"] = sd[o + "embeddings.position_embedding.weight"]
    out[out_prefix + "ln_final.weight"] = sd[o + "final_layer_norm.weight"]
    out[out_prefix + "ln_final.bias"] = sd[o + "final_layer_norm.bias"]
    if prefix + "text_projection.weight" in sd:
        out[out_prefix + "text_projection"] = sd[prefix + "text_projection.weight"].transpose(0, 1).contiguous()
    i = 0
    while o + f"encoder.layers.{i}.layer_norm1.weight" in sd:
        lo = o + f"encoder.layers.{i}."
        rb = out_prefix + f"transformer.resblocks.{i}."
        out[rb + "attn.in_proj_weight"] = torch.cat([sd[lo + f"self_attn.{n}.weight"] for n in ("q_proj", "k_proj", "v_proj")])
        out[rb + "attn.in_proj_bias"] = torch.cat([sd[lo + f"self_attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")])
        pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for a, bname in pairs.items():
            for s in ("weight", "bias"):
                out[rb + f"{a}.{s}"] = sd[lo + f"{bname}.{s}"]
        i += 1
    return out


# ---------------------------------------------------------------------------------- UNet
_RESNET = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}


def _transformer_keys(depth: int) -> list[str]:
    keys = ["norm.weight", "norm.bias", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias"]
    for j in range(depth):
        b = f"transformer_blocks.{j}."
        for n in ("norm1", "norm2", "norm3"):
            keys += [b + n + ".weight", b + n + ".bias"]
        for a in ("attn1", "attn2"):
            keys += [b + f"{a}.to_q.weight", b + f"{a}.to_k.weight", b + f"{a}.to_v.weight",
                     b + f"{a}.to_out.0.weight", b + f"{a}.to_out.0.bias"]
        keys += [b + "ff.net.0.proj.weight", b + "ff.net.0.proj.bias", b + "ff.net.2.weight", b + "ff.net.2.bias"]
    return keys


def unet_to_diffusers(unet_config: dict[str, Any]) -> dict[str, str]:
    """{diffusers UNet2DConditionModel key: LDM key} for a UNet config (all keys that
    may exist; a key missing from a given checkpoint, e.g. a skip conv, is simply absent)."""
    levels = len(unet_config["channel_mult"])
    nrb = unet_config["num_res_blocks"]
    nrb = [nrb] * levels if isinstance(nrb, int) else list(nrb)
    td = list(unet_config.get("transformer_depth", [1] * sum(nrb)))
    tdo = list(unet_config.get("transformer_depth_output", []))
    tdm = unet_config.get("transformer_depth_middle", max(td) if td else 0)
    m: dict[str, str] = {}

    def resnet(dpfx: str, lpfx: str) -> None:
        for a, b in _RESNET.items():
            for s in ("weight", "bias"):
                m[f"{dpfx}{b}.{s}"] = f"{lpfx}{a}.{s}"

    def attn(dpfx: str, lpfx: str, depth: int) -> None:
        for k in _transformer_keys(depth):
            m[dpfx + k] = lpfx + k

    for x in range(levels):
        n = 1 + (nrb[x] + 1) * x
        for i in range(nrb[x]):
            resnet(f"down_blocks.{x}.resnets.{i}.", f"input_blocks.{n}.0.")
            depth = td[sum(nrb[:x]) + i]
            if depth > 0:
                attn(f"down_blocks.{x}.attentions.{i}.", f"input_blocks.{n}.1.", depth)
            n += 1
        if x < levels - 1:
            for s in ("weight", "bias"):
                m[f"down_blocks.{x}.downsamplers.0.conv.{s}"] = f"input_blocks.{n}.0.op.{s}"

    resnet("mid_block.resnets.0.", "middle_block.0.")
    if tdm > 0:
        attn("mid_block.attentions.0.", "middle_block.1.", tdm)
        resnet("mid_block.resnets.1.", "middle_block.2.")
    else:
        resnet("mid_block.resnets.1.", "middle_block.1.")

    rev = list(reversed(range(levels)))
    n = 0
    tdo_rev = list(reversed(tdo))
    for x, level in enumerate(rev):
        for i in range(nrb[level] + 1):
            resnet(f"up_blocks.{x}.resnets.{i}.", f"output_blocks.{n}.0.")
            depth = tdo_rev[n] if n < len(tdo_rev) else 0
            c = 1
            if depth > 0:
                attn(f"up_blocks.{x}.attentions.{i}.", f"output_blocks.{n}.1.", depth)
                c = 2
            if i == nrb[level] and level != 0:
                for s in ("weight", "bias"):
                    m[f"up_blocks.{x}.upsamplers.0.conv.{s}"] = f"output_blocks.{n}.{c}.conv.{s}"
            n += 1

    basic = {
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    }
    if unet_config.get("adm_in_channels") is not None:
        basic["add_embedding.linear_1"] = "label_emb.0.0"
        basic["add_embedding.linear_2"] = "label_emb.0.2"
    for a, b in basic.items():
        for s in ("weight", "bias"):
            m[f"{a}.{s}"] = f"{b}.{s}"
    return m


def diffusers_unet_to_ldm(sd: dict[str, torch.Tensor], unet_config: dict[str, Any]) -> dict[str, torch.Tensor]:
    mapping = unet_to_diffusers(unet_config)
    # a projected class embedding (Lotus' task input) is the same label_emb as SDXL's add_embedding
    sd = {("add_" + k[len("class_"):] if k.startswith("class_embedding.") else k): v for k, v in sd.items()}
    return {mapping[k]: v for k, v in sd.items() if k in mapping}


def unet_config_from_diffusers(cfg: dict[str, Any]) -> dict[str, Any]:
    """LDM UNet config from a diffusers ``unet/config.json``."""
    blocks = cfg["block_out_channels"]
    mc = blocks[0]
    levels = len(blocks)
    nrb = cfg.get("layers_per_block", 2)
    nrb = [nrb] * levels if isinstance(nrb, int) else list(nrb)
    tl = cfg.get("transformer_layers_per_block", 1)
    tl = [tl] * levels if isinstance(tl, int) else list(tl)
    down = cfg["down_block_types"]
    td, tdo = [], []
    for lvl in range(levels):
        d = tl[lvl] if "CrossAttn" in down[lvl] else 0
        td += [d] * nrb[lvl]
        tdo += [d] * (nrb[lvl] + 1)
    mid_type = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    tdm = tl[-1] if mid_type and "CrossAttn" in mid_type else 0
    if cfg.get("transformer_layers_per_block") is None:
        tdm = 1
    heads = cfg.get("attention_head_dim", 8)
    out: dict[str, Any] = dict(
        in_channels=cfg.get("in_channels", 4), out_channels=cfg.get("out_channels", 4), model_channels=mc,
        num_res_blocks=nrb, channel_mult=[b // mc for b in blocks], transformer_depth=td,
        transformer_depth_output=tdo, transformer_depth_middle=tdm, context_dim=cfg.get("cross_attention_dim", 768),
        use_linear_in_transformer=bool(cfg.get("use_linear_projection", False)),
    )
    if isinstance(heads, int) and not cfg.get("use_linear_projection", False) and cfg.get("addition_embed_type") is None:
        out["num_heads"] = heads
        out["num_head_channels"] = -1
    else:
        out["num_heads"] = -1
        out["num_head_channels"] = 64
    if cfg.get("addition_embed_type") == "text_time" or cfg.get("class_embed_type") == "projection":
        out["adm_in_channels"] = cfg["projection_class_embeddings_input_dim"]
    return out


# ----------------------------------------------------------------------------------- VAE
def diffusers_vae_to_ldm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    n_up = len({k.split(".")[2] for k in sd if k.startswith("decoder.up_blocks.")})
    res = {"conv_shortcut": "nin_shortcut"}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
            "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
    for k, v in sd.items():
        parts = k.split(".")
        nk = k
        if parts[1] == "down_blocks":
            i = parts[2]
            if parts[3] == "resnets":
                nk = f"encoder.down.{i}.block.{parts[4]}." + ".".join(res.get(p, p) for p in parts[5:])
            else:
                nk = f"encoder.down.{i}.downsample.conv." + parts[-1]
        elif parts[1] == "up_blocks":
            i = n_up - 1 - int(parts[2])
            if parts[3] == "resnets":
                nk = f"decoder.up.{i}.block.{parts[4]}." + ".".join(res.get(p, p) for p in parts[5:])
            else:
                nk = f"decoder.up.{i}.upsample.conv." + parts[-1]
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                blk = "block_1" if parts[3] == "0" else "block_2"
                nk = f"{parts[0]}.mid.{blk}." + ".".join(res.get(p, p) for p in parts[4:])
            else:
                rest = ".".join(parts[4:-1])
                nk = f"{parts[0]}.mid.attn_1.{attn.get(rest, rest)}.{parts[-1]}"
                if v.ndim == 2:
                    v = v[:, :, None, None]
        elif parts[1] == "conv_norm_out":
            nk = f"{parts[0]}.norm_out.{parts[-1]}"
        out[nk] = v
    return out


def normalize_hf_text_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers CLIP text weights saved with or without the ``text_model.`` prefix
    (transformers 5 drops it) -> always with it; ``position_ids`` buffers dropped."""
    out = {}
    for k, v in sd.items():
        if k.endswith("position_ids"):
            continue
        if k.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
            k = "text_model." + k
        out[k] = v
    return out
