"""3D nodes through the server, the way frontend 1.58's 3D widget drives them: the mesh is
uploaded into input/3d and listed by Load3D, the rendered views are uploaded as temp files
under threed/ and sent in the ``image`` value; Load3D returns them (image, mask, normal, an
empty line-art pass, the camera and the mesh path) and Preview3D hands mesh and camera back."""
from __future__ import annotations

import io
import json
import os
import struct

import numpy as np
from aiohttp import FormData
from PIL import Image

CAMERA = {"position": {"x": 10, "y": 10, "z": 10}, "target": {"x": 0, "y": 0, "z": 0}, "zoom": 1,
          "cameraType": "perspective"}


def tiny_glb() -> bytes:
    """A valid glTF 2.0 binary holding an empty scene."""
    doc = json.dumps({"asset": {"version": "2.0"}, "scenes": [{"nodes": []}], "scene": 0}).encode()
    doc += b" " * (-len(doc) % 4)
    return b"glTF" + struct.pack("<II", 2, 12 + 8 + len(doc)) + struct.pack("<I", len(doc)) + b"JSON" + doc


def png(color, mode="RGB", size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


async def upload(srv, data: bytes, name: str, content_type: str, **fields) -> dict:
    form = FormData()
    form.add_field("image", data, filename=name, content_type=content_type)
    for k, v in fields.items():
        form.add_field(k, v)
    resp = await srv.client.post("/api/upload/image", data=form)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_load3d_and_preview3d_through_the_server(server, workspace):
    up = await upload(server, tiny_glb(), "cube.glb", "model/gltf-binary", subfolder="3d")
    assert up == {"name": "cube.glb", "subfolder": "3d", "type": "input"}
    info = await (await server.client.get("/api/object_info/Load3D")).json()
    spec = info["Load3D"]["input"]["required"]
    assert spec["model_file"][0] == ["3d/cube.glb"] and spec["model_file"][1] == {"file_upload": True}
    assert spec["image"][0] == "LOAD_3D"
    assert info["Load3D"]["output_name"] == ["image", "mask", "mesh_path", "normal", "lineart", "camera_info",
                                             "recording_video"]

    # what the widget uploads when the prompt is queued: the render, its mask (alpha), the normals
    scene = await upload(server, png((200, 30, 30)), "scene_1.png", "image/png", subfolder="threed", type="temp")
    mask = await upload(server, png((0, 0, 0, 64), "RGBA"), "scene_mask_1.png", "image/png", subfolder="threed",
                        type="temp")
    normal = await upload(server, png((128, 128, 255)), "scene_normal_1.png", "image/png", subfolder="threed",
                          type="temp")
    value = {"image": f"threed/{scene['name']} [temp]", "mask": f"threed/{mask['name']} [temp]",
             "normal": f"threed/{normal['name']} [temp]", "camera_info": CAMERA, "recording": "",
             "model_3d_info": []}
    prompt = {
        "1": {"class_type": "Load3D", "inputs": {"model_file": "3d/cube.glb", "image": value,
                                                 "width": 1024, "height": 1024}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "render"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "mask"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["1", 3], "filename_prefix": "normal"}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["1", 4], "filename_prefix": "lineart"}},
        "7": {"class_type": "Preview3D", "inputs": {"model_file": ["1", 2], "camera_info": ["1", 5]}},
    }
    h = await server.wait_history((await server.submit(prompt))["prompt_id"])
    assert h["status"]["status_str"] == "success", h["status"]
    out = h["outputs"]

    def saved(node) -> np.ndarray:
        im = out[node]["images"][0]
        with Image.open(os.path.join(workspace, "output", im["subfolder"], im["filename"])) as f:
            return np.asarray(f.convert("RGB"))

    assert saved("2").shape == (12, 16, 3) and tuple(saved("2")[0, 0]) == (200, 30, 30)
    assert tuple(saved("4")[0, 0]) == (191, 191, 191)  # 1 - alpha of the mask render (64/255)
    assert tuple(saved("5")[0, 0]) == (128, 128, 255)
    assert saved("6").shape == (12, 16, 3) and saved("6").max() == 0
    assert out["7"] == {"result": ["3d/cube.glb", CAMERA]}


async def test_load3d_without_a_rendered_view_is_a_clear_error(server):
    await upload(server, tiny_glb(), "cube.glb", "model/gltf-binary", subfolder="3d")
    prompt = {"1": {"class_type": "Load3D", "inputs": {"model_file": "3d/cube.glb", "image": {"image": "", "mask": ""},
                                                       "width": 64, "height": 64}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}
    h = await server.wait_history((await server.submit(prompt))["prompt_id"])
    assert h["status"]["status_str"] == "error"
    err = next(m[1] for m in h["status"]["messages"] if m[0] == "execution_error")
    assert err["node_type"] == "Load3D" and "rendered by the 3D widget" in err["exception_message"]


async def test_preview3d_ui_output_without_camera(server):
    prompt = {"1": {"class_type": "Preview3D", "inputs": {"model_file": "mesh/out.glb"}}}
    h = await server.wait_history((await server.submit(prompt))["prompt_id"])
    assert h["outputs"]["1"] == {"result": ["mesh/out.glb", None]}


async def test_load3d_animation_returns_the_widget_recording(server):
    from fractions import Fraction

    import torch

    from comfyui.nodes.schema.video import VideoComponents, VideoFromComponents
    await upload(server, tiny_glb(), "walk.glb", "model/gltf-binary", subfolder="3d")
    frames = torch.linspace(0, 1, 3)[:, None, None, None].expand(3, 16, 32, 3).contiguous()
    buf = io.BytesIO()
    VideoFromComponents(VideoComponents(images=frames, frame_rate=Fraction(10))).save_to(buf, format="mp4")
    names = {}
    for kind, data, ctype in (("scene", png((10, 20, 30)), "image/png"), ("scene_mask", png((0, 0, 0, 255), "RGBA"), "image/png"),
                              ("scene_normal", png((128, 128, 255)), "image/png"), ("recording", buf.getvalue(), "video/mp4")):
        ext = "mp4" if kind == "recording" else "png"
        names[kind] = (await upload(server, data, f"{kind}_1.{ext}", ctype, subfolder="threed", type="temp"))["name"]
    value = {"image": f"threed/{names['scene']} [temp]", "mask": f"threed/{names['scene_mask']} [temp]",
             "normal": f"threed/{names['scene_normal']} [temp]", "camera_info": CAMERA,
             "recording": f"threed/{names['recording']} [temp]"}
    prompt = {
        "1": {"class_type": "Load3DAnimation", "inputs": {"model_file": "3d/walk.glb", "image": value,
                                                          "width": 512, "height": 512}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 5]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "Preview3DAnimation", "inputs": {"model_file": ["1", 2], "camera_info": ["1", 4]}},
    }
    h = await server.wait_history((await server.submit(prompt))["prompt_id"])
    assert h["status"]["status_str"] == "success", h["status"]
    assert len(h["outputs"]["3"]["images"]) == 3  # the recording's frames
    assert h["outputs"]["4"] == {"result": ["3d/walk.glb", CAMERA]}
