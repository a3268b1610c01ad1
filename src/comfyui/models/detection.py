"""Recognise a model from its state dict (never from its file name).

:func:`detect_unet_config` reads the UNet hyper-parameters back from LDM keys;
:func:`model_config_from_unet` classifies it (SD1.x, SD2.x eps / v-prediction, SDXL base,
SDXL refiner, and the 9-channel inpainting variants). :func:`split_checkpoint` finds the
UNet, VAE and text encoders inside an original single-file checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import base
from .convert import open_clip_to_hf


class UnknownModelError(ValueError):
    pass


@dataclass
class ModelConfig:
    name: str
    unet_config: dict[str, Any]
    latent_format: type
    model_class: type
    clip_family: str
    prediction: str = "eps"
    sampling_settings: dict[str, Any] = field(default_factory=dict)
    memory_usage_factor: float = 1.0
    supported_inference_dtypes: tuple = (torch.float16, torch.float32)

    @property
    def inpaint(self) -> bool:
        return self.unet_config.get("in_channels") == 9


def _count(sd: dict[str, Any], prefix: str, sub: str = "") -> int:
    n = 0
    while any(k.startswith(f"{prefix}{n}.{sub}") for k in sd):
        n += 1
    return n


def detect_unet_config(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
    """UNet hyper-parameters from LDM keys under ``prefix`` (e.g. ``model.diffusion_model.``)."""
    keys = [k[len(prefix):] for k in sd if k.startswith(prefix)]
    ksd = {k: sd[prefix + k] for k in keys}
    if "input_blocks.0.0.weight" not in ksd:
        raise UnknownModelError("no UNet input convolution (input_blocks.0.0.weight) found")
    conv_in = ksd["input_blocks.0.0.weight"]
    mc = conv_in.shape[0]
    cfg: dict[str, Any] = {"in_channels": conv_in.shape[1], "model_channels": mc,
                           "out_channels": ksd["out.2.weight"].shape[0]}
    if "label_emb.0.0.weight" in ksd:
        cfg["adm_in_channels"] = ksd["label_emb.0.0.weight"].shape[1]
    n_input = 0
    while f"input_blocks.{n_input}.0.weight" in ksd or any(k.startswith(f"input_blocks.{n_input}.") for k in ksd):
        n_input += 1
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
        depth = _count(ksd, p + "1.transformer_blocks.")
        transformer_depth.append(depth)
        if depth:
            context_dim = ksd[p + "1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
            use_linear = ksd[p + "1.proj_in.weight"].ndim == 2
    num_res_blocks.append(current_res)
    n_output = 0
    while any(k.startswith(f"output_blocks.{n_output}.") for k in ksd):
        n_output += 1
    tdo = [_count(ksd, f"output_blocks.{i}.1.transformer_blocks.") for i in range(n_output)]
    tdm = _count(ksd, "middle_block.1.transformer_blocks.")
    if tdm and context_dim is None:
        context_dim = ksd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
        use_linear = ksd["middle_block.1.proj_in.weight"].ndim == 2
    cfg.update(channel_mult=channel_mult, num_res_blocks=num_res_blocks, transformer_depth=transformer_depth,
               transformer_depth_output=list(reversed(tdo)), transformer_depth_middle=tdm,
               context_dim=context_dim, use_linear_in_transformer=use_linear)
    return cfg


def _last_attn_norm_bias(sd: dict[str, torch.Tensor], prefix: str, cfg: dict[str, Any]) -> torch.Tensor | None:
    n_out = len(cfg["transformer_depth_output"])
    for i in reversed(range(n_out)):
        t = sd.get(f"{prefix}output_blocks.{i}.1.transformer_blocks.0.norm1.bias")
        if t is not None:
            return t
    return None


def model_config_from_unet(sd: dict[str, torch.Tensor], prefix: str = "", clip_hint: str | None = None) -> ModelConfig:
    """Classify the UNet under ``prefix``. ``clip_hint`` ("sd1", "sd2", "sdxl",
    "sdxl_refiner") comes from text encoders found next to it and wins ties."""
    cfg = detect_unet_config(sd, prefix)
    ctx = cfg["context_dim"]
    adm = cfg.get("adm_in_channels")
    inch = cfg["in_channels"]
    if inch not in (4, 9):
        raise UnknownModelError(
            f"unsupported UNet: in_channels={inch} (4 = txt2img, 9 = inpainting), context_dim={ctx}, adm_in_channels={adm}")
    settings: dict[str, Any] = {}
    if "ztsnr" in sd:
        settings["zsnr"] = True
    if adm is not None and (clip_hint == "sd2" or (clip_hint is None and adm in (1536, 2048) and ctx == 1024)):
        # SD 2.1 unCLIP: y = noise-augmented CLIP image embedding ++ noise-level embedding
        from .clip_vision import unclip_model_class
        cfg["num_heads"], cfg["num_head_channels"] = -1, 64
        prediction = "v_prediction" if "v_pred" in sd else "eps"
        t = _last_attn_norm_bias(sd, prefix, cfg)
        if "v_pred" not in sd and t is not None and torch.std(t.float(), unbiased=False) > 0.09:
            prediction = "v_prediction"
        return ModelConfig("SD21UNCLIP", cfg, base.SD15, unclip_model_class(), "sd2", prediction, settings,
                           supported_inference_dtypes=(torch.float16, torch.bfloat16, torch.float32))
    if adm is not None:
        refiner = clip_hint == "sdxl_refiner" or (clip_hint != "sdxl" and ctx is not None and adm - 1280 == ctx)
        if not refiner and adm <= 1536:
            raise UnknownModelError(
                f"unknown UNet with a class embedding: adm_in_channels={adm}, context_dim={ctx}, "
                f"model_channels={cfg['model_channels']} (not SDXL base or refiner)")
        cfg["num_heads"], cfg["num_head_channels"] = -1, 64
        prediction = "v_prediction" if "v_pred" in sd else "eps"
        if refiner:
            return ModelConfig("SDXLRefiner", cfg, base.SDXL, base.SDXLRefinerModel, "sdxl_refiner", prediction,
                               settings, memory_usage_factor=1.0,
                               supported_inference_dtypes=(torch.float16, torch.bfloat16, torch.float32))
        return ModelConfig("SDXL" + ("Inpaint" if inch == 9 else ""), cfg, base.SDXL, base.SDXLModel, "sdxl",
                           prediction, settings, memory_usage_factor=0.8,
                           supported_inference_dtypes=(torch.float16, torch.bfloat16, torch.float32))
    if ctx is None:
        raise UnknownModelError(f"unknown UNet without cross-attention (model_channels={cfg['model_channels']})")
    sd2 = clip_hint == "sd2" or (clip_hint != "sd1" and cfg["use_linear_in_transformer"])
    if sd2:
        cfg["num_heads"], cfg["num_head_channels"] = -1, 64
        prediction = "eps"
        if "v_pred" in sd:
            prediction = "v_prediction"
        elif inch == 4:
            # ComfyUI's heuristic: v-prediction SD2 checkpoints have a spread-out norm1 bias
            # in the last output transformer block (SD2.x inpainting models are eps)
            t = _last_attn_norm_bias(sd, prefix, cfg)
            if t is not None and torch.std(t.float(), unbiased=False) > 0.09:
                prediction = "v_prediction"
        return ModelConfig("SD20" + ("Inpaint" if inch == 9 else ""), cfg, base.SD15, base.SD20Model, "sd2",
                           prediction, settings,
                           supported_inference_dtypes=(torch.float16, torch.bfloat16, torch.float32))
    cfg["num_heads"], cfg["num_head_channels"] = 8, -1
    return ModelConfig("SD15" + ("Inpaint" if inch == 9 else ""), cfg, base.SD15, base.SD15Model, "sd1",
                       "v_prediction" if "v_pred" in sd else "eps", settings)


# --------------------------------------------------------------------------- checkpoints
UNET_PREFIXES = ("model.diffusion_model.",)
VAE_PREFIX = "first_stage_model."


def find_text_encoders(sd: dict[str, torch.Tensor]) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(family, HF-layout state dict keyed ``clip_<key>.transformer.*``) for the text
    encoders inside an original single-file checkpoint; (None, {}) when there are none."""

    def hf_from(prefix: str) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in sd.items():
            if k.startswith(prefix):
                rest = k[len(prefix):]
                if not rest.startswith("text_model.") and not rest.startswith("text_projection"):
                    rest = "text_model." + rest  # very old SD1 files
                out[rest] = v
        return out

    def add(out: dict, key: str, part: dict) -> None:
        for k, v in part.items():
            out[f"clip_{key}.transformer.{k}"] = v

    out: dict[str, torch.Tensor] = {}
    has = lambda p: any(k.startswith(p) for k in sd)  # noqa: E731
    if has("conditioner.embedders.1.model."):
        add(out, "l", hf_from("conditioner.embedders.0.transformer."))
        add(out, "g", open_clip_to_hf(sd, "conditioner.embedders.1.model."))
        return "sdxl", out
    if has("conditioner.embedders.0.model."):
        add(out, "g", open_clip_to_hf(sd, "conditioner.embedders.0.model."))
        return "sdxl_refiner", out
    if has("cond_stage_model.model.") and "cond_stage_model.model.token_embedding.weight" in sd:
        add(out, "h", open_clip_to_hf(sd, "cond_stage_model.model."))
        return "sd2", out
    if has("cond_stage_model.transformer."):
        add(out, "l", hf_from("cond_stage_model.transformer."))
        return "sd1", out
    return None, {}


def describe_state_dict(sd: dict[str, Any], limit: int = 6) -> str:
    prefixes: dict[str, int] = {}
    for k in sd:
        p = ".".join(k.split(".")[:2])
        prefixes[p] = prefixes.get(p, 0) + 1
    top = sorted(prefixes.items(), key=lambda kv: -kv[1])[:limit]
    return f"{len(sd)} tensors; key prefixes: " + ", ".join(f"{p}.* ({n})" for p, n in top)
