"""Flux USO style reference (ByteDance's USO, ``uso-flux1-projector-v1.safetensors``): a model
patch that turns SigLIP features of a style image into extra Flux text tokens, loaded by
``ModelPatchLoader`` and applied by ``USOStyleReference``.

File layout (``feature_embedder.`` prefix): for each of three SigLIP depths -- ``high`` (the
penultimate layer's output), ``mid`` (the 11th layer from the end) and ``low`` (the 20th from
the end) -- ``{depth}_embedding_linear.0`` (a Linear over the token axis: the SigLIP tokens ->
the style tokens, 729 -> 64 in the release), ``{depth}_layer_norm`` (LayerNorm over the SigLIP
width) and ``{depth}_projection`` (SigLIP width -> the Flux hidden width, 1152 -> 3072).

Each depth's features [B, N, D] become ``projection(layer_norm(silu(linear(features^T))^T))``
[B, S, hidden]; the three are joined high, mid, low and put before the text tokens after the
Flux input projections, with position id (0, 0, 0) like the text.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops

PREFIX = "feature_embedder."
MARKER = PREFIX + "mid_layer_norm.bias"
DEPTHS = ("high", "mid", "low")
# SigLIP layers read for low, mid (from the end of all_hidden_states) and high (penultimate)
LOW_LAYER, MID_LAYER = -20, -11


def detect(sd: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """The projector's widths from its (prefix-stripped) weights, or None."""
    if "high_embedding_linear.0.weight" not in sd or "high_projection.weight" not in sd:
        return None
    style_tokens, siglip_tokens = sd["high_embedding_linear.0.weight"].shape
    hidden, siglip_width = sd["high_projection.weight"].shape
    return {"siglip_tokens": siglip_tokens, "style_tokens": style_tokens, "siglip_width": siglip_width,
            "hidden": hidden}


class USOStyleProjector(nn.Module):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        for depth in DEPTHS:
            setattr(self, f"{depth}_embedding_linear",
                    nn.Sequential(ops.Linear(cfg["siglip_tokens"], cfg["style_tokens"])))
            setattr(self, f"{depth}_layer_norm", ops.LayerNorm(cfg["siglip_width"]))
            setattr(self, f"{depth}_projection", ops.Linear(cfg["siglip_width"], cfg["hidden"]))

    def forward(self, low: torch.Tensor, mid: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """SigLIP features [B, N, D] of the three depths -> style tokens [B, 3 * S, hidden]."""
        out = []
        for depth, features in zip(DEPTHS, (high, mid, low)):
            tokens = F.silu(getattr(self, f"{depth}_embedding_linear")(features.transpose(1, 2))).transpose(1, 2)
            out.append(getattr(self, f"{depth}_projection")(getattr(self, f"{depth}_layer_norm")(tokens)))
        return torch.cat(out, dim=1)


def siglip_features(clip_vision_output: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(low, mid, high) features the projector reads from a SigLIP CLIP_VISION_OUTPUT."""
    layers = clip_vision_output.get("all_hidden_states")
    if layers is None or layers.shape[1] < -LOW_LAYER:
        raise ValueError("USO needs the hidden states of a SigLIP vision encoder with at least "
                         f"{-LOW_LAYER} layers (sigclip_vision_patch14_384)")
    return layers[:, LOW_LAYER], layers[:, MID_LAYER], clip_vision_output["penultimate_hidden_states"]


class USOStylePatch:
    """The Flux ``post_input`` patch: the style tokens before the text tokens."""

    def __init__(self, model_patch: Any, features: tuple[torch.Tensor, ...]):
        self.model_patch, self.features = model_patch, features

    def models(self) -> list[Any]:
        return [self.model_patch]

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        txt, txt_ids = args["txt"], args["txt_ids"]
        if self.model_patch.model.cfg["hidden"] != txt.shape[-1]:
            raise ValueError(f"this USO projector is for a Flux model {self.model_patch.model.cfg['hidden']} "
                             f"wide, not {txt.shape[-1]}")
        style = self.model_patch.model(*(f.to(txt) for f in self.features))
        if style.shape[0] != txt.shape[0]:
            style = style.repeat(-(-txt.shape[0] // style.shape[0]), 1, 1)[:txt.shape[0]]
        zeros = torch.zeros(txt_ids.shape[0], style.shape[1], txt_ids.shape[2], dtype=txt_ids.dtype,
                            device=txt_ids.device)
        return {**args, "txt": torch.cat((style, txt), dim=1), "txt_ids": torch.cat((zeros, txt_ids), dim=1)}
