"""Model patches (what a MODEL_PATCH socket carries): small networks from ``models/model_patches``
that other nodes attach to a diffusion model. The file's keys say which:

* the Z-Image Fun ControlNet (``control_all_x_embedder.2-1.weight``):
  :mod:`comfyui.models.lumina2.controlnet`, applied by ``QwenImageDiffsynthControlnet``;
* the Flux USO style projector (``feature_embedder.mid_layer_norm.bias``):
  :mod:`comfyui.models.flux.uso`, applied by ``USOStyleReference``.

The network keeps the file's dtype and casts its weights to the activations' dtype when it runs.
"""
from __future__ import annotations

import os

import torch

from . import memory, ops
from .loading import ModelFileError, load_torch_file
from .flux import uso
from .lumina2 import controlnet as z_image_control
from .patcher import ModelPatcher


def load_model_patch(path: str) -> ModelPatcher:
    """A ModelPatcher holding the patch network of the file at ``path``."""
    name = os.path.basename(path)
    sd = load_torch_file(path)
    try:
        if z_image_control.MARKER in sd:
            sd = z_image_control.native_keys(sd)
            config = z_image_control.detect(sd)
            network_class = z_image_control.ZImageFunControlNet
        elif uso.MARKER in sd:
            sd = {k[len(uso.PREFIX):]: v for k, v in sd.items() if k.startswith(uso.PREFIX)}
            config = uso.detect(sd)
            network_class = uso.USOStyleProjector
        else:
            config = None
    except z_image_control.UnsupportedPatchError as exc:
        raise ModelFileError(f"{name}: {exc}") from exc
    if config is None:
        raise ModelFileError(f"{name}: not a known model patch (expected a Z-Image Fun ControlNet or a Flux USO projector)")
    with torch.device("meta"):
        network = network_class(config)
    missing, unexpected = ops.assign_state_dict(network, sd)
    if missing or unexpected:
        raise ModelFileError(f"{name}: weights do not match the {network_class.__name__} they look like "
                             f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
    ops.set_manual_cast(network.eval().requires_grad_(False), True)
    return ModelPatcher(network, load_device=memory.get_torch_device(), offload_device=memory.unet_offload_device())
