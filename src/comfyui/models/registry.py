"""The one table of model families. Detection, the loaders and the nodes read it.

Adding a family: write its package under ``comfyui/models/<family>/`` exporting a
``FAMILIES`` tuple of :class:`~comfyui.models.family.Family` entries, and add it to
:data:`FAMILIES` below (one line; earlier entries are tried first).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from .family import Family, UnknownModelError, describe_state_dict
from .chroma import FAMILIES as CHROMA
from .flux import FAMILIES as FLUX
from .lumina2 import FAMILIES as LUMINA2
from .ltxv import FAMILIES as LTXV
from .sd3 import FAMILIES as SD3
from .stable_diffusion import FAMILIES as STABLE_DIFFUSION
from .wan import FAMILIES as WAN

FAMILIES: tuple[Family, ...] = (
    *STABLE_DIFFUSION,
    *FLUX,
    *CHROMA,
    *LUMINA2,
    *SD3,
    *WAN,
    *LTXV,
)

__all__ = ["FAMILIES", "Family", "UnknownModelError", "detect_family", "family_by_name", "resolve_sampling"]


def detect_family(sd: Mapping[str, torch.Tensor], prefix: str = "") -> tuple[Family, dict[str, Any]]:
    """(family, network config) of the diffusion model under ``prefix`` in ``sd``: the first
    family in :data:`FAMILIES` whose detector accepts it. The family's ``sampling`` is resolved
    for this file (see :func:`resolve_sampling`)."""
    for family in FAMILIES:
        config = family.detect(sd, prefix)
        if config is not None:
            return resolve_sampling(family, sd), config
    for family in FAMILIES:
        near = family.describe(sd, prefix) if family.describe is not None else None
        if near:
            raise UnknownModelError(f"unsupported diffusion model: {near}")
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)} if prefix else sd
    raise UnknownModelError(f"unknown diffusion model: no model family matches its weights "
                            f"({describe_state_dict(sub)})")


def resolve_sampling(family: Family, sd: Mapping[str, Any]) -> Family:
    """``family`` with the sampling markers a file may carry applied (ComfyUI's convention,
    for any family): an empty ``v_pred`` tensor = v-prediction, ``ztsnr`` = zero terminal SNR."""
    sampling = dict(family.sampling)
    if "v_pred" in sd:
        sampling["type"] = "v_prediction"
    if "ztsnr" in sd:
        sampling["zsnr"] = True
    if sampling == dict(family.sampling):
        return family
    return dataclasses.replace(family, sampling=sampling)


def family_by_name(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no model family named {name!r}")
