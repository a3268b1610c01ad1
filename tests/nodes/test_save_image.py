import datetime
import json
import os

import pytest
import torch
from PIL import Image

from comfyui.nodes.builtin import image as image_mod
from comfyui.nodes.builtin.image import PreviewImage, SaveImage, format_date, resolve_filename_tokens
from comfyui.nodes.builtin.mask import MaskPreview


def run(node_cls, **kwargs):
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


PROMPT = {
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512, "batch_size": 1},
          "_meta": {"title": "Empty Latent Image"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat: <b>/c", "clip": ["4", 1]},
          "_meta": {"title": "Positive"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
}


def _img(b=1, h=4, w=6, c=3, value=0.5):
    return torch.full((b, h, w, c), value)


def test_save_writes_counted_pngs_with_metadata(workspace):
    workflow = {"nodes": [{"id": 9, "type": "SaveImage"}], "links": []}
    res = run(SaveImage, images=_img(b=2), filename_prefix="ComfyUI", prompt=PROMPT,
              extra_pnginfo={"workflow": workflow, "extra": [1, 2]})
    assert res == {"ui": {"images": [
        {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output"},
    ]}}
    path = os.path.join(workspace, "output", "ComfyUI_00001_.png")
    with Image.open(path) as im:
        assert im.size == (6, 4) and im.mode == "RGB"
        assert json.loads(im.text["prompt"]) == PROMPT
        assert json.loads(im.text["workflow"]) == workflow
        assert json.loads(im.text["extra"]) == [1, 2]
        assert im.getpixel((0, 0)) == (127, 127, 127)

    # the counter continues from the files already there
    res2 = run(SaveImage, images=_img(), filename_prefix="ComfyUI")
    assert res2["ui"]["images"][0]["filename"] == "ComfyUI_00003_.png"


def test_save_into_subfolder_and_rgba(workspace):
    img = torch.zeros((1, 2, 2, 4))
    img[..., 3] = 1.0
    img[0, 0, 0, 3] = 0.0
    res = run(SaveImage, images=img, filename_prefix="people/run1/shot")
    entry = res["ui"]["images"][0]
    assert entry["subfolder"] == os.path.join("people", "run1")
    assert entry["filename"] == "shot_00001_.png"
    with Image.open(os.path.join(workspace, "output", "people", "run1", "shot_00001_.png")) as im:
        assert im.mode == "RGBA" and im.getpixel((0, 0))[3] == 0


def test_save_outside_output_is_refused(workspace):
    with pytest.raises(Exception, match="outside"):
        run(SaveImage, images=_img(), filename_prefix="../escape")


def test_disable_metadata_flag(workspace, monkeypatch):
    monkeypatch.setattr(image_mod, "DISABLE_METADATA", True)
    run(SaveImage, images=_img(), filename_prefix="plain", prompt=PROMPT, extra_pnginfo={"workflow": {}})
    with Image.open(os.path.join(workspace, "output", "plain_00001_.png")) as im:
        assert "prompt" not in im.text and "workflow" not in im.text


def test_prefix_tokens_resolved_against_prompt(workspace):
    today = format_date("yyyy-MM-dd")
    res = run(SaveImage, images=_img(h=4, w=6),
              filename_prefix="%date:yyyy-MM-dd%/%Empty Latent Image.width%x%5.height%_%Positive.text%_%width%",
              prompt=PROMPT)
    entry = res["ui"]["images"][0]
    assert entry["subfolder"] == today
    # widget values are made filename-safe; %width% is the saved image's own width
    assert entry["filename"] == "768x512_a cat_ _b__c_6_00001_.png"
    assert os.path.exists(os.path.join(workspace, "output", today, entry["filename"]))


def test_resolve_tokens_details():
    now = datetime.datetime(2024, 3, 7, 9, 5, 2)
    assert format_date("yyyy-MM-dd hh:mm:ss", now) == "2024-03-07 09:05:02"
    assert format_date("yy/M/d h.m.s", now) == "24/3/7 9.5.2"
    # class_type also identifies a node; links and unknown nodes/widgets stay as they are
    assert resolve_filename_tokens("%EmptyLatentImage.batch_size%", PROMPT) == "1"
    assert resolve_filename_tokens("%Positive.clip%", PROMPT) == "%Positive.clip%"
    assert resolve_filename_tokens("%Nope.width%_%5.nope%", PROMPT) == "%Nope.width%_%5.nope%"
    assert resolve_filename_tokens("%batch_num%", PROMPT) == "%batch_num%"
    assert resolve_filename_tokens("%date:yyyy%", None, now) == "2024"


def test_batch_num_in_prefix(workspace):
    res = run(SaveImage, images=_img(b=2), filename_prefix="frame_%batch_num%")
    names = [e["filename"] for e in res["ui"]["images"]]
    assert names == ["frame_0_00001_.png", "frame_1_00002_.png"]


def test_preview_image_goes_to_temp(workspace):
    res = run(PreviewImage, images=_img(b=1), prompt=PROMPT, extra_pnginfo={"workflow": {"a": 1}})
    entry = res["ui"]["images"][0]
    assert entry["type"] == "temp" and entry["subfolder"] == ""
    assert entry["filename"].startswith("ComfyUI_temp_") and entry["filename"].endswith("_00001_.png")
    path = os.path.join(workspace, "temp", entry["filename"])
    assert os.path.exists(path)
    assert not os.listdir(os.path.join(workspace, "output"))
    # each preview node instance gets its own random prefix, so files never collide
    other = run(PreviewImage, images=_img())["ui"]["images"][0]["filename"]
    assert other != entry["filename"] and os.path.exists(path)
    with Image.open(path) as im:
        assert json.loads(im.text["workflow"]) == {"a": 1}


def test_mask_preview(workspace):
    mask = torch.zeros((1, 3, 3))
    mask[0, 1, 1] = 1.0
    res = run(MaskPreview, mask=mask)
    entry = res["ui"]["images"][0]
    with Image.open(os.path.join(workspace, "temp", entry["filename"])) as im:
        assert im.size == (3, 3)
        assert im.getpixel((1, 1)) == (255, 255, 255) and im.getpixel((0, 0)) == (0, 0, 0)


def test_save_rejects_non_images(workspace):
    with pytest.raises((TypeError, ValueError)):
        run(SaveImage, images=torch.zeros((4, 4)), filename_prefix="bad")


def test_save_animated_webp_and_png(workspace):
    from comfyui.nodes.builtin.image_transform import SaveAnimatedPNG, SaveAnimatedWEBP

    frames = torch.stack([torch.full((8, 8, 3), v) for v in (0.0, 0.5, 1.0)])
    res = run(SaveAnimatedWEBP, images=frames, fps=10.0, filename_prefix="anim/clip", lossless=True, quality=80,
              method="fastest", prompt=PROMPT, extra_pnginfo={"workflow": {"w": 1}})
    entry = res["ui"]["images"][0]
    assert res["ui"]["animated"] == [True]
    assert entry == {"filename": "clip_00001_.webp", "subfolder": "anim", "type": "output"}
    with Image.open(os.path.join(workspace, "output", "anim", "clip_00001_.webp")) as im:
        assert im.n_frames == 3
        exif = im.getexif()
        assert exif[0x0110].startswith("prompt:") and json.loads(exif[0x0110][7:]) == PROMPT
        assert exif[0x010F] == 'workflow:{"w": 1}'

    res = run(SaveAnimatedPNG, images=frames, fps=10.0, compress_level=1, filename_prefix="apng", prompt=PROMPT)
    entry = res["ui"]["images"][0]
    with Image.open(os.path.join(workspace, "output", entry["filename"])) as im:
        assert im.n_frames == 3
        im.seek(2)
        assert im.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    with open(os.path.join(workspace, "output", entry["filename"]), "rb") as f:
        assert b"comf" in f.read()


def test_config_disable_metadata(workspace, monkeypatch):
    from comfyui import config, runtime

    cfg = config.Config()
    cfg.disable_metadata = True
    monkeypatch.setattr(runtime.current(), "config", cfg)
    run(SaveImage, images=_img(), filename_prefix="cfg", prompt=PROMPT)
    with Image.open(os.path.join(workspace, "output", "cfg_00001_.png")) as im:
        assert "prompt" not in im.text
