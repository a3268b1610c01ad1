"""Helpers of the production API tests (a module of its own: test modules import it by name)."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient


def image_prompt(color: int = 0xFF0000, width: int = 8, height: int = 6, batch: int = 1, prefix="ComfyUI") -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch,
                                                          "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def decode_image(b64: str):
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


@dataclass
class Api:
    client: TestClient
    engine: Any
    workspace: Any
    app: Any

    @property
    def state(self):
        from comfyui.api_server.app import STATE

        return self.app[STATE]

    async def post(self, body: Any):
        resp = await self.client.post("/prompt", json=body)
        return resp.status, await resp.json()
