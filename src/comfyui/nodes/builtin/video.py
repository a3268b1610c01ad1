"""Video nodes (ComfyUI's comfy_extras/nodes_video.py): CreateVideo, SaveVideo, SaveWEBM,
LoadVideo, GetVideoComponents. Schema-API nodes; VIDEO values are
:mod:`comfyui.nodes.schema.video` objects, written and read with PyAV (imported when a node runs).

Saved videos are reported as ``{"images": [{filename, subfolder, type}], "animated": [true]}``,
which the frontend plays in the node and the queue panel.
"""
from __future__ import annotations

import json
import mimetypes
import os
from fractions import Fraction

from comfyui.nodes.io import io, ui
from comfyui.nodes.schema.video import VideoCodec, VideoComponents, VideoContainer, VideoFromComponents, VideoFromFile

from ._lazy import lazy
from .image import metadata_disabled, resolve_filename_tokens

torch = lazy("torch")

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp")


def _paths():
    from comfyui import paths

    return paths


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover
        raise RuntimeError("video nodes need the 'av' package (pip install av)") from None
    return av


def is_video_file(name: str) -> bool:
    mime = mimetypes.guess_type(name)[0]
    return (mime is not None and mime.startswith("video/")) or name.lower().endswith(VIDEO_EXTENSIONS)


def input_video_files() -> list[str]:
    input_dir = _paths().get_input_directory()
    try:
        files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
    except FileNotFoundError:
        files = []
    return sorted(f for f in files if is_video_file(f))


def _container_metadata(hidden) -> dict | None:
    """prompt + extra_pnginfo (workflow, ...) for the container tags; None when switched off."""
    if hidden is None or metadata_disabled():
        return None
    metadata = {}
    if hidden.extra_pnginfo is not None:
        metadata.update(hidden.extra_pnginfo)
    if hidden.prompt is not None:
        metadata["prompt"] = hidden.prompt
    return metadata or None


class SaveWEBM(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveWEBM",
            category="image/video",
            is_experimental=True,
            inputs=[
                io.Image.Input("images"),
                io.String.Input("filename_prefix", default="ComfyUI"),
                io.Combo.Input("codec", options=["vp9", "av1"]),
                io.Float.Input("fps", default=24.0, min=0.01, max=1000.0, step=0.01),
                io.Float.Input("crf", default=32.0, min=0, max=63.0, step=1,
                               tooltip="Higher crf means lower quality with a smaller file size, lower crf means "
                                       "higher quality higher filesize."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, codec, fps, filename_prefix, crf) -> io.NodeOutput:
        av = _av()
        filename_prefix = resolve_filename_tokens(filename_prefix, cls.hidden.prompt)
        full_folder, filename, counter, subfolder, _ = _paths().get_save_image_path(
            filename_prefix, _paths().get_output_directory(), images[0].shape[1], images[0].shape[0])
        os.makedirs(full_folder, exist_ok=True)
        file = f"{filename}_{counter:05}_.webm"
        height, width = int(images.shape[-3]), int(images.shape[-2])
        images = images[:, : height - height % 2, : width - width % 2]  # 4:2:0 needs even sizes
        with av.open(os.path.join(full_folder, file), mode="w") as container:
            if not metadata_disabled():
                if cls.hidden.prompt is not None:
                    container.metadata["prompt"] = json.dumps(cls.hidden.prompt)
                for key, value in (cls.hidden.extra_pnginfo or {}).items():
                    container.metadata[key] = json.dumps(value)
            codec_name = {"vp9": "libvpx-vp9", "av1": "libsvtav1"}[codec]
            stream = container.add_stream(codec_name, rate=Fraction(round(fps * 1000), 1000))
            stream.width, stream.height = int(images.shape[-2]), int(images.shape[-3])
            stream.pix_fmt = "yuv420p10le" if codec == "av1" else "yuv420p"
            stream.bit_rate = 0
            stream.options = {"crf": str(int(crf)) if float(crf).is_integer() else str(crf)}
            if codec == "av1":
                stream.options["preset"] = "6"
            for frame in images:
                rgb = torch.clamp(frame[..., :3] * 255, min=0, max=255).to(device="cpu", dtype=torch.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb.numpy(), format="rgb24")))
            container.mux(stream.encode(None))
        return io.NodeOutput(ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))


class SaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveVideo",
            display_name="Save Video",
            category="image/video",
            description="Saves the input images to your ComfyUI output directory.",
            inputs=[
                io.Video.Input("video", tooltip="The video to save."),
                io.String.Input("filename_prefix", default="video/ComfyUI",
                                tooltip="The prefix for the file to save. This may include formatting information "
                                        "such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values "
                                        "from nodes."),
                io.Combo.Input("format", options=VideoContainer.as_input(), default="auto",
                               tooltip="The format to save the video as."),
                io.Combo.Input("codec", options=VideoCodec.as_input(), default="auto",
                               tooltip="The codec to use for the video."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, filename_prefix, format, codec) -> io.NodeOutput:  # noqa: A002
        width, height = video.get_dimensions()
        filename_prefix = resolve_filename_tokens(filename_prefix, cls.hidden.prompt)
        full_folder, filename, counter, subfolder, _ = _paths().get_save_image_path(
            filename_prefix, _paths().get_output_directory(), width, height)
        os.makedirs(full_folder, exist_ok=True)
        file = f"{filename}_{counter:05}_.{VideoContainer.get_extension(format)}"
        video.save_to(os.path.join(full_folder, file), format=format, codec=codec,
                      metadata=_container_metadata(cls.hidden))
        return io.NodeOutput(ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))


class CreateVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CreateVideo",
            display_name="Create Video",
            category="image/video",
            description="Create a video from images.",
            inputs=[
                io.Image.Input("images", tooltip="The images to create a video from."),
                io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=1.0),
                io.Audio.Input("audio", optional=True, tooltip="The audio to add to the video."),
            ],
            outputs=[io.Video.Output()],
        )

    @classmethod
    def execute(cls, images, fps, audio=None) -> io.NodeOutput:
        return io.NodeOutput(VideoFromComponents(VideoComponents(images=images, audio=audio,
                                                                 frame_rate=Fraction(fps))))


class GetVideoComponents(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GetVideoComponents",
            display_name="Get Video Components",
            category="image/video",
            description="Extracts all components from a video: frames, audio, and framerate.",
            inputs=[io.Video.Input("video", tooltip="The video to extract components from.")],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Audio.Output(display_name="audio"),
                io.Float.Output(display_name="fps"),
            ],
        )

    @classmethod
    def execute(cls, video) -> io.NodeOutput:
        components = video.get_components()
        return io.NodeOutput(components.images, components.audio, float(components.frame_rate))


class LoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LoadVideo",
            display_name="Load Video",
            category="image/video",
            inputs=[io.Combo.Input("file", options=input_video_files(), upload=io.UploadType.video)],
            outputs=[io.Video.Output()],
        )

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        return io.NodeOutput(VideoFromFile(_paths().get_annotated_filepath(file)))

    @classmethod
    def fingerprint_inputs(cls, file):
        # the modification time, not a hash: videos are large
        return os.path.getmtime(_paths().get_annotated_filepath(file))

    @classmethod
    def validate_inputs(cls, file):
        if not _paths().exists_annotated_filepath(file):
            return "Invalid video file: {}".format(file)
        return True


NODE_CLASS_MAPPINGS = {
    "SaveWEBM": SaveWEBM,
    "SaveVideo": SaveVideo,
    "CreateVideo": CreateVideo,
    "GetVideoComponents": GetVideoComponents,
    "LoadVideo": LoadVideo,
}
