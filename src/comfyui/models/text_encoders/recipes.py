"""Text encoders as data: the encoder recipes (:data:`RECIPES`) and the CLIP types
(:data:`CLIP_TYPES`) that combine them into a CONDITIONING.

An :class:`EncoderRecipe` says how to recognise one text encoder's file, read its config
from tensor shapes, build it and tokenize for it. The built module (a ``torch.nn.Module``
whose ``state_dict()`` keys are the native ones) provides
``encode_token_weights(token_weight_pairs) -> (hidden [1,T,C], pooled [1,C] | None)`` or
``(hidden, pooled, extra: dict)`` (extra entries go into the conditioning dict, e.g. an
attention mask); :func:`comfyui.models.text_encoders.weighting.encode_with_weights` does
ComfyUI's prompt weighting for it. Optional: ``clip_layer(idx)`` / ``reset_clip_layer()``
(CLIPSetLastLayer) and a ``compute_dtype`` attribute (set when the weights are fp8).

A :class:`ClipType` is what ``CLIPLoader`` / ``DualCLIPLoader`` / ``TripleCLIPLoader`` call a
``type``: which recipes it takes, their build options, and how their outputs become one
conditioning entry. A type whose recipes are not all here is listed by the loaders (upstream
lists it) but refused at prompt validation (:func:`clip_type_problem`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from . import clip, gemma2, qwen3, t5, umt5

Outputs = Mapping[str, tuple]  # recipe name -> (hidden, pooled | None[, extra])


@dataclass(frozen=True)
class EncoderRecipe:
    name: str       # module name, also the key prefix in checkpoints: "clip_l" -> "clip_l.transformer.*"
    key: str        # the tokens dict key: "l", "g", "h", "t5xxl", "qwen3_4b", ...
    from_file: Callable[[Mapping[str, torch.Tensor]], dict | None]
    # a standalone file's tensors in the module's native key layout, or None if the file is
    # not this encoder (recipes are tried in RECIPES order)
    detect: Callable[[Mapping[str, torch.Tensor], str], Any | None]
    # the config (every width/count from tensor shapes) from native keys under prefix, or None
    build: Callable[[Any, Mapping[str, Any]], torch.nn.Module]     # (config, options) -> module
    tokenizer: Callable[[Any, Mapping[str, Any], Any], Any]
    # (config, options, embedding_directory) -> object with tokenize_with_weights(text,
    # return_word_ids=False) -> list of chunks of (token, weight[, word_id]); shipped vocabulary
    file_problem: Callable[[set[str]], str | None] | None = None
    # why a file with these tensor names cannot be used (e.g. no tokenizer in it), or None:
    # checked at prompt validation (:func:`file_problem`)


def concat_features(outputs: Outputs, order: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """SD1/SD2/SDXL: hidden states of the encoders concatenated on the feature axis (SDXL:
    CLIP-L ++ CLIP-G), the pooled output of the last one."""
    present = [name for name in order if name in outputs]
    hidden = [outputs[name][0] for name in present]
    cut = min(h.shape[0] for h in hidden)
    pooled = outputs[present[-1]][1]
    return torch.cat([h[:cut] for h in hidden], dim=-1), pooled, {}


@dataclass(frozen=True)
class ClipType:
    name: str
    recipes: tuple[str, ...]        # the encoders this type takes, in conditioning order
    combine: Callable[[Outputs], tuple[torch.Tensor, torch.Tensor | None, dict]]
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # recipe -> build options
    family: str | None = None       # the model family it is for (informational)
    one_of: bool = False            # True: exactly one of ``recipes`` (a single-file type)
    partial: bool = False           # True: any non-empty subset of ``recipes`` (``combine`` fills in the rest)
    skip_when_empty: tuple[str, ...] = ()  # encoders left out (as if absent) when all of them get no tokens


def _concat(order: tuple[str, ...]):
    return lambda outputs: concat_features(outputs, order)


_SD1_L = {"layer": "last", "pad_with_end": True}
_SD2_H = {"layer": "penultimate", "pad_with_end": False}
_REFINER_G = {"layer": "penultimate", "layer_norm_hidden_state": False, "pad_with_end": False}
_T5_UNPADDED = {"min_length": 1, "empty_end": False}

RECIPES: dict[str, EncoderRecipe] = {r.name: r for r in (
    EncoderRecipe("clip_g", "g", clip.clip_g_from_file, clip.detect_openclip, clip.build_clip,
                  clip.clip_tokenizer("clip_g")),
    EncoderRecipe("clip_h", "h", clip.clip_h_from_file, clip.detect_openclip, clip.build_clip,
                  clip.clip_tokenizer("clip_h")),
    EncoderRecipe("clip_l", "l", clip.clip_l_from_file, clip.detect_clip_l, clip.build_clip,
                  clip.clip_tokenizer("clip_l")),
    EncoderRecipe("umt5xxl", "umt5xxl", umt5.from_file, umt5.detect, umt5.build, umt5.tokenizer),  # before T5
    EncoderRecipe("t5xxl", "t5xxl", t5.t5_from_file, t5.detect_t5, t5.build_t5, t5.t5_tokenizer),
    EncoderRecipe("qwen3_4b", "qwen3_4b", qwen3.from_file, qwen3.detect, qwen3.build, qwen3.tokenizer),
    EncoderRecipe("gemma2_2b", "gemma2_2b", gemma2.from_file, gemma2.detect, gemma2.build, gemma2.tokenizer,
                  gemma2.file_problem),
)}


def _flux(outputs: Outputs) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """Flux: the T5 hidden states are the context, CLIP-L's (unprojected) pooled output ``y``."""
    return outputs["t5xxl"][0], outputs["clip_l"][1], {}


# SD3: the CLIP-L/G context is padded to the T5-XXL width (upstream: 4096, also without T5)
_SD3_CLIP_L_WIDTH, _SD3_CLIP_G_WIDTH, _T5XXL_WIDTH = 768, 1280, 4096


def _sd3(outputs: Outputs) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """SD3 / SD3.5: context = [CLIP-L ++ CLIP-G features, zero-padded to the T5 width ;
    T5 tokens] along the sequence; pooled = CLIP-L pooled ++ CLIP-G pooled. A missing encoder
    gives zeros of its width (a missing CLIP-L: its features and pooled part are zeros). CLIP-L
    and CLIP-G left out for want of tokens (features None) give no CLIP context at all and a
    zero pooled vector (upstream, with every prompt empty and unpadded)."""
    l_out, g_out, t5_out = outputs.get("clip_l"), outputs.get("clip_g"), outputs.get("t5xxl")
    present = next((o[1] for o in (l_out, g_out) if o is not None and o[1] is not None), None)
    present = t5_out[0] if t5_out is not None else present
    device = present.device if present is not None else None
    width = t5_out[0].shape[-1] if t5_out is not None else _T5XXL_WIDTH
    l_ctx = l_out[0] if l_out is not None else None
    g_ctx = g_out[0] if g_out is not None else None
    l_width = l_ctx.shape[-1] if l_ctx is not None else (l_out[1].shape[-1] if l_out is not None
                                                         else _SD3_CLIP_L_WIDTH)
    clip_ctx = None
    if l_ctx is not None and g_ctx is not None:
        cut = min(l_ctx.shape[1], g_ctx.shape[1])
        clip_ctx = torch.cat([l_ctx[:, :cut], g_ctx[:, :cut]], dim=-1)
    elif l_ctx is not None:
        clip_ctx = l_ctx
    elif g_ctx is not None:
        clip_ctx = torch.nn.functional.pad(g_ctx, (l_width, 0))
    pooled = None
    if l_out is not None or g_out is not None:
        l_pooled = l_out[1] if l_out is not None else torch.zeros(1, l_width, device=device)
        g_pooled = g_out[1] if g_out is not None else torch.zeros(1, _SD3_CLIP_G_WIDTH, device=device)
        pooled = torch.cat((l_pooled, g_pooled.to(l_pooled)), dim=-1)
    if clip_ctx is not None:
        clip_ctx = torch.nn.functional.pad(clip_ctx, (0, width - clip_ctx.shape[-1]))
    if t5_out is not None:
        cond = t5_out[0] if clip_ctx is None else torch.cat([clip_ctx, t5_out[0].to(clip_ctx)], dim=-2)
    else:
        cond = clip_ctx if clip_ctx is not None else torch.zeros(1, 77, width, device=device)
    if pooled is None:
        pooled = torch.zeros(1, _SD3_CLIP_L_WIDTH + _SD3_CLIP_G_WIDTH, device=device)
    return cond, pooled, {}


CLIP_TYPES: dict[str, ClipType] = {t.name: t for t in (
    # what the SD checkpoints carry
    ClipType("sd1", ("clip_l",), _concat(("clip_l",)), {"clip_l": _SD1_L}, "sd15"),
    ClipType("sd2", ("clip_h",), _concat(("clip_h",)), {"clip_h": _SD2_H}, "sd20"),
    ClipType("sdxl", ("clip_l", "clip_g"), _concat(("clip_l", "clip_g")),
             {"clip_l": {"layer": "hidden", "layer_idx": -2, "layer_norm_hidden_state": False,
                         "return_projected_pooled": False, "pad_with_end": True},
              "clip_g": {"layer": "penultimate", "layer_norm_hidden_state": False, "pad_with_end": False}},
             "sdxl"),
    ClipType("sdxl_refiner", ("clip_g",), _concat(("clip_g",)), {"clip_g": _REFINER_G}, "sdxl_refiner"),
    ClipType("flux", ("clip_l", "t5xxl"), _flux,
             {"clip_l": {"layer": "last", "return_projected_pooled": False, "pad_with_end": True},
              "t5xxl": {"min_length": 256}}, "flux"),
    ClipType("sd3", ("clip_l", "clip_g", "t5xxl"), _sd3,
             {"clip_l": {"layer": "hidden", "layer_idx": -2, "layer_norm_hidden_state": False,
                         "return_projected_pooled": False, "pad_with_end": True},
              "clip_g": {"layer": "penultimate", "layer_norm_hidden_state": False, "pad_with_end": False},
              "t5xxl": {"min_length": 77}}, "sd3", partial=True, skip_when_empty=("clip_l", "clip_g")),
    # CLIPLoader's "stable_diffusion": one CLIP-L (SD1.x), OpenCLIP-H (SD2.x) or OpenCLIP-bigG
    # (SDXL refiner) file
    ClipType("stable_diffusion", ("clip_l", "clip_h", "clip_g"), _concat(("clip_l", "clip_h", "clip_g")),
             {"clip_l": _SD1_L, "clip_h": _SD2_H, "clip_g": _REFINER_G}, "sd15", one_of=True),
    # PixArt and Chroma: T5-XXL alone, not padded (at least the end token), empty prompt all <pad>
    ClipType("chroma", ("t5xxl",), _concat(("t5xxl",)), {"t5xxl": _T5_UNPADDED}, "chroma", one_of=True),
    ClipType("pixart", ("t5xxl",), _concat(("t5xxl",)), {"t5xxl": _T5_UNPADDED}, None, one_of=True),
    # Z-Image: Qwen3-4B; Lumina Image 2.0 / NetaYume: Gemma-2-2B (the file's keys tell which)
    ClipType("lumina2", ("qwen3_4b", "gemma2_2b"), _concat(("qwen3_4b", "gemma2_2b")), {}, "lumina2", one_of=True),
    ClipType("wan", ("umt5xxl",), _concat(("umt5xxl",)), {"umt5xxl": {"min_length": 512}}, "wan21", one_of=True),
    # LTX-Video: T5-XXL, at least 128 tokens, padding masked (the mask goes to the model)
    ClipType("ltxv", ("t5xxl",), _concat(("t5xxl",)), {"t5xxl": {"min_length": 128, "attention_mask": True}}, "ltxv",
             one_of=True),
)}

# what the checkpoint text-encoder layouts are called here (the "sd1" ... types above)
CHECKPOINT_TYPES = ("sd1", "sd2", "sdxl", "sdxl_refiner")


def checkpoint_type_of(recipes: set[str]) -> str | None:
    """The checkpoint layout ("sd1", "sd2", "sdxl", "sdxl_refiner") a set of built encoders
    corresponds to (what LoRA key maps and CheckpointSave follow), or None."""
    for name in CHECKPOINT_TYPES:
        if set(CLIP_TYPES[name].recipes) == recipes:
            return name
    return None


def clip_type_problem(name: str, files: int) -> str | None:
    """Why a loader cannot build CLIP type ``name`` from ``files`` files (None if it can): the
    message a prompt is refused with at validation."""
    ctype = CLIP_TYPES.get(name)
    if ctype is None:
        supported = sorted(n for n, t in CLIP_TYPES.items() if _fits(t, files) and n not in CHECKPOINT_TYPES)
        return (f"text encoder type '{name}' is not supported yet with {files} file(s) "
                f"(supported: {', '.join(supported) or 'none'})")
    missing = [r for r in ctype.recipes if r not in RECIPES]
    if missing:
        return f"text encoder type '{name}' needs encoders that are not available: {', '.join(missing)}"
    if not _fits(ctype, files):
        want = "1" if ctype.one_of else f"up to {len(ctype.recipes)}"
        return f"text encoder type '{name}' takes {want} file(s), not {files}"
    return None


def file_problem(name: str, keys: set[str]) -> str | None:
    """Why a text-encoder file with tensor names ``keys`` cannot serve CLIP type ``name``
    (None if nothing is known against it): the recipes' own checks."""
    ctype = CLIP_TYPES.get(name)
    for recipe in (RECIPES[r] for r in (ctype.recipes if ctype else ()) if r in RECIPES):
        problem = recipe.file_problem(keys) if recipe.file_problem else None
        if problem:
            return problem
    return None


def _fits(ctype: ClipType, files: int) -> bool:
    return files == 1 if ctype.one_of else 1 <= files <= len(ctype.recipes)
