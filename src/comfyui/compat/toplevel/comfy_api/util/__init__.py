"""``comfy_api.util``: the video data types (:mod:`comfyui.nodes.schema.video`)."""
from comfyui.nodes.schema.video import VideoCodec, VideoComponents, VideoContainer  # noqa: F401

__all__ = ["VideoContainer", "VideoCodec", "VideoComponents"]
