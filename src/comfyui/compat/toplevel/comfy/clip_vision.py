"""``comfy.clip_vision``: CLIP vision encoders (:mod:`comfyui.models.clip_vision`) under upstream's names."""
from comfyui.models.clip_vision import ClipVisionModel, Output, clip_preprocess  # noqa: F401
from comfyui.models.clip_vision import clip_vision_from_state_dict as load_clipvision_from_sd  # noqa: F401
from comfyui.models.clip_vision import load_clip_vision as load  # noqa: F401
