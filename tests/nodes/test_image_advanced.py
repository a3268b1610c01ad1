"""ResolutionSelector and SaveImageAdvanced: the sizes upstream's formula gives, and the PNG
files (8-bit through Pillow, 16-bit read back by ffmpeg, an independent decoder) with the
workflow in their text chunks."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui.nodes.builtin import image_advanced
from comfyui.nodes.registry import NodeRegistry

PROMPT = {"9": {"class_type": "SaveImageAdvanced", "inputs": {"filename_prefix": "x"}}}
WORKFLOW = {"nodes": [{"id": 9, "type": "SaveImageAdvanced"}], "links": []}


def call(class_type, **kwargs):
    registry = NodeRegistry()
    registry.register_module(image_advanced, "nodes")
    node = registry.get(class_type)
    return node.function(node.instance(), **kwargs)


@pytest.mark.parametrize("ratio, megapixels, multiple, expected", [
    ("1:1 (Square)", 1.0, 8, (1024, 1024)),
    ("16:9 (Widescreen)", 1.0, 8, (1368, 768)),        # 1365.3 x 768
    ("9:16 (Portrait Widescreen)", 1.0, 64, (768, 1344)),
    ("3:2 (Photo)", 0.5, 16, (880, 592)),              # 886.8 x 591.2
    ("21:9 (Ultrawide)", 2.0, 8, (2216, 952)),         # 2212.1 x 948.0
])
def test_resolution_selector(ratio, megapixels, multiple, expected):
    out = call("ResolutionSelector", aspect_ratio=ratio, megapixels=megapixels, multiple=multiple)
    assert out["result"] == expected


def _gradient(h=5, w=7, c=3):
    y = torch.linspace(0, 1, h)[:, None, None]
    x = torch.linspace(0, 1, w)[None, :, None]
    return torch.cat([x.expand(h, w, 1), y.expand(h, w, 1), ((x + y) / 2).expand(h, w, c - 2)], -1)[None]


def test_save_png_8bit_with_workflow(workspace):
    images = torch.cat([_gradient(), 1 - _gradient()])
    out = call("SaveImageAdvanced", images=images, filename_prefix="base/z",
               **{"format": "png", "format.bit_depth": "8-bit", "format.input_color_space": "sRGB"},
               prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    assert out["result"][0] is images                     # the images pass through
    entries = out["ui"]["images"]
    assert entries == [{"filename": f"z_{i:05}.png", "subfolder": "base", "type": "output"} for i in (1, 2)]
    with Image.open(os.path.join(workspace, "output", "base", "z_00002.png")) as im:
        assert im.mode == "RGB" and im.size == (7, 5)
        assert json.loads(im.text["prompt"]) == PROMPT and json.loads(im.text["workflow"]) == WORKFLOW
        expected = (np.clip(1 - _gradient()[0].numpy(), 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(np.asarray(im), expected)


def test_save_png_16bit_keeps_precision(workspace):
    av = pytest.importorskip("av")
    images = _gradient(c=4)
    images[..., 3] = 0.25
    out = call("SaveImageAdvanced", images=images, filename_prefix="deep",
               **{"format": "png", "format.bit_depth": "16-bit", "format.input_color_space": "sRGB"},
               prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    path = os.path.join(workspace, "output", out["ui"]["images"][0]["filename"])
    with av.open(path) as container:
        frame = next(container.decode(video=0))
        assert frame.format.name.startswith("rgba64")
        pixels = frame.to_ndarray(format="rgba64le")
    assert np.array_equal(pixels, (images[0].numpy() * 65535).astype(np.uint16))
    assert len(np.unique(pixels[..., 0])) == 7            # more levels kept than 8 bits would
    with Image.open(path) as im:                          # and Pillow reads its text chunks
        assert json.loads(im.text["workflow"]) == WORKFLOW


def test_save_without_metadata(workspace, monkeypatch):
    monkeypatch.setattr(image_advanced, "metadata_disabled", lambda: True)
    monkeypatch.setattr("comfyui.nodes.builtin.image.metadata_disabled", lambda: True)
    out = call("SaveImageAdvanced", images=_gradient(),
               filename_prefix="plain", **{"format": "png", "format.bit_depth": "16-bit",
                                           "format.input_color_space": "sRGB"}, prompt=PROMPT)
    with Image.open(os.path.join(workspace, "output", out["ui"]["images"][0]["filename"])) as im:
        assert "prompt" not in im.text
