"""``comfy_api.latest._util``: the video data types of ComfyUI's schema API (``Types``), from
:mod:`comfyui.nodes.schema.video`."""
from comfyui.nodes.schema.video import VideoCodec, VideoComponents, VideoContainer  # noqa: F401

__all__ = ["VideoCodec", "VideoContainer", "VideoComponents"]
