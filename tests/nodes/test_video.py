"""VIDEO type and video nodes: MP4 / WEBM round trips through the real engine (frame count, fps,
size, audio track, prompt + workflow in the container tags), the lazily read VideoFromFile,
LoadVideo of an uploaded file, and /view range requests through the real server."""
import importlib
import io as pyio
import json
import math
import os
from fractions import Fraction

import pytest
import torch

av = pytest.importorskip("av")

from comfyui.nodes.schema.video import (VideoComponents, VideoFromComponents,  # noqa: E402
                                        VideoFromFile)

T, H, W = 9, 32, 48


def _frames(t=T, h=H, w=W):
    """Frames whose mean brightness rises with time, plus a horizontal gradient."""
    x = torch.linspace(0, 1, w)[None, None, :, None]
    k = torch.arange(t, dtype=torch.float32)[:, None, None, None] / max(t - 1, 1)
    img = (0.15 + 0.7 * k) * torch.ones(t, h, w, 3)
    img[..., 0:1] = img[..., 0:1] * 0.5 + 0.5 * x
    return img.clamp(0, 1)


def _tone(seconds, rate=16000, channels=2):
    s = torch.arange(int(seconds * rate), dtype=torch.float32) / rate
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * s * (c + 1)) for c in range(channels)])
    return {"waveform": wave.unsqueeze(0), "sample_rate": rate}


@pytest.fixture
def engine(workspace):
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    registry = NodeRegistry()
    for name in ["video", "image_transform"]:
        registry.register_module(importlib.import_module(f"comfyui.nodes.builtin.{name}"), "nodes")
    eng = Engine(registry)
    eng.start()
    yield eng
    eng.stop()


def _probe(path):
    with av.open(path) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        frames = sum(1 for _ in c.decode(v))
        return {"format": c.format.name, "codec": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt,
                "size": (v.width, v.height), "rate": v.average_rate, "frames": frames,
                "audio": None if audio is None else (audio.codec_context.name, audio.sample_rate,
                                                     audio.codec_context.channels),
                "metadata": dict(c.metadata)}


def test_mp4_round_trip_frames_fps_audio(workspace, tmp_path):
    frames = _frames()
    audio = _tone(T / 12 + 0.5)  # longer than the video: trimmed to it
    video = VideoFromComponents(VideoComponents(images=frames, frame_rate=Fraction(12), audio=audio))
    assert video.get_dimensions() == (W, H) and video.get_duration() == pytest.approx(T / 12)
    path = str(tmp_path / "a.mp4")
    video.save_to(path, metadata={"prompt": {"1": {"class_type": "X"}}, "title": "plain text"})
    info = _probe(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["size"] == (W, H) and info["rate"] == 12 and info["frames"] == T
    assert info["audio"] == ("aac", 16000, 2)
    assert json.loads(info["metadata"]["prompt"]) == {"1": {"class_type": "X"}}
    assert info["metadata"]["title"] == "plain text"

    back = VideoFromFile(path)
    assert back.get_dimensions() == (W, H)
    assert back.get_frame_count() == T and back.get_frame_rate() == 12
    assert back.get_duration() == pytest.approx(T / 12, abs=0.1)
    assert back.get_container_format().startswith("mov,mp4")
    comp = back.get_components()
    assert comp.images.shape == (T, H, W, 3) and comp.images.dtype == torch.float32
    assert comp.frame_rate == 12
    # lossy, but the brightness ramp over time survives
    means = comp.images.mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1])
    assert (comp.images - frames).abs().mean() < 0.03
    wav = comp.audio["waveform"]
    assert comp.audio["sample_rate"] == 16000 and wav.shape[:2] == (1, 2)
    # aac pads a little; the length follows the video's, not the 1.25 s given
    assert abs(wav.shape[-1] / 16000 - T / 12) < 0.15
    # the 440 Hz tone is still there: correlation with the source over the middle part
    src = audio["waveform"][0, 0, 4000:8000]
    best = max(float(torch.nn.functional.cosine_similarity(src, wav[0, 0, 4000 + d:8000 + d], dim=0))
               for d in range(0, 2048, 1))
    assert best > 0.9


def test_video_from_file_reads_bytes_and_remuxes(tmp_path):
    buf = pyio.BytesIO()
    VideoFromComponents(VideoComponents(images=_frames(5), frame_rate=Fraction(8))).save_to(buf)
    lazy = VideoFromFile(pyio.BytesIO(buf.getvalue()))
    assert lazy.get_dimensions() == (W, H) and lazy.get_frame_count() == 5
    # same container and codec: the packets are copied, new tags added, old ones kept
    out = tmp_path / "copy.mp4"
    lazy.save_to(str(out), metadata={"workflow": {"nodes": [1]}})
    info = _probe(str(out))
    assert info["frames"] == 5 and info["rate"] == 8
    assert json.loads(info["metadata"]["workflow"]) == {"nodes": [1]}
    with pytest.raises(ValueError, match="webm|Only MP4"):
        VideoFromComponents(VideoComponents(images=_frames(2), frame_rate=Fraction(8))).save_to(
            str(tmp_path / "x.webm"), format="webm")


def _write_input_video(workspace, name="clip.mp4", t=6):
    path = os.path.join(workspace, "input", name)
    VideoFromComponents(VideoComponents(images=_frames(t), frame_rate=Fraction(10),
                                        audio=_tone(1.0, channels=1))).save_to(path)
    return path


def test_create_save_load_get_components_through_engine(workspace, engine):
    _write_input_video(workspace)
    from comfyui.nodes.builtin.video import LoadVideo

    assert LoadVideo.define_schema().inputs[0].options == ["clip.mp4"]
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 15.0, "audio": ["2", 1]}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "video/ComfyUI",
                                                    "format": "auto", "codec": "auto"}},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "copy",
                                                    "format": "mp4", "codec": "h264"}},
    }
    workflow = {"nodes": [{"id": 4, "type": "SaveVideo"}], "links": [], "version": 0.4}
    sub = engine.submit(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert sub.node_errors == {}
    history = engine.wait(sub.prompt_id).result(120)
    assert history["status"]["status_str"] == "success", history["status"]
    out = history["outputs"]
    assert json.loads(json.dumps(out["4"])) == {"images": [{"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}],
                        "animated": [True]}
    info = _probe(os.path.join(workspace, "output", "video", "ComfyUI_00001_.mp4"))
    assert info["frames"] == 6 and info["rate"] == 15 and info["size"] == (W, H)
    assert info["audio"] is not None and info["audio"][0] == "aac" and info["audio"][2] == 1
    assert json.loads(info["metadata"]["prompt"]) == prompt
    assert json.loads(info["metadata"]["workflow"]) == workflow
    copy = _probe(os.path.join(workspace, "output", out["5"]["images"][0]["filename"]))
    assert copy["frames"] == 6 and copy["rate"] == 10 and json.loads(copy["metadata"]["prompt"]) == prompt


def test_load_video_rejects_missing_file(workspace, engine):
    from comfyui.engine.validation import PromptError

    with pytest.raises(PromptError) as err:
        engine.submit({"1": {"class_type": "LoadVideo", "inputs": {"file": "nope.mp4"}},
                         "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "x",
                                                                     "format": "auto", "codec": "auto"}}})
    assert "1" in err.value.node_errors


@pytest.mark.parametrize("codec,expect", [("vp9", "vp9"), ("av1", "av1")])
def test_save_webm(workspace, engine, codec, expect):
    from comfyui.nodes.builtin.video import SaveWEBM

    prompt = {"1": {"class_type": "SaveWEBM", "inputs": {"images": ["2", 0], "filename_prefix": "w", "codec": codec,
                                                         "fps": 12.0, "crf": 40.0}}}
    from comfyui.nodes.io import io

    cls = SaveWEBM.PREPARE_CLASS_CLONE({io.Hidden.prompt: prompt, io.Hidden.extra_pnginfo: {"workflow": {"n": 1}}})
    result = cls.execute(images=_frames(5, 64, 64), codec=codec, fps=12.0, filename_prefix="w", crf=40.0)
    entry = result.ui.as_dict()
    assert entry["animated"] == (True,) and entry["images"][0]["filename"].endswith(".webm")
    info = _probe(os.path.join(workspace, "output", entry["images"][0]["filename"]))
    assert info["format"].startswith("matroska,webm") and info["codec"] in (expect, "libdav1d", "libvpx-vp9")
    assert info["frames"] == 5 and info["rate"] == 12 and info["size"] == (64, 64)
    tags = {k.lower(): v for k, v in info["metadata"].items()}  # Matroska tag names
    assert json.loads(tags["prompt"]) == prompt and json.loads(tags["workflow"]) == {"n": 1}


async def test_view_serves_video_with_range_requests(workspace, make_server_for_video):
    path = _write_input_video(workspace, "seek.mp4", t=20)
    data = open(path, "rb").read()
    client = await make_server_for_video()
    url = "/view?filename=seek.mp4&type=input"
    whole = await client.get(url)
    assert whole.status == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers.get("Accept-Ranges") == "bytes"
    assert await whole.read() == data
    n = len(data)
    # a browser seeks: open-ended first, then ranges in the middle and at the end
    for header, start, end in [("bytes=0-", 0, n - 1), ("bytes=100-199", 100, 199),
                               (f"bytes={n - 50}-", n - 50, n - 1), ("bytes=-30", n - 30, n - 1),
                               ("bytes=7-7", 7, 7)]:
        resp = await client.get(url, headers={"Range": header})
        assert resp.status == 206, header
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{n}"
        assert resp.headers["Content-Type"] == "video/mp4"
        body = await resp.read()
        assert body == data[start:end + 1]
        assert int(resp.headers["Content-Length"]) == end - start + 1
    bad = await client.get(url, headers={"Range": f"bytes={n + 10}-"})
    assert bad.status == 416
    webm = await client.get("/view?filename=x.webm&type=input")
    assert webm.status == 404


@pytest.fixture
async def make_server_for_video(workspace):
    from aiohttp.test_utils import TestClient, TestServer

    from comfyui.config import Config
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    from comfyui.server.app import create_app

    made = []

    async def make():
        config = Config(base_directory=str(workspace), create_directories=True)
        registry = NodeRegistry()
        registry.register_module(importlib.import_module("comfyui.nodes.builtin.video"), "nodes")
        engine = Engine.from_config(config, registry=registry)
        client = TestClient(TestServer(create_app(engine, config)))
        await client.start_server()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def test_upload_video_to_input_then_listed(workspace, make_server_for_video):
    from aiohttp import FormData

    buf = pyio.BytesIO()
    VideoFromComponents(VideoComponents(images=_frames(3), frame_rate=Fraction(5))).save_to(buf)
    client = await make_server_for_video()
    info = await (await client.get("/object_info/LoadVideo")).json()
    assert info["LoadVideo"]["input"]["required"]["file"][1]["options"] == []
    assert info["LoadVideo"]["input"]["required"]["file"][1]["video_upload"] is True
    form = FormData()
    form.add_field("image", buf.getvalue(), filename="up.mp4", content_type="video/mp4")
    form.add_field("type", "input")
    resp = await client.post("/upload/image", data=form)
    assert resp.status == 200
    assert (await resp.json()) == {"name": "up.mp4", "subfolder": "", "type": "input"}
    from comfyui.nodes.builtin.video import LoadVideo, input_video_files

    assert input_video_files() == ["up.mp4"]
    # the node's file list follows the input folder (define_schema is asked again)
    info = await (await client.get("/object_info/LoadVideo")).json()
    assert info["LoadVideo"]["input"]["required"]["file"][1]["options"] == ["up.mp4"]
    video = LoadVideo.execute(file="up.mp4").result[0]
    assert video.get_frame_count() == 3


def test_save_video_without_metadata_when_disabled(workspace, monkeypatch):
    from comfyui.nodes.builtin import image as image_mod
    from comfyui.nodes.builtin.video import CreateVideo, SaveVideo
    from comfyui.nodes.io import io

    monkeypatch.setattr(image_mod, "DISABLE_METADATA", True)
    (video,) = CreateVideo.execute(images=_frames(3), fps=6.0).result
    cls = SaveVideo.PREPARE_CLASS_CLONE({io.Hidden.prompt: {"1": {}}, io.Hidden.extra_pnginfo: {"workflow": {}}})
    entry = cls.execute(video=video, filename_prefix="nometa", format="mp4", codec="h264").ui.as_dict()
    info = _probe(os.path.join(workspace, "output", entry["images"][0]["filename"]))
    assert info["frames"] == 3 and "prompt" not in info["metadata"] and "workflow" not in info["metadata"]
