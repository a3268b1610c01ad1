"""The image nodes run through the real registry + engine, as a queued API-format prompt would."""
import importlib
import json
import os

import pytest
from PIL import Image


@pytest.fixture
def engine(workspace):
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    registry = NodeRegistry()
    # only this area's packs, so the test does not depend on the model/sampling packs
    for name in ["image", "mask", "image_transform", "strings", "preview"]:
        registry.register_module(importlib.import_module(f"comfyui.nodes.builtin.{name}"), "nodes")
    eng = Engine(registry)
    eng.start()
    yield eng
    eng.stop()


def test_load_invert_save_through_engine(workspace, engine):
    Image.new("RGBA", (8, 6), (255, 0, 0, 0)).save(os.path.join(workspace, "input", "in.png"))
    os.makedirs(os.path.join(workspace, "input", "clipspace"))
    Image.new("RGB", (4, 4)).save(os.path.join(workspace, "input", "clipspace", "cs.png"))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "run/%1.image%"}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
        # mask-editor style annotated name that is not in the COMBO list: accepted via VALIDATE_INPUTS
        "6": {"class_type": "LoadImage", "inputs": {"image": "clipspace/cs.png [input]"}},
        "7": {"class_type": "StringLength", "inputs": {"string": "abc"}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
        "9": {"class_type": "GetImageSize", "inputs": {"image": ["6", 0]}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}},
    }
    workflow = {"nodes": [], "links": [], "version": 0.4}
    sub = engine.submit(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert sub.node_errors == {}
    history = engine.wait(sub.prompt_id).result(60)
    assert history["status"]["status_str"] == "success"
    out = history["outputs"]
    assert out["3"]["images"] == [{"filename": "in.png_00001_.png", "subfolder": "run", "type": "output"}]
    assert out["5"]["images"][0]["type"] == "temp"
    assert out["8"]["text"] == ["3"] and out["10"]["text"] == ["4"]
    with Image.open(os.path.join(workspace, "output", "run", "in.png_00001_.png")) as im:
        assert im.getpixel((0, 0)) == (0, 255, 255)  # inverted red
        assert json.loads(im.text["prompt"]) == prompt
        assert json.loads(im.text["workflow"]) == workflow
    with Image.open(os.path.join(workspace, "temp", out["5"]["images"][0]["filename"])) as im:
        assert im.getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> mask 1


def test_missing_input_image_is_a_validation_error(workspace, engine):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    try:
        errors = engine.submit(prompt).node_errors
    except Exception as e:  # the engine may raise with the ComfyUI error payload instead
        errors = getattr(e, "node_errors", None) or {"1": {"errors": [{"details": str(e)}]}}
    details = " ".join(err.get("details", "") for err in errors["1"]["errors"])
    assert "Invalid image file: nope.png" in details
