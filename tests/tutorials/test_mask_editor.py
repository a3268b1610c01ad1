"""Mask editor round trip (docs/interface/maskeditor.md): the frontend uploads the painted
alpha to /upload/mask with the original image's reference; the merged RGBA file in
input/clipspace is what the Load Image node then reads, and its MASK is 1 - alpha."""
from __future__ import annotations

import io
import json

import numpy as np
import torch
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from comfyui.engine.engine import Engine
from comfyui.nodes.builtin.image import LoadImage
from comfyui.nodes.registry import NodeRegistry
from comfyui.server.app import create_app


async def test_mask_editor_alpha_lands_as_load_image_mask(workspace):
    rgb = (np.arange(12 * 10 * 3) % 251).astype(np.uint8).reshape(10, 12, 3)
    Image.fromarray(rgb, "RGB").save(workspace / "input" / "photo.png")
    # what the mask editor sends: the painted area is where alpha is 0 (semi-transparent brush edge: 128)
    alpha = np.full((10, 12), 255, np.uint8)
    alpha[2:6, 3:9] = 0
    alpha[6, 3:9] = 128
    painted = np.zeros((10, 12, 4), np.uint8)
    painted[..., 3] = alpha
    buf = io.BytesIO()
    Image.fromarray(painted, "RGBA").save(buf, format="PNG")
    app = create_app(Engine(registry=NodeRegistry.with_builtins()), {})
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        form = FormData()
        form.add_field("image", buf.getvalue(), filename="clipspace-mask-1234.png", content_type="image/png")
        form.add_field("type", "input")
        form.add_field("subfolder", "clipspace")
        form.add_field("original_ref", json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"}))
        r = await client.post("/upload/mask", data=form)
        assert r.status == 200
        ref = await r.json()
    finally:
        await client.close()
    # the frontend then sets the Load Image widget to "clipspace/<name> [input]"
    name = f"{ref['subfolder']}/{ref['name']} [input]"
    assert LoadImage.VALIDATE_INPUTS(name) is True
    image, mask = LoadImage().load_image(name)
    assert image.shape == (1, 10, 12, 3) and mask.shape == (1, 10, 12)
    torch.testing.assert_close(image[0], torch.from_numpy(rgb).float() / 255.0)  # colours untouched
    torch.testing.assert_close(mask[0], 1.0 - torch.from_numpy(alpha).float() / 255.0)
    assert mask[0, 3, 4] == 1.0 and mask[0, 0, 0] == 0.0
