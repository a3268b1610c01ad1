"""``comfy_api.input``: the input type names of ComfyUI's schema API (``VideoInput`` is the VIDEO
base class; the others are the plain data types they annotate)."""
from typing import Any

from comfyui.nodes.schema.video import VideoInput  # noqa: F401

ImageInput = Any  # torch.Tensor [B,H,W,C]
MaskInput = Any  # torch.Tensor [B,H,W]
AudioInput = dict  # {"waveform": [B,C,S], "sample_rate": int}
LatentInput = dict

__all__ = ["ImageInput", "AudioInput", "MaskInput", "LatentInput", "VideoInput"]
