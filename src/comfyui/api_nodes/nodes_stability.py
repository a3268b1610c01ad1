"""Stability AI nodes (upstream comfy_api_nodes/nodes_stability.py): Stable Image Ultra, SD 3.5
and the Conservative / Fast upscalers answer at once (multipart request, the image inline);
the Creative upscaler is a task polled at ``/v2beta/results/{id}``."""
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
        return _decoded(response, "Stable Image Ultra")


def _seed():
    return io.Int.Input("seed", default=0, min=0, max=4294967294, step=1, display_mode=io.NumberDisplay.number,
                        control_after_generate=True, tooltip="The random seed used for creating the noise.")


def _negative_prompt():
    return io.String.Input("negative_prompt", default="", force_input=True, optional=True,
                           tooltip="Keywords of what you do not wish to see in the output image.")


def _image_part(image, max_pixels: int) -> list:
    return [("image", "image.png", png_bytes(image, max_pixels=max_pixels), "image/png")]


def _decoded(response, what: str):
    """The inline image of a finished Stability answer (``image`` or ``result``)."""
    data = getattr(response, "image", None) or getattr(response, "result", None)
    if response.finish_reason != "SUCCESS" or not data:
        raise ApiNodeError(f"{what} generation failed: {response.finish_reason}.")
    return io.NodeOutput(image_from_bytes(base64.b64decode(data)))


class StabilityStableImageSD_3_5Node(io.ComfyNode):
    """Generates images synchronously based on prompt and resolution."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StabilityStableImageSD_3_5Node", display_name="Stability AI Stable Diffusion 3.5 Image",
            category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What you wish to see in the output image."),
                io.Combo.Input("model", options=["sd3.5-large", "sd3.5-medium"]),
                io.Combo.Input("aspect_ratio", options=ASPECT_RATIOS, default="1:1",
                               tooltip="Aspect ratio of generated image."),
                io.Combo.Input("style_preset", options=STYLE_PRESETS, tooltip="Optional desired style of generated image."),
                io.Float.Input("cfg_scale", default=4.0, min=1.0, max=10.0, step=0.1,
                               tooltip="How strictly the diffusion process adheres to the prompt text."),
                _seed(),
                io.Image.Input("image", optional=True),
                _negative_prompt(),
                io.Float.Input("image_denoise", default=0.5, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Denoise of input image; 0.0 yields image identical to input, 1.0 is as if "
                                       "no image was provided at all."),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(depends_on=io.PriceBadgeDepends(widgets=["model"]),
                                      expr='{"type":"usd","usd": widgets.model = "sd3.5-large" ? 0.065 : 0.035}'))

    @classmethod
    async def execute(cls, model, prompt, aspect_ratio, style_preset, seed, cfg_scale, image=None, negative_prompt="",
                      image_denoise=0.5):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        body = m.StabilityStable3_5Request(
            model=model, mode="text-to-image" if image is None else "image-to-image", prompt=prompt,
            negative_prompt=negative_prompt or None, aspect_ratio=aspect_ratio if image is None else None, seed=seed,
            style_preset=None if style_preset == "None" else style_preset, cfg_scale=cfg_scale,
            strength=None if image is None else image_denoise)
        files = _image_part(image, 1504 * 1504) if image is not None else [("none", "", b"", "application/octet-stream")]
        response = await client.call("/proxy/stability/v2beta/stable-image/generate/sd3", m.StabilityStableUltraResponse,
                                     body=body, files=files)
        return _decoded(response, "Stable Diffusion 3.5 Image")


class StabilityUpscaleConservativeNode(io.ComfyNode):
    """Upscale image with minimal alterations to 4K resolution."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StabilityUpscaleConservativeNode", display_name="Stability AI Upscale Conservative",
            category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.Image.Input("image"),
                io.String.Input("prompt", multiline=True, default="", tooltip="What you wish to see in the output image."),
                io.Float.Input("creativity", default=0.35, min=0.2, max=0.5, step=0.01,
                               tooltip="Controls the likelihood of creating additional details not heavily "
                                       "conditioned by the init image."),
                _seed(),
                _negative_prompt(),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=io.PriceBadge(
                expr='{"type":"usd","usd":0.25}'))

    @classmethod
    async def execute(cls, image, prompt, creativity, seed, negative_prompt=""):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        body = m.StabilityUpscaleConservativeRequest(prompt=prompt, negative_prompt=negative_prompt or None,
                                                     creativity=round(creativity, 2), seed=seed)
        response = await client.call("/proxy/stability/v2beta/stable-image/upscale/conservative",
                                     m.StabilityStableUltraResponse, body=body, files=_image_part(image, 1024 * 1024))
        return _decoded(response, "Stability Upscale Conservative")


class StabilityUpscaleCreativeNode(io.ComfyNode):
    """Upscale image with minimal alterations to 4K resolution."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StabilityUpscaleCreativeNode", display_name="Stability AI Upscale Creative",
            category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.Image.Input("image"),
                io.String.Input("prompt", multiline=True, default="", tooltip="What you wish to see in the output image."),
                io.Float.Input("creativity", default=0.3, min=0.1, max=0.5, step=0.01,
                               tooltip="Controls the likelihood of creating additional details not heavily "
                                       "conditioned by the init image."),
                io.Combo.Input("style_preset", options=STYLE_PRESETS, tooltip="Optional desired style of generated image."),
                _seed(),
                _negative_prompt(),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=io.PriceBadge(
                expr='{"type":"usd","usd":0.25}'))

    @classmethod
    async def execute(cls, image, prompt, creativity, style_preset, seed, negative_prompt=""):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        body = m.StabilityUpscaleCreativeRequest(
            prompt=prompt, negative_prompt=negative_prompt or None, creativity=round(creativity, 2), seed=seed,
            style_preset=None if style_preset == "None" else style_preset)
        task = await client.call("/proxy/stability/v2beta/stable-image/upscale/creative", m.StabilityAsyncResponse,
                                 body=body, files=_image_part(image, 1024 * 1024))

        async def fetch():
            status = await client.call(f"/proxy/stability/v2beta/results/{task.id}", m.StabilityResultsGetResponse,
                                       method="GET")
            if status.name or status.errors:
                raise ApiNodeError(f"Stability Upscale Creative failed: {status.name or ''} {'; '.join(status.errors or [])}"
                                   .replace("  ", " ").strip())
            return status

        done = await client.poll(fetch, state=lambda s: "done" if s.finish_reason else "running", progress=lambda s: None)
        return _decoded(done, "Stability Upscale Creative")


class StabilityUpscaleFastNode(io.ComfyNode):
    """Quickly upscales an image via Stability API call to 4x its original size; intended for upscaling low-quality/compressed images."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StabilityUpscaleFastNode", display_name="Stability AI Upscale Fast", category=CATEGORY,
            description=cls.__doc__, inputs=[io.Image.Input("image")],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=io.PriceBadge(
                expr='{"type":"usd","usd":0.01}'))

    @classmethod
    async def execute(cls, image):
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        response = await client.call("/proxy/stability/v2beta/stable-image/upscale/fast", m.StabilityStableUltraResponse,
                                     body=m.StabilityUpscaleFastRequest(), files=_image_part(image, 4096 * 4096))
        return _decoded(response, "Stability Upscale Fast")


NODES = [StabilityStableImageUltraNode, StabilityStableImageSD_3_5Node, StabilityUpscaleConservativeNode,
         StabilityUpscaleCreativeNode, StabilityUpscaleFastNode]
