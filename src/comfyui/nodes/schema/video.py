"""The VIDEO type of ComfyUI's schema API (``comfy_api.latest``: ``Types.VideoComponents``,
``Input.Video``, ``InputImpl.VideoFromFile`` / ``InputImpl.VideoFromComponents``).

A VIDEO value is an object, not a tensor:

* :class:`VideoFromComponents` wraps IMAGE frames ``[T,H,W,C]`` (0..1), a frame rate
  (``Fraction``) and optional AUDIO (``{"waveform": [B,C,S], "sample_rate"}``);
* :class:`VideoFromFile` wraps a path or ``BytesIO`` and is decoded lazily: dimensions,
  duration and container format come from the stream headers, frames only from
  :meth:`get_components`; ``save_to`` remuxes the packets unchanged when format and codec allow.

``save_to`` writes MP4 (h264, yuv420p, aac when there is audio) with the metadata as JSON
strings in the container tags (``movflags=use_metadata_tags`` keeps custom keys in MP4).
PyAV (``av``) is the one media library; it, numpy and torch are imported when a method runs.
"""
from __future__ import annotations

import io
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import IO, Any


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency of the inference extra
        raise RuntimeError("reading and writing video needs the 'av' package (pip install av)") from None
    return av


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


def _rewind(source):
    if isinstance(source, io.IOBase):
        source.seek(0)
    return source


def _metadata_strings(metadata: dict | None) -> dict[str, str]:
    """Container tags: strings as they are, anything else as JSON."""
    return {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}


def _first_format(name: str | None) -> str | None:
    """``mov,mp4,m4a,3gp,3g2,mj2`` -> ``mov``: a demuxer's name list, one muxer name."""
    if not name:
        return None
    return name.split(",")[0]


class VideoInput(ABC):
    """What a VIDEO socket carries (``comfy_api.latest.Input.Video``)."""

    @abstractmethod
    def get_components(self) -> VideoComponents:
        """Decoded frames [T,H,W,3] float32 0..1, frame rate and audio."""

    @abstractmethod
    def save_to(self, path: str | IO[bytes], format: VideoContainer | str = VideoContainer.AUTO,  # noqa: A002
                codec: VideoCodec | str = VideoCodec.AUTO, metadata: dict | None = None) -> None:
        """Write the video to ``path`` (a file name or a writable binary stream)."""

    def get_stream_source(self) -> str | io.BytesIO:
        """A path or buffer ``av.open`` can read (the default encodes to MP4 in memory)."""
        buffer = io.BytesIO()
        self.save_to(buffer)
        buffer.seek(0)
        return buffer

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height)."""
        images = self.get_components().images
        return int(images.shape[2]), int(images.shape[1])

    def get_duration(self) -> float:
        """Seconds."""
        components = self.get_components()
        return float(components.images.shape[0] / components.frame_rate)

    def get_frame_count(self) -> int:
        return int(self.get_components().images.shape[0])

    def get_frame_rate(self) -> Fraction:
        return Fraction(self.get_components().frame_rate)

    def get_container_format(self) -> str:
        with _av().open(self.get_stream_source(), mode="r") as container:
            return container.format.name


# ------------------------------------------------------------------------------------ writing
def write_mp4(path: str | IO[bytes], images: Any, frame_rate: Fraction | float, audio: dict | None = None,
              metadata: dict | None = None) -> None:
    """IMAGE frames [T,H,W,C] -> MP4 (h264 yuv420p; aac audio trimmed to the video's length)."""
    av = _av()
    import torch

    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"a video needs frames [T,H,W,C]; got shape {tuple(images.shape)}")
    height, width = int(images.shape[1]), int(images.shape[2])
    if width % 2 or height % 2:
        # yuv420p needs even sizes: crop the last row / column, as encoders would refuse
        images = images[:, : height - height % 2, : width - width % 2]
        height, width = int(images.shape[1]), int(images.shape[2])
    rate = Fraction(round(Fraction(frame_rate) * 1000), 1000)
    kwargs: dict[str, Any] = {"mode": "w", "options": {"movflags": "use_metadata_tags"}}
    if not isinstance(path, str):
        kwargs["format"] = "mp4"
    with av.open(path, **kwargs) as output:
        for key, value in _metadata_strings(metadata).items():
            output.metadata[key] = value
        stream = output.add_stream("h264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        audio_stream = None
        if audio is not None:
            sample_rate = int(audio["sample_rate"])
            channels = min(2, int(audio["waveform"].shape[-2]))
            layout = "mono" if channels == 1 else "stereo"
            audio_stream = output.add_stream("aac", rate=sample_rate, layout=layout)
        for frame in images:
            rgb = (frame[..., :3] * 255).clamp(0, 255).to(device="cpu", dtype=torch.uint8)
            if rgb.shape[-1] == 1:
                rgb = rgb.expand(-1, -1, 3)
            vf = av.VideoFrame.from_ndarray(rgb.contiguous().numpy(), format="rgb24").reformat(format="yuv420p")
            output.mux(stream.encode(vf))
        output.mux(stream.encode(None))
        if audio_stream is not None:
            waveform = audio["waveform"]
            if waveform.ndim == 3:
                waveform = waveform[0]
            keep = math.ceil(sample_rate / rate * images.shape[0])
            waveform = waveform[:channels, :keep].to("cpu", torch.float32)  # mono or stereo, as upstream
            # packed float samples: [1, S*C] interleaved
            data = waveform.movedim(0, 1).reshape(1, -1).contiguous().numpy()
            af = av.AudioFrame.from_ndarray(data, format="flt", layout=layout)
            af.sample_rate = sample_rate
            af.pts = 0
            output.mux(audio_stream.encode(af))
            output.mux(audio_stream.encode(None))


def decode_components(container) -> VideoComponents:
    """All frames (rgb24 -> float32 0..1), the average frame rate, the audio tracks' samples
    (float32, channels first) and the container tags of an open ``av`` input container."""
    import numpy as np
    import torch

    if not container.streams.video:
        raise ValueError("no video stream in the file")
    video_stream = container.streams.video[0]
    frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video_stream)]
    if frames:
        images = torch.stack(frames).float().div_(255.0)
    else:
        images = torch.zeros((0, video_stream.height or 0, video_stream.width or 0, 3))
    frame_rate = Fraction(video_stream.average_rate) if video_stream.average_rate else Fraction(1)
    audio = None
    if container.streams.audio:
        stream = container.streams.audio[0]
        container.seek(0)
        chunks = []
        for packet in container.demux(stream):
            for frame in packet.decode():
                array = frame.to_ndarray()
                if frame.format.is_packed:  # [1, S*C] interleaved -> [C, S]
                    array = array.reshape(-1, len(frame.layout.channels)).T
                if array.dtype.kind in "iu":
                    array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
                chunks.append(array.astype(np.float32, copy=False))
        if chunks:
            waveform = torch.from_numpy(np.concatenate(chunks, axis=1)).unsqueeze(0)
            audio = {"waveform": waveform, "sample_rate": int(stream.sample_rate or stream.rate or 1)}
    return VideoComponents(images=images, frame_rate=frame_rate, audio=audio, metadata=dict(container.metadata))


# ------------------------------------------------------------------------------------ the types
class VideoFromFile(VideoInput):
    """A video file (path or ``BytesIO``), read when asked."""

    def __init__(self, file: str | io.BytesIO):
        self.__file = file

    def __repr__(self) -> str:
        name = self.__file if isinstance(self.__file, str) else type(self.__file).__name__
        return f"VideoFromFile({name!r})"

    def get_stream_source(self) -> str | io.BytesIO:
        return _rewind(self.__file)

    def _open(self):
        return _av().open(_rewind(self.__file), mode="r")

    def get_dimensions(self) -> tuple[int, int]:
        with self._open() as container:
            for stream in container.streams.video:
                return int(stream.width), int(stream.height)
        raise ValueError(f"no video stream in {self!r}")

    def get_duration(self) -> float:
        av = _av()
        with self._open() as container:
            if container.duration is not None:
                return float(container.duration / av.time_base)
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.average_rate:
                if stream.frames:
                    return float(stream.frames / stream.average_rate)
                count = sum(1 for _ in container.decode(stream))
                if count:
                    return float(count / stream.average_rate)
        raise ValueError(f"cannot tell the duration of {self!r}")

    def get_frame_count(self) -> int:
        with self._open() as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {self!r}")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))

    def get_frame_rate(self) -> Fraction:
        with self._open() as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {self!r}")
            rate = container.streams.video[0].average_rate
            return Fraction(rate) if rate else Fraction(1)

    def get_container_format(self) -> str:
        with self._open() as container:
            return container.format.name

    def get_components(self) -> VideoComponents:
        with self._open() as container:
            return decode_components(container)

    def save_to(self, path: str | IO[bytes], format: VideoContainer | str = VideoContainer.AUTO,  # noqa: A002
                codec: VideoCodec | str = VideoCodec.AUTO, metadata: dict | None = None) -> None:
        av = _av()
        format, codec = VideoContainer(format), VideoCodec(codec)
        with self._open() as container:
            container_format = container.format.name
            video_codec = container.streams.video[0].codec_context.name if container.streams.video else None
            remux = True
            if format != VideoContainer.AUTO and format.value not in container_format.split(","):
                remux = False
            if codec != VideoCodec.AUTO and video_codec is not None and codec.value != video_codec:
                remux = False
            if not remux:
                components = decode_components(container)
                merged = dict(components.metadata or {})
                merged.update(metadata or {})
                return VideoFromComponents(components).save_to(path, format, codec, merged or None)
            kwargs: dict[str, Any] = {"mode": "w", "options": {"movflags": "use_metadata_tags"}}
            if not isinstance(path, str):
                kwargs["format"] = _first_format(container_format if format == VideoContainer.AUTO else format.value)
            with av.open(path, **kwargs) as output:
                for key, value in container.metadata.items():
                    if metadata is None or key not in metadata:
                        output.metadata[key] = value
                for key, value in _metadata_strings(metadata).items():
                    output.metadata[key] = value
                mapping = {}
                for stream in container.streams:
                    if stream.type in ("video", "audio", "subtitle"):
                        mapping[stream] = output.add_stream_from_template(stream)
                for packet in container.demux():
                    if packet.stream in mapping and packet.dts is not None:
                        packet.stream = mapping[packet.stream]
                        output.mux(packet)


class VideoFromComponents(VideoInput):
    """A video made of IMAGE frames (+ optional AUDIO) in memory."""

    def __init__(self, components: VideoComponents):
        self.__components = components

    def __repr__(self) -> str:
        c = self.__components
        return f"VideoFromComponents(frames={tuple(c.images.shape)}, frame_rate={c.frame_rate}, audio={c.audio is not None})"

    def get_components(self) -> VideoComponents:
        c = self.__components
        return VideoComponents(images=c.images, frame_rate=c.frame_rate, audio=c.audio)

    def get_dimensions(self) -> tuple[int, int]:
        return int(self.__components.images.shape[2]), int(self.__components.images.shape[1])

    def get_frame_count(self) -> int:
        return int(self.__components.images.shape[0])

    def get_frame_rate(self) -> Fraction:
        return Fraction(self.__components.frame_rate)

    def save_to(self, path: str | IO[bytes], format: VideoContainer | str = VideoContainer.AUTO,  # noqa: A002
                codec: VideoCodec | str = VideoCodec.AUTO, metadata: dict | None = None) -> None:
        if VideoContainer(format) not in (VideoContainer.AUTO, VideoContainer.MP4):
            raise ValueError("Only MP4 format is supported for now")
        if VideoCodec(codec) not in (VideoCodec.AUTO, VideoCodec.H264):
            raise ValueError("Only H264 codec is supported for now")
        c = self.__components
        write_mp4(path, c.images, c.frame_rate, c.audio, metadata)


__all__ = ["VideoCodec", "VideoContainer", "VideoComponents", "VideoInput", "VideoFromFile",
           "VideoFromComponents", "write_mp4", "decode_components"]
