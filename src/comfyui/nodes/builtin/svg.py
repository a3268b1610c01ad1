"""SVG values and SaveSVGNode (ComfyUI's nodes_images): SVG documents (made by API or custom
nodes, e.g. vectorisers) written to the output folder with the prompt and workflow in a
``<metadata>`` element, as upstream."""
from __future__ import annotations

import json
import os
import re
from io import BytesIO

from .image import _folder_paths, metadata_disabled, resolve_filename_tokens

_SVG_OPEN_TAG = re.compile(r"(<svg[^>]*>)")


class SVG:
    """What an SVG socket carries: one BytesIO per document of the batch."""

    def __init__(self, data: list[BytesIO]):
        self.data = data

    def combine(self, other: "SVG") -> "SVG":
        return SVG(self.data + other.data)

    @staticmethod
    def combine_all(svgs: list["SVG"]) -> "SVG":
        return SVG([d for s in svgs for d in s.data])


def _with_metadata(svg_text: str, metadata: dict) -> str:
    """The document with ``metadata`` as JSON in a CDATA section right after its <svg> tag."""
    element = f"\n  <metadata>\n    <![CDATA[\n{json.dumps(metadata, indent=2)}\n    ]]>\n  </metadata>\n"
    return _SVG_OPEN_TAG.sub(lambda m: m.group(1) + element, svg_text, count=1)


class SaveSVGNode:
    """Save SVG files on disk."""

    DESCRIPTION = "Save SVG files on disk."
    RETURN_TYPES = ()
    FUNCTION = "save_svg"
    OUTPUT_NODE = True
    CATEGORY = "image/save"

    def __init__(self):
        self.type = "output"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "svg": ("SVG",),
            "filename_prefix": ("STRING", {"default": "svg/ComfyUI", "tooltip": (
                "The prefix for the file to save. This may include formatting information such as "
                "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.")})},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_svg(self, svg, filename_prefix="svg/ComfyUI", prompt=None, extra_pnginfo=None):
        if not hasattr(svg, "data"):
            raise TypeError(f"SaveSVGNode: 'svg' must be an SVG value (a list of documents), got {type(svg).__name__}")
        prefix = resolve_filename_tokens(filename_prefix, prompt)
        folder, filename, counter, subfolder, _ = _folder_paths().get_save_image_path(
            prefix, _folder_paths().get_output_directory())
        os.makedirs(folder, exist_ok=True)
        metadata = {}
        if not metadata_disabled():
            if prompt is not None:
                metadata["prompt"] = prompt
            metadata.update(extra_pnginfo or {})
        results = []
        for batch_number, doc in enumerate(svg.data):
            doc.seek(0)
            text = doc.read().decode("utf-8")
            if metadata:
                text = _with_metadata(text, metadata)
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.svg"
            with open(os.path.join(folder, file), "wb") as f:
                f.write(text.encode("utf-8"))
            results.append({"filename": file, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


NODE_CLASS_MAPPINGS = {"SaveSVGNode": SaveSVGNode}
