"""What a model family is: the :class:`Family` record every family package fills in, and the
error raised when no family recognises a state dict.

This module is shared (it imports no family); the table of families is
:mod:`comfyui.models.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch


class UnknownModelError(ValueError):
    """The weights match no registered family (or a family refused them)."""


@dataclass(frozen=True)
class Family:
    """One model family (or one variant of it whose sampling or conditioning differs).

    ``detect(sd, prefix)`` looks at the diffusion-model keys under ``prefix`` (it may also read
    other keys of ``sd``, e.g. the text encoders of a checkpoint) and returns the network
    config -- every width and count read from tensor shapes -- or None when the weights are not
    this family. ``model_class(config, family, dtype=None, device=None)`` builds the BaseModel.
    ``sampling``: {"type": "eps" | "v_prediction" | "flow" | ..., plus schedule settings such as
    "shift", "multiplier", "zsnr"}. ``describe(sd, prefix)``: see below. ``clip_type``: the name in
    :data:`comfyui.models.text_encoders.recipes.CLIP_TYPES` this family's text encoders form.
    """

    name: str
    detect: Callable[[Mapping[str, torch.Tensor], str], dict | None]
    model_class: type
    latent_format: type
    sampling: Mapping[str, Any] = field(default_factory=lambda: {"type": "eps"})
    clip_type: str | None = None
    memory_usage_factor: float = 1.0
    supported_dtypes: tuple = (torch.bfloat16, torch.float16, torch.float32)
    lora_key_map: Callable[[Any], dict[str, Any]] | None = None  # name -> key or (key, slice, fn)
    diffusers_to_native: Callable[[Mapping[str, torch.Tensor]], dict] | None = None
    variant: Callable[[dict], str] | None = None
    describe: Callable[[Mapping[str, torch.Tensor], str], str | None] | None = None
    # for error messages: what these weights are if they have this family's layout but no
    # variant accepts them (e.g. "an LDM UNet with in_channels=8 ..."), else None

    def variant_name(self, config: dict) -> str:
        """The finer name of a detected model (e.g. "sd15_inpaint"), else the family name."""
        return self.variant(config) if self.variant is not None else self.name


def describe_state_dict(sd: Mapping[str, Any], limit: int = 6) -> str:
    """A short description of a state dict's keys, for error messages."""
    prefixes: dict[str, int] = {}
    for k in sd:
        p = ".".join(k.split(".")[:2])
        prefixes[p] = prefixes.get(p, 0) + 1
    top = sorted(prefixes.items(), key=lambda kv: -kv[1])[:limit]
    return f"{len(sd)} tensors; key prefixes: " + ", ".join(f"{p}.* ({n})" for p, n in top)


def count_indexed(sd: Mapping[str, Any], prefix: str, suffix: str = "") -> int:
    """How many consecutive ``{prefix}{i}.{suffix}...`` indices (0, 1, ...) the keys hold."""
    present = set()
    for k in sd:
        if k.startswith(prefix):
            head, _, rest = k[len(prefix):].partition(".")
            if head.isdigit() and rest.startswith(suffix):
                present.add(int(head))
    n = 0
    while n in present:
        n += 1
    return n
