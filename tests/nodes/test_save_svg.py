"""SaveSVGNode: each document of an SVG batch is written to the output folder with the prompt
and workflow in a <metadata> element after its <svg> tag (still a valid SVG document)."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from io import BytesIO

import pytest

from comfyui.nodes.builtin.svg import SVG, SaveSVGNode

DOC = ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       '<rect width="{w}" height="5" fill="red"/></svg>')


def test_saves_each_document_with_metadata(workspace):
    svg = SVG([BytesIO(DOC.format(w=3).encode())]).combine(SVG([BytesIO(DOC.format(w=7).encode())]))
    prompt = {"1": {"class_type": "X", "inputs": {}}}
    out = SaveSVGNode().save_svg(svg, "svg/ComfyUI", prompt=prompt, extra_pnginfo={"workflow": {"nodes": []}})
    files = out["ui"]["images"]
    assert [f["filename"] for f in files] == ["ComfyUI_00001_.svg", "ComfyUI_00002_.svg"]
    assert all(f["subfolder"] == "svg" and f["type"] == "output" for f in files)
    for f, w in zip(files, (3, 7)):
        root = ET.parse(os.path.join(workspace, "output", "svg", f["filename"])).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        assert root.tag == ns + "svg" and root[0].tag == ns + "metadata"
        meta = json.loads(root[0].text)
        assert meta == {"prompt": prompt, "workflow": {"nodes": []}}
        assert root.find(ns + "rect").get("width") == str(w)
    again = SaveSVGNode().save_svg(SVG([BytesIO(DOC.format(w=1).encode())]), "svg/ComfyUI")
    name = again["ui"]["images"][0]["filename"]
    assert name == "ComfyUI_00003_.svg"  # the counter continues; no metadata without a prompt
    with open(os.path.join(workspace, "output", "svg", name)) as f:
        assert f.read() == DOC.format(w=1)


def test_rejects_a_non_svg_value(workspace):
    with pytest.raises(TypeError, match="SVG value"):
        SaveSVGNode().save_svg("<svg/>", "svg/ComfyUI")
