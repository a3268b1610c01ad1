"""SD1.x / SD2.x / SDXL UNet detection: the LDM UNet config read back from tensor shapes.

Every width (channels, context and class-embedding widths, head layout aside) and count
(levels, res blocks, transformer depths) comes from the weights; the family rules below only
decide which of the SD variants a UNet is, in upstream ComfyUI's order.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..family import count_indexed

# text-encoder layouts next to a UNet in an original checkpoint: they win ties between
# UNets of the same shape family (ComfyUI's "clip hint")
_TEXT_ENCODER_LAYOUTS = (
    ("conditioner.embedders.1.model.", "sdxl"),
    ("conditioner.embedders.0.model.", "sdxl_refiner"),
    ("cond_stage_model.model.", "sd2"),
    ("cond_stage_model.transformer.", "sd1"),
)

# SDXL's class embedding is the pooled text embedding ++ N Fourier features of 256 each
SDXL_ADM_FIELDS = 6
REFINER_ADM_FIELDS = 5
ADM_FEATURE = 256


def text_encoder_hint(sd: Mapping[str, Any]) -> str | None:
    """Which SD text-encoder layout sits beside the UNet in ``sd`` (None for a bare UNet)."""
    for prefix, name in _TEXT_ENCODER_LAYOUTS:
        if any(k.startswith(prefix) for k in sd):
            return name
    return None


def unet_config(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """LDM UNet hyper-parameters from the keys under ``prefix``; None if there is no LDM UNet."""
    if prefix + "input_blocks.0.0.weight" not in sd or prefix + "out.2.weight" not in sd:
        return None
    ksd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    conv_in = ksd["input_blocks.0.0.weight"]
    mc = conv_in.shape[0]
    cfg: dict[str, Any] = {"in_channels": conv_in.shape[1], "model_channels": mc,
                           "out_channels": ksd["out.2.weight"].shape[0]}
    if "label_emb.0.0.weight" in ksd:
        cfg["adm_in_channels"] = ksd["label_emb.0.0.weight"].shape[1]
    n_input = count_indexed(ksd, "input_blocks.")
    channel_mult: list[int] = []
    num_res_blocks: list[int] = []
    transformer_depth: list[int] = []
    context_dim = None
    use_linear = False
    current_res = 0
    for i in range(1, n_input):
        p = f"input_blocks.{i}."
        if p + "0.op.weight" in ksd:
            num_res_blocks.append(current_res)
            current_res = 0
            continue
        out_ch = ksd[p + "0.out_layers.3.weight"].shape[0]
        if current_res == 0:
            channel_mult.append(out_ch // mc)
        current_res += 1
        depth = count_indexed(ksd, p + "1.transformer_blocks.")
        transformer_depth.append(depth)
        if depth:
            context_dim = ksd[p + "1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
            use_linear = ksd[p + "1.proj_in.weight"].ndim == 2
    num_res_blocks.append(current_res)
    n_output = count_indexed(ksd, "output_blocks.")
    tdo = [count_indexed(ksd, f"output_blocks.{i}.1.transformer_blocks.") for i in range(n_output)]
    tdm = count_indexed(ksd, "middle_block.1.transformer_blocks.")
    if tdm and context_dim is None:
        context_dim = ksd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
        use_linear = ksd["middle_block.1.proj_in.weight"].ndim == 2
    cfg.update(channel_mult=channel_mult, num_res_blocks=num_res_blocks, transformer_depth=transformer_depth,
               transformer_depth_output=list(reversed(tdo)), transformer_depth_middle=tdm,
               context_dim=context_dim, use_linear_in_transformer=use_linear)
    return cfg


def _v_prediction_heuristic(sd: Mapping[str, torch.Tensor], prefix: str, cfg: dict[str, Any]) -> bool:
    """ComfyUI's rule for SD2.x files without a ``v_pred`` marker: v-prediction checkpoints have
    a spread-out norm1 bias in the last output transformer block."""
    for i in reversed(range(len(cfg["transformer_depth_output"]))):
        t = sd.get(f"{prefix}output_blocks.{i}.1.transformer_blocks.0.norm1.bias")
        if t is not None:
            # shape-only (meta) state dicts carry no values to judge by: eps
            return not t.is_meta and bool(torch.std(t.float(), unbiased=False) > 0.09)
    return False


# ----------------------------------------------------------------------------- the variants
def _with_heads(cfg: dict[str, Any], num_heads: int, head_channels: int) -> dict[str, Any]:
    return dict(cfg, num_heads=num_heads, num_head_channels=head_channels)


def _cross_attention_unet(sd, prefix):
    cfg = unet_config(sd, prefix)
    if cfg is None or cfg["in_channels"] not in (4, 9) or cfg["context_dim"] is None:
        return None
    return cfg


def _is_unclip(cfg: dict[str, Any], hint: str | None) -> bool:
    # unCLIP's class embedding = image embedding ++ its noise-level embedding (two equal halves)
    adm = cfg.get("adm_in_channels")
    if adm is None:
        return False
    if hint is not None:
        return hint == "sd2"
    return cfg["use_linear_in_transformer"] and cfg["transformer_depth"][0] > 0 and not _is_refiner(cfg, None)


def _is_refiner(cfg: dict[str, Any], hint: str | None) -> bool:
    if hint is not None:
        return hint == "sdxl_refiner"
    return cfg["adm_in_channels"] - REFINER_ADM_FIELDS * ADM_FEATURE == cfg["context_dim"]


# Lotus-D's class embedding: sin and cos of its task code (depth = [1, 0])
LOTUS_TASK_FEATURES = 4


def detect_lotus(sd, prefix):
    """Lotus-D (an SD2 UNet fine-tuned into a depth/normal estimator): its class embedding
    takes the 4-number task embedding. Heads as upstream configures it: 8 per block."""
    cfg = _cross_attention_unet(sd, prefix)
    hint = text_encoder_hint(sd)
    if cfg is None or cfg.get("adm_in_channels") != LOTUS_TASK_FEATURES or hint not in (None, "sd2"):
        return None
    if not cfg["use_linear_in_transformer"] or cfg["in_channels"] != 4:
        return None
    return _with_heads(cfg, 8, -1)


def detect_sd15(sd, prefix):
    cfg = _cross_attention_unet(sd, prefix)
    hint = text_encoder_hint(sd)
    if cfg is None or "adm_in_channels" in cfg:
        return None
    if hint == "sd1" or (hint is None and not cfg["use_linear_in_transformer"]):
        return _with_heads(cfg, 8, -1)
    return None


def _sd20(sd, prefix):
    cfg = _cross_attention_unet(sd, prefix)
    hint = text_encoder_hint(sd)
    if cfg is None or "adm_in_channels" in cfg:
        return None
    if hint == "sd2" or (hint is None and cfg["use_linear_in_transformer"]):
        return _with_heads(cfg, -1, 64)
    return None


def detect_sd20_v(sd, prefix):
    """SD2.x v-prediction (768-v): the marker key, or ComfyUI's norm-bias rule (not for the
    9-channel inpainting models, which are eps)."""
    cfg = _sd20(sd, prefix)
    if cfg is None or "v_pred" in sd:
        return cfg
    if cfg["in_channels"] == 4 and _v_prediction_heuristic(sd, prefix, cfg):
        return cfg
    return None


def detect_sd20(sd, prefix):
    return _sd20(sd, prefix)


def _unclip(sd, prefix):
    cfg = _cross_attention_unet(sd, prefix)
    if cfg is None or not _is_unclip(cfg, text_encoder_hint(sd)):
        return None
    return _with_heads(cfg, -1, 64)


def detect_sd21_unclip_v(sd, prefix):
    cfg = _unclip(sd, prefix)
    if cfg is None or "v_pred" in sd or _v_prediction_heuristic(sd, prefix, cfg):
        return cfg
    return None


def detect_sd21_unclip(sd, prefix):
    return _unclip(sd, prefix)


def detect_sdxl_refiner(sd, prefix):
    cfg = _cross_attention_unet(sd, prefix)
    hint = text_encoder_hint(sd)
    if cfg is None or "adm_in_channels" not in cfg or _is_unclip(cfg, hint) or not _is_refiner(cfg, hint):
        return None
    return _with_heads(cfg, -1, 64)


def detect_sdxl(sd, prefix):
    cfg = _cross_attention_unet(sd, prefix)
    hint = text_encoder_hint(sd)
    if cfg is None or "adm_in_channels" not in cfg or _is_unclip(cfg, hint) or _is_refiner(cfg, hint):
        return None
    if cfg["adm_in_channels"] <= SDXL_ADM_FIELDS * ADM_FEATURE:
        return None  # no room for a pooled text embedding: not SDXL's class embedding
    return _with_heads(cfg, -1, 64)


def describe_unet(sd, prefix):
    cfg = unet_config(sd, prefix)
    if cfg is None:
        return None
    return (f"an LDM UNet that is no SD1.x/SD2.x/SDXL variant: in_channels={cfg['in_channels']} "
            f"(4 = txt2img, 9 = inpainting), model_channels={cfg['model_channels']}, "
            f"context_dim={cfg['context_dim']}, adm_in_channels={cfg.get('adm_in_channels')}")


def inpaint_variant(name: str):
    def variant(cfg: dict[str, Any]) -> str:
        return name + ("_inpaint" if cfg.get("in_channels") == 9 else "")
    return variant
