"""3D viewing nodes (upstream's ``nodes_load_3d``) for the frontend's 3D widgets.

The frontend uploads meshes through ``/upload/image`` into ``input/3d`` (``model_file`` lists
them as ``3d/<name>``). It renders the scene itself: when a prompt is queued, the Load3D widget
uploads the rendered view, its mask and normal pass (and a recording, if one was made) as temp
files under ``threed/`` and sends ``image`` as ``{"image": "threed/scene_<t>.png [temp]",
"mask": ..., "normal": ..., "camera_info": {...}, "recording": "" | "threed/...mp4 [temp]",
"model_3d_info": [...]}``; older frontends also send ``lineart``. Preview3D only hands the
model path and camera back to the widget in its UI output."""
from __future__ import annotations

import os
from pathlib import Path

from comfyui import paths

_MESH_EXTENSIONS = {".gltf", ".glb", ".obj", ".fbx", ".stl"}
_ANIMATED_EXTENSIONS = {".gltf", ".glb", ".fbx"}
_SIZE = ("INT", {"default": 1024, "min": 1, "max": 4096, "step": 1})


def _mesh_files(extensions: set[str]) -> list[str]:
    """Meshes under input/3d as ``3d/<relative path>`` (the folder is created like upstream)."""
    root = Path(paths.get_input_directory())
    folder = root / "3d"
    folder.mkdir(parents=True, exist_ok=True)
    return sorted(p.relative_to(root).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in extensions)


def _rendered_views(image, names: tuple[str, ...]) -> dict:
    """The widget's uploaded views (IMAGE, MASK per name), the camera and the recording."""
    import torch

    from .image import load_image_file
    if not isinstance(image, dict) or not image.get("image"):
        raise ValueError("Load3D needs the view rendered by the 3D widget: open the node in the frontend "
                         "(its 'image' value names the uploaded render) and queue again")
    out = {}
    for name in names:
        ref = image.get(name)
        if not ref:
            if name == "lineart":  # frontend 1.58 renders no line-art pass: an empty image
                out[name] = (torch.zeros_like(out["image"][0]), None)
                continue
            raise ValueError(f"Load3D's rendered views lack {name!r}")
        path = paths.get_annotated_filepath(ref)
        if not os.path.isfile(path):
            raise ValueError(f"Load3D: rendered view not found: {ref}")
        out[name] = load_image_file(path, ref)
    recording = None
    if image.get("recording"):
        from comfyui.nodes.schema.video import VideoFromFile
        recording = VideoFromFile(paths.get_annotated_filepath(image["recording"]))
    return {"views": out, "camera_info": image.get("camera_info"), "recording": recording}


class Load3D:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": (_mesh_files(_MESH_EXTENSIONS), {"file_upload": True}),
            "image": ("LOAD_3D", {}),
            "width": _SIZE,
            "height": _SIZE,
        }}

    RETURN_TYPES = ("IMAGE", "MASK", "STRING", "IMAGE", "IMAGE", "LOAD3D_CAMERA", "VIDEO")
    RETURN_NAMES = ("image", "mask", "mesh_path", "normal", "lineart", "camera_info", "recording_video")
    FUNCTION = "process"
    EXPERIMENTAL = True
    CATEGORY = "3d"

    def process(self, model_file, image, **kwargs):
        r = _rendered_views(image, ("image", "mask", "normal", "lineart"))
        v = r["views"]
        # the mask is the alpha of the uploaded mask render, as LoadImage reads it
        return (v["image"][0], v["mask"][1], model_file, v["normal"][0], v["lineart"][0], r["camera_info"],
                r["recording"])


class Load3DAnimation:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": (_mesh_files(_ANIMATED_EXTENSIONS), {"file_upload": True}),
            "image": ("LOAD_3D_ANIMATION", {}),
            "width": _SIZE,
            "height": _SIZE,
        }}

    RETURN_TYPES = ("IMAGE", "MASK", "STRING", "IMAGE", "LOAD3D_CAMERA", "VIDEO")
    RETURN_NAMES = ("image", "mask", "mesh_path", "normal", "camera_info", "recording_video")
    FUNCTION = "process"
    EXPERIMENTAL = True
    CATEGORY = "3d"

    def process(self, model_file, image, **kwargs):
        r = _rendered_views(image, ("image", "mask", "normal"))
        v = r["views"]
        return (v["image"][0], v["mask"][1], model_file, v["normal"][0], r["camera_info"], r["recording"])


class Preview3D:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_file": ("STRING", {"default": "", "multiline": False})},
                "optional": {"camera_info": ("LOAD3D_CAMERA", {})}}

    OUTPUT_NODE = True
    RETURN_TYPES = ()
    CATEGORY = "3d"
    FUNCTION = "process"
    EXPERIMENTAL = True

    def process(self, model_file, **kwargs):
        # the widget reads result[0] (the mesh, relative to output/) and result[1] (the camera)
        return {"ui": {"result": [model_file, kwargs.get("camera_info")]}}


class Preview3DAnimation(Preview3D):
    pass


NODE_CLASS_MAPPINGS = {
    "Load3D": Load3D,
    "Load3DAnimation": Load3DAnimation,
    "Preview3D": Preview3D,
    "Preview3DAnimation": Preview3DAnimation,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Load3D": "Load 3D",
    "Load3DAnimation": "Load 3D - Animation",
    "Preview3D": "Preview 3D",
    "Preview3DAnimation": "Preview 3D - Animation",
}
