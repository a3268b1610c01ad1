"""ResolutionSelector (comfy_extras/nodes_resolution.py) and SaveImageAdvanced
(comfy_extras/nodes_images.py), as the Z-Image base templates use them.

SaveImageAdvanced writes PNG (the one format of upstream's list this build encodes): 8-bit
through Pillow, 16-bit per channel (RGB/RGBA, big-endian samples) with a small PNG writer of
its own since Pillow has no 48/64-bit RGB mode. The workflow goes into ``tEXt`` chunks as
SaveImage writes it (``prompt`` and each ``extra_pnginfo`` entry as JSON), unless metadata is
disabled.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zlib

from PIL import Image

from comfyui.nodes.io import io

from ._image_utils import check_image
from ._lazy import lazy
from .image import _folder_paths, _png_metadata, metadata_disabled, resolve_filename_tokens

np = lazy("numpy")

# label -> (width ratio, height ratio), in upstream's option order
ASPECT_RATIOS = {
    "1:1 (Square)": (1, 1),
    "2:3 (Portrait Photo)": (2, 3),
    "3:2 (Photo)": (3, 2),
    "3:4 (Portrait Standard)": (3, 4),
    "4:3 (Standard)": (4, 3),
    "9:16 (Portrait Widescreen)": (9, 16),
    "16:9 (Widescreen)": (16, 9),
    "21:9 (Ultrawide)": (21, 9),
}


def resolution_for(aspect_ratio: str, megapixels: float, multiple: int) -> tuple[int, int]:
    """(width, height) with the aspect ratio and about ``megapixels`` * 1024^2 pixels, each side
    rounded to the nearest multiple of ``multiple``."""
    w_ratio, h_ratio = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(megapixels * 1024 * 1024 / (w_ratio * h_ratio))
    return round(w_ratio * scale / multiple) * multiple, round(h_ratio * scale / multiple) * multiple


class ResolutionSelector(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ResolutionSelector",
            display_name="Resolution Selector",
            category="utils",
            description="Calculate width and height from aspect ratio and megapixel target. "
                        "Useful for setting up Empty Latent Image dimensions.",
            inputs=[
                io.Combo.Input("aspect_ratio", options=list(ASPECT_RATIOS), default="1:1 (Square)",
                               tooltip="The aspect ratio for the output dimensions."),
                io.Float.Input("megapixels", default=1.0, min=0.1, max=16.0, step=0.1,
                               tooltip="Target total megapixels. 1.0 MP is about 1024x1024 for square."),
                io.Int.Input("multiple", default=8, min=8, max=128, step=4,
                             tooltip="Nearest multiple of the result to set the selected resolution to."),
            ],
            outputs=[io.Int.Output("width"), io.Int.Output("height")],
        )

    @classmethod
    def execute(cls, aspect_ratio: str, megapixels: float, multiple: int) -> io.NodeOutput:
        return io.NodeOutput(*resolution_for(aspect_ratio, megapixels, multiple))


# ------------------------------------------------------------------------ 16-bit PNG writer
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16_bytes(pixels: "np.ndarray", texts: dict[str, str] | None = None) -> bytes:
    """A PNG of ``pixels`` ([H, W, 3|4] uint16): 16 bits per sample, each row with filter 0,
    ``texts`` as tEXt chunks (Latin-1, as the PNG standard says for tEXt)."""
    h, w, c = pixels.shape
    color_type = {3: 2, 4: 6}[c]
    rows = pixels.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))]
    for key, value in (texts or {}).items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    out += [_chunk(b"IDAT", zlib.compress(raw, 4)), _chunk(b"IEND", b"")]
    return b"".join(out)


def _png_texts(prompt, extra_pnginfo) -> dict[str, str]:
    if metadata_disabled():
        return {}
    texts = {}
    if prompt is not None:
        texts["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        texts[key] = json.dumps(value)
    return texts


class SaveImageAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveImageAdvanced",
            display_name="Save Image (Advanced)",
            description="Saves the input images to your ComfyUI output directory.",
            category="image",
            inputs=[
                io.Image.Input("images", tooltip="The images to save."),
                io.String.Input("filename_prefix", default="ComfyUI",
                                tooltip="The prefix for the file to save. May include formatting tokens such "
                                        "as %date:yyyy-MM-dd% or %Empty Latent Image.width%."),
                io.DynamicCombo.Input("format", options=[
                    io.DynamicCombo.Option("png", [
                        io.Combo.Input("bit_depth", options=["8-bit", "16-bit"], default="8-bit"),
                        io.Combo.Input("input_color_space", options=["sRGB"], default="sRGB"),
                    ]),
                ], tooltip="The file format in which to save the image."),
            ],
            outputs=[io.Image.Output(display_name="images")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix: str, format: dict) -> io.NodeOutput:  # noqa: A002 - upstream's name
        check_image(images, "images")
        if images.shape[0] == 0:
            return io.NodeOutput(images, ui={"images": []})
        prompt, extra_pnginfo = cls.hidden.prompt, cls.hidden.extra_pnginfo
        sixteen = format["bit_depth"] == "16-bit"
        filename_prefix = resolve_filename_tokens(filename_prefix, prompt)
        folder, filename, counter, subfolder, _ = _folder_paths().get_save_image_path(
            filename_prefix, _folder_paths().get_output_directory(), images[0].shape[1], images[0].shape[0])
        os.makedirs(folder, exist_ok=True)
        results = []
        for batch_number, image in enumerate(images):
            values = image.float().clamp(0, 1).cpu().numpy()  # truncated to integers, as upstream
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}.png"
            path = os.path.join(folder, file)
            if sixteen:
                with open(path, "wb") as f:
                    f.write(png16_bytes((values * 65535).astype(np.uint16), _png_texts(prompt, extra_pnginfo)))
            else:
                mode = "RGBA" if values.shape[-1] == 4 else "RGB"
                Image.fromarray((values * 255).astype(np.uint8), mode).save(
                    path, pnginfo=_png_metadata(prompt, extra_pnginfo), compress_level=4)
            results.append({"filename": file, "subfolder": subfolder, "type": "output"})
            counter += 1
        return io.NodeOutput(images, ui={"images": results})


NODE_CLASS_MAPPINGS = {
    "ResolutionSelector": ResolutionSelector,
    "SaveImageAdvanced": SaveImageAdvanced,
}
