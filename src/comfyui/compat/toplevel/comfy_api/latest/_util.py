"""``comfy_api.latest._util``: the small video data types of ComfyUI's schema API (``Types``).

Plain data (enums and a dataclass), so packs that build or name them work as under ComfyUI.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any


class VideoCodec(str, Enum):
    AUTO = "auto"
    H264 = "h264"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]


class VideoContainer(str, Enum):
    AUTO = "auto"
    MP4 = "mp4"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def get_extension(cls, value: "VideoContainer | str") -> str:
        """File extension for a container; AUTO writes MP4."""
        return "mp4" if cls(value) in (cls.AUTO, cls.MP4) else ""


@dataclass
class VideoComponents:
    """A video's parts: IMAGE frames [T,H,W,C], frame rate, optional AUDIO and metadata."""
    images: Any
    frame_rate: Fraction
    audio: Any = None
    metadata: dict | None = None
