"""``from comfy_api.latest import ComfyExtension, io, ui`` -> :mod:`comfyui.nodes.io`
(``ComfyAPI_latest`` and ``comfy_io`` are ComfyUI's other names for ``ComfyAPI`` and ``io``).
``Types`` holds the video data types (:mod:`._util`), ``InputImpl`` the VIDEO classes
(``VideoFromFile``, ``VideoFromComponents``: :mod:`comfyui.nodes.schema.video`, PyAV).

Resolved lazily so that importing this package never fails before the schema API exists.
"""
from __future__ import annotations

import importlib
from typing import Any

from comfyui.nodes.schema import video as _video

from . import _util


def _io_module():
    return importlib.import_module("comfyui.nodes.io")


class Types:
    VideoCodec = _util.VideoCodec
    VideoContainer = _util.VideoContainer
    VideoComponents = _util.VideoComponents


class InputImpl:
    VideoFromFile = _video.VideoFromFile
    VideoFromComponents = _video.VideoFromComponents


def __getattr__(name: str) -> Any:
    mod = _io_module()
    if name == "ComfyAPI_latest":
        return mod.ComfyAPI
    if name in ("io", "comfy_io"):
        return getattr(mod, "io", mod)
    if name == "ui":
        ui = getattr(mod, "ui", None)
        if ui is None:
            ui = importlib.import_module("comfyui.nodes.ui")
        return ui
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(mod, name)
    except AttributeError:
        raise AttributeError(f"module 'comfy_api.latest' has no attribute {name!r}") from None
