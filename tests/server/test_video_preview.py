"""Latent previews of a video sampling reach the browser through the WebSocket as upstream sends
them: the first latent frame projected to RGB (Latent2RGB), a JPEG in a type-4 frame whose
metadata says ``image/jpeg`` and names the sampler node, one per step. The method comes from the
prompt's ``extra_data.preview_method`` (what the frontend sends from its "Live preview method"
setting) or, without one, from the server's ``--preview-method`` -- upstream's
``set_preview_method``. Frontend 1.58.1 turns a type-4 frame into a Blob of the metadata's
``image_type`` and shows it on the node and in the queue panel."""
from __future__ import annotations

import io
import json
import os
import struct
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("sentencepiece")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models import wan_fixtures  # noqa: E402

from server_helpers import collect, frame_type, is_done  # noqa: E402

FLAGS = {"supports_preview_metadata": True}
W, H, LENGTH, STEPS = 64, 48, 9, 3   # 3 latent frames of 8x6


def _write_models(base: str) -> None:
    import sentencepiece as spm
    from safetensors.torch import save_file
    models = os.path.join(base, "models")
    for folder in ("diffusion_models", "text_encoders"):
        os.makedirs(os.path.join(models, folder), exist_ok=True)
    dm = wan_fixtures.diffusers_wan(seed=0, text_dim=32)
    save_file(wan_fixtures.native_sd(dm), os.path.join(models, "diffusion_models", "wan_tiny.safetensors"))
    proto = wan_fixtures.spiece_model()
    umt5 = wan_fixtures.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(),
                                d_model=32)
    save_file(wan_fixtures.umt5_file_sd(umt5, proto), os.path.join(models, "text_encoders", "umt5_tiny.safetensors"))


def _prompt() -> dict:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan_tiny.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_tiny.safetensors", "type": "wan",
                                                     "device": "default"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a cat walks"}},
        "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": W, "height": H, "length": LENGTH,
                                                                  "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["3", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": 1, "steps": STEPS, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/preview"}},
    }


def _previews(msgs: list) -> list[tuple[dict, bytes]]:
    out = []
    for m in msgs:
        if isinstance(m, bytes) and frame_type(m) == 4:
            (meta_len,) = struct.unpack(">I", m[4:8])
            out.append((json.loads(m[8:8 + meta_len]), m[8 + meta_len:]))
    return out


@pytest.fixture
def threads():
    yield from wan_fixtures.one_thread()


async def test_video_previews_through_the_websocket(make_server, workspace, threads):
    from PIL import Image

    _write_models(str(workspace))
    server = await make_server(preview_method="none", cpu=True)
    ws, sid = await server.ws(flags=FLAGS)

    # the prompt asks for latent2rgb (the server's own method is none)
    body = await server.submit(_prompt(), client_id=sid, extra_data={"preview_method": "latent2rgb"})
    previews = _previews(await collect(ws, is_done(body["prompt_id"]), timeout=120))
    assert len(previews) == STEPS
    for meta, image in previews:
        assert meta["image_type"] == "image/jpeg" and meta["node_id"] == "5"
        assert meta["prompt_id"] == body["prompt_id"]
        with Image.open(io.BytesIO(image)) as im:
            assert im.format == "JPEG" and im.size == (W // 8, H // 8) and not getattr(im, "is_animated", False)

    # no method asked for ("default" is what the frontend's default setting means): the server's
    for extra in ({}, {"preview_method": "default"}):
        body = await server.submit({**_prompt(), "5": {**_prompt()["5"], "inputs": {**_prompt()["5"]["inputs"],
                                                                                   "seed": 2 + len(extra)}}},
                                   client_id=sid, extra_data=extra)
        assert _previews(await collect(ws, is_done(body["prompt_id"]), timeout=120)) == []
    await ws.close()


def test_a_video_preview_is_its_first_frame():
    from comfyui.models.latent_formats import Wan21
    from comfyui.sampling.preview import Latent2RGBPreviewer

    fmt = Wan21()
    previewer = Latent2RGBPreviewer(fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(1, 16, 3, 6, 8, generator=g)
    first = previewer.decode_latent_to_preview(video)
    assert first.size == (8, 6)
    pixels = lambda image: np.asarray(image).tolist()  # noqa: E731
    assert pixels(first) == pixels(previewer.decode_latent_to_preview(video[:, :, 0]))
    assert pixels(first) != pixels(previewer.decode_latent_to_preview(video[:, :, 1]))
