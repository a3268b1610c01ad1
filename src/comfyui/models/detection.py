"""The parts of an original single-file checkpoint besides its diffusion model: the text
encoders (:func:`find_text_encoders`) and the VAE (under :data:`VAE_PREFIX`). Which family
the diffusion model is comes from :func:`comfyui.models.registry.detect_family`."""
from __future__ import annotations

import torch

from .convert import open_clip_to_hf
from .text_encoders.recipes import CLIP_TYPES


# --------------------------------------------------------------------------- checkpoints
VAE_PREFIX = "first_stage_model."
# the layout of ComfyUI's all-in-one DiT checkpoints (Flux, SD3): vae.*, text_encoders.<recipe>.*
DIT_VAE_PREFIX = "vae."
DIT_TEXT_ENCODERS_PREFIX = "text_encoders."


def find_vae(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE weights inside a single-file checkpoint (LDM or all-in-one DiT layout), {} if none."""
    for prefix in (VAE_PREFIX, DIT_VAE_PREFIX):
        part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if part:
            return part
    return {}


def find_text_encoders(sd: dict[str, torch.Tensor]) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(checkpoint CLIP type -- "sd1", "sd2", "sdxl", "sdxl_refiner" --, state dict in the
    encoders' native layout keyed ``<recipe>.transformer.*``) for the text encoders inside an
    original single-file checkpoint; (None, {}) when there are none."""

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
    if has(DIT_TEXT_ENCODERS_PREFIX):  # already in the recipes' native keys
        part = {k[len(DIT_TEXT_ENCODERS_PREFIX):]: v for k, v in sd.items() if k.startswith(DIT_TEXT_ENCODERS_PREFIX)}
        encoders = {k.split(".", 1)[0] for k in part if "." in k}
        if len(encoders) == 1:  # tokenizer data beside one encoder (upstream: text_encoders.spiece_model)
            part = {k if "." in k else f"{next(iter(encoders))}.{k}": v for k, v in part.items()}
        present = {k.split(".", 1)[0] for k in part}
        for ctype in CLIP_TYPES.values():
            if not ctype.one_of and set(ctype.recipes) == present:
                return ctype.name, part
        for ctype in CLIP_TYPES.values():  # one encoder of a single-file type (Lumina 2's Gemma)
            if ctype.one_of and len(present) == 1 and present <= set(ctype.recipes):
                return ctype.name, part
    return None, {}
