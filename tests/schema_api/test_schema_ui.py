"""ui outputs of the schema API produce ComfyUI ui dicts and the files they point at."""
import json
import os
import wave

import torch
from PIL import Image

from comfyui.nodes.io import io, ui


def _hidden_cls(prompt=None, extra=None):
    class Saver(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Saver")

        @classmethod
        def execute(cls):
            return io.NodeOutput()

    return Saver.PREPARE_CLASS_CLONE({io.Hidden.prompt: prompt, io.Hidden.extra_pnginfo: extra})


def test_preview_image_saves_to_temp_with_metadata(workspace):
    images = torch.zeros((2, 8, 6, 3))
    images[1, :, :, 0] = 1.0
    prompt = {"1": {"class_type": "Saver", "inputs": {}}}
    preview = ui.PreviewImage(images, cls=_hidden_cls(prompt, {"workflow": {"nodes": []}}))
    data = preview.as_dict()
    assert data["animated"] == (False,)
    assert len(data["images"]) == 2
    first, second = data["images"]
    assert first["type"] == "temp" and first["subfolder"] == ""
    assert first["filename"].startswith("ComfyUI_temp_") and first["filename"].endswith("_00001_.png")
    assert second["filename"].endswith("_00002_.png")
    path = workspace / "temp" / second["filename"]
    with Image.open(path) as img:
        assert img.size == (6, 8)
        assert img.getpixel((0, 0)) == (255, 0, 0)
        assert json.loads(img.text["prompt"]) == prompt
        assert json.loads(img.text["workflow"]) == {"nodes": []}
    # The dict is JSON-serialisable the way the server sends it.
    assert json.loads(json.dumps(data))["images"][0] == {"filename": first["filename"], "subfolder": "",
                                                         "type": "temp"}


def test_preview_mask_and_saved_images(workspace):
    mask = torch.ones((1, 4, 5))
    data = ui.PreviewMask(mask).as_dict()
    with Image.open(workspace / "temp" / data["images"][0]["filename"]) as img:
        assert img.size == (5, 4) and img.mode == "RGB" and img.getpixel((2, 2)) == (255, 255, 255)
        assert "prompt" not in img.text  # no hidden values, no metadata
    saved = ui.ImageSaveHelper.get_save_images_ui(torch.rand((1, 4, 4, 3)), "sub/pic")
    result = saved.as_dict()["images"][0]
    assert result == {"filename": "pic_00001_.png", "subfolder": "sub", "type": "output"}
    assert os.path.isfile(workspace / "output" / "sub" / "pic_00001_.png")
    assert ui.SavedImages([result], is_animated=True).as_dict() == {"images": [result], "animated": (True,)}
    assert result.type == io.FolderType.output and result.filename == "pic_00001_.png"


def test_text_video_and_audio_previews(workspace):
    assert ui.PreviewText("hello").as_dict() == {"text": ("hello",)}
    clip = ui.SavedResult("v.mp4", "", io.FolderType.output)
    assert ui.PreviewVideo([clip]).as_dict() == {"images": [clip], "animated": (True,)}
    audio = {"waveform": torch.zeros((1, 2, 800)), "sample_rate": 8000}
    data = ui.PreviewAudio(audio).as_dict()
    entry = data["audio"][0]
    assert entry["type"] == "temp"
    path = str(workspace / "temp" / entry["filename"])
    try:
        import av
    except ImportError:  # no PyAV: WAV
        with wave.open(path, "rb") as w:
            assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 800)
    else:  # FLAC, read back with PyAV
        assert entry["filename"].endswith(".flac")
        with av.open(path) as c:
            stream = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(stream))
            assert (stream.codec_context.name, stream.channels, stream.sample_rate, samples) == ("flac", 2, 8000, 800)
