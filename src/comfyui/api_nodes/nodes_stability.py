"""Stability AI nodes (upstream comfy_api_nodes/nodes_stability.py): Stable Image Ultra through
``/proxy/stability/v2beta/stable-image/generate/ultra`` (multipart; the image comes back inline)."""
from __future__ import annotations

import base64

from comfyui.nodes.io import io

from . import models as m
from .client import ApiClient, ApiNodeError
from .images import image_from_bytes, png_bytes

CATEGORY = "api node/image/Stability AI"
HIDDEN = [io.Hidden.auth_token_comfy_org, io.Hidden.api_key_comfy_org, io.Hidden.unique_id]
ASPECT_RATIOS = ["1:1", "16:9", "9:16", "3:2", "2:3", "5:4", "4:5", "21:9", "9:21"]
STYLE_PRESETS = ["None", "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
                 "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk", "origami",
                 "photographic", "pixel-art", "tile-texture"]


class StabilityStableImageUltraNode(io.ComfyNode):
    """Generates images synchronously based on prompt and resolution."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StabilityStableImageUltraNode", display_name="Stability AI Stable Image Ultra", category=CATEGORY,
            description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What you wish to see in the output image; `(word:weight)` weights a word."),
                io.Combo.Input("aspect_ratio", options=ASPECT_RATIOS, default="1:1",
                               tooltip="Aspect ratio of generated image."),
                io.Combo.Input("style_preset", options=STYLE_PRESETS, tooltip="Optional desired style of generated image."),
                io.Int.Input("seed", default=0, min=0, max=4294967294, step=1, display_mode=io.NumberDisplay.number,
                             control_after_generate=True, tooltip="The random seed used for creating the noise."),
                io.Image.Input("image", optional=True),
                io.String.Input("negative_prompt", default="", force_input=True, optional=True,
                                tooltip="A blurb of text describing what you do not wish to see in the output image."),
                io.Float.Input("image_denoise", default=0.5, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Denoise of input image; 0.0 yields image identical to input, 1.0 is as if "
                                       "no image was provided at all."),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(expr='{"type":"usd","usd":0.08}'))

    @classmethod
    async def execute(cls, prompt, aspect_ratio, style_preset, seed, image=None, negative_prompt="", image_denoise=0.5):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        body = m.StabilityStableUltraRequest(
            prompt=prompt, negative_prompt=negative_prompt or None, aspect_ratio=aspect_ratio, seed=seed,
            strength=None if image is None else image_denoise,
            style_preset=None if style_preset == "None" else style_preset)
        # the route is multipart even without an image (an empty "none" part, as the API asks)
        files = [("image", "image.png", png_bytes(image, max_pixels=1504 * 1504), "image/png")] if image is not None \
            else [("none", "", b"", "application/octet-stream")]
        response = await client.call("/proxy/stability/v2beta/stable-image/generate/ultra",
                                     m.StabilityStableUltraResponse, body=body, files=files)
        if response.finish_reason != "SUCCESS" or not response.image:
            raise ApiNodeError(f"Stable Image Ultra generation failed: {response.finish_reason}.")
        return io.NodeOutput(image_from_bytes(base64.b64decode(response.image)))


NODES = [StabilityStableImageUltraNode]
