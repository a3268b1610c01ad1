"""The typed schema API's ``ui`` namespace (ComfyUI's ``comfy_api.latest.ui``).

UI objects go into ``io.NodeOutput(..., ui=...)``; ``as_dict()`` gives the ComfyUI ui dict that
ends up in the ``executed`` event and the history (``{"images": [{"filename", "subfolder",
"type"}], "animated": [False]}``, ``{"text": [...]}``, ...).

Image saving honours the ``--disable-metadata`` switch of the core image nodes
(``comfyui.nodes.builtin.image.DISABLE_METADATA``). numpy / PIL / torch are imported lazily.
"""
from __future__ import annotations

import json
import os
import random
import uuid
import wave
from typing import Any

from ._io import FolderType, _UIOutput


def _paths():
    from comfyui import paths

    return paths


def _metadata_disabled() -> bool:
    try:
        from comfyui.nodes.builtin import image as core_image
    except Exception:  # the core pack is optional for this module
        return False
    return bool(getattr(core_image, "DISABLE_METADATA", False))


def _random_suffix() -> str:
    return "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))


class SavedResult(dict):
    """One saved file as the frontend addresses it: {"filename", "subfolder", "type"}."""

    def __init__(self, filename: str, subfolder: str, type: FolderType | str):  # noqa: A002
        super().__init__(filename=filename, subfolder=subfolder, type=FolderType(type).value)

    @property
    def filename(self) -> str:
        return self["filename"]

    @property
    def subfolder(self) -> str:
        return self["subfolder"]

    @property
    def type(self) -> FolderType:
        return FolderType(self["type"])


class SavedImages(_UIOutput):
    """Saved images (optionally one animated file)."""

    def __init__(self, results: list[SavedResult], is_animated: bool = False):
        self.results = results
        self.is_animated = is_animated

    def as_dict(self) -> dict:
        data: dict[str, Any] = {"images": self.results}
        if self.is_animated:
            data["animated"] = (True,)
        return data


class SavedAudios(_UIOutput):
    def __init__(self, results: list[SavedResult]):
        self.results = results

    def as_dict(self) -> dict:
        return {"audio": self.results}


def _directory(folder_type: FolderType | str) -> str:
    folder_type = FolderType(folder_type)
    paths = _paths()
    if folder_type == FolderType.input:
        return paths.get_input_directory()
    if folder_type == FolderType.output:
        return paths.get_output_directory()
    return paths.get_temp_directory()


def _hidden_of(cls: Any) -> Any:
    return getattr(cls, "hidden", None) if cls is not None else None


class ImageSaveHelper:
    """Saving IMAGE batches for UI outputs (PNG with prompt/workflow metadata, animated PNG/WebP)."""

    @staticmethod
    def _convert_tensor_to_pil(image_tensor: Any):
        import numpy as np
        from PIL import Image as PILImage

        array = image_tensor.detach().cpu().float().numpy() if hasattr(image_tensor, "detach") else np.asarray(image_tensor)
        array = np.clip(255.0 * array, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        return PILImage.fromarray(array)

    @staticmethod
    def _create_png_metadata(cls: Any):
        hidden = _hidden_of(cls)
        if hidden is None or _metadata_disabled():
            return None
        from PIL.PngImagePlugin import PngInfo

        metadata = PngInfo()
        if hidden.prompt is not None:
            metadata.add_text("prompt", json.dumps(hidden.prompt))
        if hidden.extra_pnginfo:
            for key, value in hidden.extra_pnginfo.items():
                metadata.add_text(key, json.dumps(value))
        return metadata

    @staticmethod
    def _create_animated_png_metadata(cls: Any):
        hidden = _hidden_of(cls)
        if hidden is None or _metadata_disabled():
            return None
        from PIL.PngImagePlugin import PngInfo

        metadata = PngInfo()
        chunks = []
        if hidden.prompt is not None:
            chunks.append(("prompt", hidden.prompt))
        for key, value in (hidden.extra_pnginfo or {}).items():
            chunks.append((key, value))
        for key, value in chunks:
            data = key.encode("latin-1", "strict") + b"\0" + json.dumps(value).encode("latin-1", "strict")
            metadata.add(b"comf", data, after_idat=True)
        return metadata

    @staticmethod
    def _create_webp_metadata(pil_image: Any, cls: Any):
        exif = pil_image.getexif()
        hidden = _hidden_of(cls)
        if hidden is None or _metadata_disabled():
            return exif
        if hidden.prompt is not None:
            exif[0x0110] = "prompt:{}".format(json.dumps(hidden.prompt))
        tag = 0x010F
        for key, value in (hidden.extra_pnginfo or {}).items():
            exif[tag] = "{}:{}".format(key, json.dumps(value))
            tag -= 1
        return exif

    @staticmethod
    def save_images(images: Any, filename_prefix: str, folder_type: FolderType, cls: Any = None,
                    compress_level: int = 4) -> list[SavedResult]:
        """Save each image of a batch as ``<prefix>_<counter>_.png``."""
        full_folder, filename, counter, subfolder, _ = _paths().get_save_image_path(
            filename_prefix, _directory(folder_type), images[0].shape[1], images[0].shape[0])
        metadata = ImageSaveHelper._create_png_metadata(cls)
        results = []
        for batch_number, image in enumerate(images):
            img = ImageSaveHelper._convert_tensor_to_pil(image)
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            img.save(os.path.join(full_folder, file), pnginfo=metadata, compress_level=compress_level)
            results.append(SavedResult(file, subfolder, folder_type))
            counter += 1
        return results

    @staticmethod
    def get_save_images_ui(images: Any, filename_prefix: str, cls: Any = None, compress_level: int = 4) -> SavedImages:
        return SavedImages(ImageSaveHelper.save_images(images, filename_prefix, FolderType.output, cls, compress_level))

    @staticmethod
    def save_animated_png(images: Any, filename_prefix: str, folder_type: FolderType, cls: Any, fps: float,
                          compress_level: int) -> SavedResult:
        full_folder, filename, counter, subfolder, _ = _paths().get_save_image_path(
            filename_prefix, _directory(folder_type), images[0].shape[1], images[0].shape[0])
        frames = [ImageSaveHelper._convert_tensor_to_pil(img) for img in images]
        file = f"{filename}_{counter:05}_.png"
        frames[0].save(os.path.join(full_folder, file), pnginfo=ImageSaveHelper._create_animated_png_metadata(cls),
                       compress_level=compress_level, save_all=True, duration=int(1000.0 / fps),
                       append_images=frames[1:])
        return SavedResult(file, subfolder, folder_type)

    @staticmethod
    def get_save_animated_png_ui(images: Any, filename_prefix: str, cls: Any, fps: float,
                                 compress_level: int) -> SavedImages:
        result = ImageSaveHelper.save_animated_png(images, filename_prefix, FolderType.output, cls, fps, compress_level)
        return SavedImages([result], is_animated=len(images) > 1)

    @staticmethod
    def save_animated_webp(images: Any, filename_prefix: str, folder_type: FolderType, cls: Any, fps: float,
                           lossless: bool, quality: int, method: int) -> SavedResult:
        full_folder, filename, counter, subfolder, _ = _paths().get_save_image_path(
            filename_prefix, _directory(folder_type), images[0].shape[1], images[0].shape[0])
        frames = [ImageSaveHelper._convert_tensor_to_pil(img) for img in images]
        file = f"{filename}_{counter:05}_.webp"
        frames[0].save(os.path.join(full_folder, file), save_all=True, duration=int(1000.0 / fps),
                       append_images=frames[1:], exif=ImageSaveHelper._create_webp_metadata(frames[0], cls),
                       lossless=lossless, quality=quality, method=method)
        return SavedResult(file, subfolder, folder_type)

    @staticmethod
    def get_save_animated_webp_ui(images: Any, filename_prefix: str, cls: Any, fps: float, lossless: bool,
                                  quality: int, method: int) -> SavedImages:
        result = ImageSaveHelper.save_animated_webp(images, filename_prefix, FolderType.output, cls, fps, lossless,
                                                    quality, method)
        return SavedImages([result], is_animated=len(images) > 1)


class AudioSaveHelper:
    """Saving AUDIO ({"waveform": [B,C,T], "sample_rate"}) for UI outputs.

    Without PyAV only ``format="wav"`` (16-bit PCM, standard library) is available; flac/mp3/opus
    need the ``av`` package.
    """

    @staticmethod
    def _write_wav(path: str, waveform: Any, sample_rate: int) -> None:
        import numpy as np

        data = waveform.detach().cpu().float().numpy() if hasattr(waveform, "detach") else np.asarray(waveform)
        pcm = (np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")  # [C, T]
        with wave.open(path, "wb") as out:
            out.setnchannels(pcm.shape[0])
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(np.ascontiguousarray(pcm.T).tobytes())

    @staticmethod
    def _write_av(path: str, waveform: Any, sample_rate: int, fmt: str, metadata: dict) -> None:
        import av  # optional dependency

        layout = f"{waveform.shape[0]}c" if fmt != "mp3" else ("mono" if waveform.shape[0] == 1 else "stereo")
        codec = {"flac": "flac", "mp3": "libmp3lame", "opus": "libopus"}[fmt]
        with av.open(path, mode="w", format=fmt) as container:
            for key, value in metadata.items():
                container.metadata[key] = value
            stream = container.add_stream(codec, rate=sample_rate, layout=layout)
            frame = av.AudioFrame.from_ndarray(waveform.float().contiguous().numpy(), format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = 0
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))

    @staticmethod
    def save_audio(audio: dict, filename_prefix: str, folder_type: FolderType, cls: Any = None,
                   format: str = "flac", quality: str = "128k") -> list[SavedResult]:  # noqa: A002
        if format not in ("flac", "mp3", "opus", "wav"):
            raise ValueError(f"Unsupported audio format: {format!r}")
        if format != "wav":
            try:
                import av  # noqa: F401
            except ImportError:
                if format != "flac":
                    raise RuntimeError(f"saving {format} audio needs the 'av' package") from None
                format = "wav"  # flac preview without PyAV: fall back to WAV
        full_folder, filename, counter, subfolder, _ = _paths().get_save_image_path(
            filename_prefix, _directory(folder_type))
        metadata = {}
        hidden = _hidden_of(cls)
        if hidden is not None and not _metadata_disabled():
            if hidden.prompt is not None:
                metadata["prompt"] = json.dumps(hidden.prompt)
            for key, value in (hidden.extra_pnginfo or {}).items():
                metadata[key] = json.dumps(value)
        results = []
        waveforms = audio["waveform"]
        for batch_number, waveform in enumerate(waveforms):
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.{format}"
            path = os.path.join(full_folder, file)
            if format == "wav":
                AudioSaveHelper._write_wav(path, waveform, audio["sample_rate"])
            else:
                AudioSaveHelper._write_av(path, waveform.cpu(), int(audio["sample_rate"]), format, metadata)
            results.append(SavedResult(file, subfolder, folder_type))
            counter += 1
        return results

    @staticmethod
    def get_save_audio_ui(audio: dict, filename_prefix: str, cls: Any = None, format: str = "flac",  # noqa: A002
                          quality: str = "128k") -> SavedAudios:
        return SavedAudios(AudioSaveHelper.save_audio(audio, filename_prefix, FolderType.output, cls, format, quality))


class PreviewImage(_UIOutput):
    """Save an IMAGE batch to the temp folder and show it on the node."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any):
        self.values = ImageSaveHelper.save_images(image, "ComfyUI_temp_" + _random_suffix(), FolderType.temp, cls,
                                                  compress_level=1)
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    """Preview a MASK ([B,H,W]) as greyscale images."""

    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any):
        preview = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(preview, animated, cls, **kwargs)


class PreviewAudio(_UIOutput):
    def __init__(self, audio: dict, cls: Any = None, **kwargs: Any):
        self.values = AudioSaveHelper.save_audio(audio, "ComfyUI_temp_" + _random_suffix(), FolderType.temp, cls,
                                                 format="flac")

    def as_dict(self) -> dict:
        return {"audio": self.values}


class PreviewVideo(_UIOutput):
    def __init__(self, values: list, **kwargs: Any):
        self.values = values

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (True,)}


class PreviewUI3D(_UIOutput):
    def __init__(self, model_file: Any, camera_info: Any, **kwargs: Any):
        self.model_file = model_file
        self.camera_info = camera_info
        self.bg_image_path = None
        bg_image = kwargs.get("bg_image")
        if bg_image is not None:
            img = ImageSaveHelper._convert_tensor_to_pil(bg_image[0])
            name = f"bg_{uuid.uuid4().hex}.png"
            img.save(os.path.join(_paths().get_temp_directory(), name), compress_level=1)
            self.bg_image_path = f"temp/{name}"

    def as_dict(self) -> dict:
        return {"result": [self.model_file, self.camera_info, self.bg_image_path]}


class PreviewText(_UIOutput):
    """Show text on the node."""

    def __init__(self, value: str, **kwargs: Any):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}


__all__ = [
    "SavedResult", "SavedImages", "SavedAudios", "ImageSaveHelper", "AudioSaveHelper", "PreviewImage",
    "PreviewMask", "PreviewAudio", "PreviewVideo", "PreviewUI3D", "PreviewText",
]
