"""``comfy_api.input_impl``: the VIDEO classes (:mod:`comfyui.nodes.schema.video`)."""
from comfyui.nodes.schema.video import VideoFromComponents, VideoFromFile  # noqa: F401

__all__ = ["VideoFromFile", "VideoFromComponents"]
