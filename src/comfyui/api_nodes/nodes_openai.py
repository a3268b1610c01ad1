"""OpenAI image nodes (upstream comfy_api_nodes/nodes_openai.py): DALL·E 2, DALL·E 3 and
GPT Image 1 through ``/proxy/openai/images/generations`` (JSON) or ``.../images/edits``
(multipart), or straight to OpenAI with the user's own key (docs/api-nodes.md)."""
from __future__ import annotations

import base64

from comfyui.nodes.io import io

from . import models as m
from .client import ApiClient, ApiNodeError
from .images import image_batch, image_from_bytes, png_bytes

CATEGORY = "api node/image/OpenAI"
HIDDEN = [io.Hidden.auth_token_comfy_org, io.Hidden.api_key_comfy_org, io.Hidden.unique_id]
GENERATIONS = "/proxy/openai/images/generations"
EDITS = "/proxy/openai/images/edits"


def _seed(tooltip: str | None = "not implemented yet in backend"):
    return io.Int.Input("seed", default=0, min=0, max=2**31 - 1, step=1, display_mode=io.NumberDisplay.number,
                        control_after_generate=True, optional=True, tooltip=tooltip)


async def images_of(client: ApiClient, response: m.OpenAIImageGenerationResponse):
    """The answer's images (inline base64 or URLs) as one IMAGE batch."""
    if not response.data:
        raise ApiNodeError("OpenAI returned no image.")
    images = []
    for item in response.data:
        if item.b64_json:
            images.append(image_from_bytes(base64.b64decode(item.b64_json)))
        elif item.url:
            images.append(image_from_bytes(await client.download(item.url)))
    if not images:
        raise ApiNodeError("OpenAI returned no image.")
    return image_batch(images)


def _rgba_png(image, mask, index: int = 0) -> bytes:
    """The image with the mask as transparency (OpenAI edits where alpha is 0)."""
    import torch

    if mask.shape[1:] != image.shape[1:-1]:
        raise ApiNodeError("Mask and Image must be the same size")
    rgb = image[index:index + 1, ..., :3]
    alpha = (1 - mask[index % mask.shape[0]]).unsqueeze(0).unsqueeze(-1)
    return png_bytes(torch.cat([rgb, alpha.to(rgb)], dim=-1))


class OpenAIDalle2(io.ComfyNode):
    """Generates images synchronously via OpenAI's DALL·E 2 endpoint."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="OpenAIDalle2", display_name="OpenAI DALL·E 2", category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Text prompt for DALL·E"),
                _seed(),
                io.Combo.Input("size", options=["256x256", "512x512", "1024x1024"], default="1024x1024",
                               optional=True, tooltip="Image size"),
                io.Int.Input("n", default=1, min=1, max=8, step=1, display_mode=io.NumberDisplay.number, optional=True,
                             tooltip="How many images to generate"),
                io.Image.Input("image", optional=True, tooltip="Optional reference image for image editing."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional mask for inpainting (white areas will be replaced)"),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(
                depends_on=io.PriceBadgeDepends(widgets=["size", "n"]),
                expr='($s := widgets.size; $p := $s = "256x256" ? 0.016 : $s = "512x512" ? 0.018 : 0.02;'
                     ' {"type":"usd","usd": $p * widgets.n})'))

    @classmethod
    async def execute(cls, prompt, seed=0, image=None, mask=None, n=1, size="1024x1024"):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        if (image is None) != (mask is None):
            raise ApiNodeError("Dall-E 2 image editing requires an image AND a mask")
        if image is None:
            body = m.OpenAIImageGenerationRequest(model="dall-e-2", prompt=prompt, n=n, size=size, seed=seed)
            response = await client.call(GENERATIONS, m.OpenAIImageGenerationResponse, body=body)
        else:
            body = m.OpenAIImageEditRequest(model="dall-e-2", prompt=prompt, n=n, size=size)
            files = [("image", "image.png", _rgba_png(image, mask), "image/png")]
            response = await client.call(EDITS, m.OpenAIImageGenerationResponse, body=body, files=files)
        return io.NodeOutput(await images_of(client, response))


class OpenAIDalle3(io.ComfyNode):
    """Generates images synchronously via OpenAI's DALL·E 3 endpoint."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="OpenAIDalle3", display_name="OpenAI DALL·E 3", category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Text prompt for DALL·E"),
                _seed(),
                io.Combo.Input("quality", options=["standard", "hd"], default="standard", optional=True,
                               tooltip="Image quality"),
                io.Combo.Input("style", options=["natural", "vivid"], default="natural", optional=True,
                               tooltip="Vivid causes the model to lean towards generating hyper-real and dramatic "
                                       "images. Natural causes the model to produce more natural, less hyper-real "
                                       "looking images."),
                io.Combo.Input("size", options=["1024x1024", "1024x1792", "1792x1024"], default="1024x1024",
                               optional=True, tooltip="Image size"),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(
                depends_on=io.PriceBadgeDepends(widgets=["size", "quality"]),
                expr='($big := widgets.size != "1024x1024"; $hd := widgets.quality = "hd";'
                     ' {"type":"usd","usd": $hd ? ($big ? 0.12 : 0.08) : ($big ? 0.08 : 0.04)})'))

    @classmethod
    async def execute(cls, prompt, seed=0, style="natural", quality="standard", size="1024x1024"):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        body = m.OpenAIImageGenerationRequest(model="dall-e-3", prompt=prompt, quality=quality, size=size,
                                              style=style, seed=seed)
        response = await client.call(GENERATIONS, m.OpenAIImageGenerationResponse, body=body)
        return io.NodeOutput(await images_of(client, response))


class OpenAIGPTImage1(io.ComfyNode):
    """Generates images synchronously via OpenAI's GPT Image 1 endpoint."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="OpenAIGPTImage1", display_name="OpenAI GPT Image 1", category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Text prompt for GPT Image 1"),
                _seed(),
                io.Combo.Input("quality", options=["low", "medium", "high"], default="low", optional=True,
                               tooltip="Image quality, affects cost and generation time."),
                io.Combo.Input("background", options=["opaque", "transparent"], default="opaque", optional=True,
                               tooltip="Return image with or without background"),
                io.Combo.Input("size", options=["auto", "1024x1024", "1024x1536", "1536x1024"], default="auto",
                               optional=True, tooltip="Image size"),
                io.Int.Input("n", default=1, min=1, max=8, step=1, display_mode=io.NumberDisplay.number, optional=True,
                             tooltip="How many images to generate"),
                io.Image.Input("image", optional=True, tooltip="Optional reference image for image editing."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional mask for inpainting (white areas will be replaced)"),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(
                depends_on=io.PriceBadgeDepends(widgets=["quality", "n"]),
                expr='($q := widgets.quality; $n := widgets.n;'
                     ' $lo := $q = "high" ? 0.167 : $q = "medium" ? 0.046 : 0.011;'
                     ' $hi := $q = "high" ? 0.3 : $q = "medium" ? 0.07 : 0.02;'
                     ' {"type":"range_usd","min_usd": $lo * $n,"max_usd": $hi * $n})'))

    @classmethod
    async def execute(cls, prompt, seed=0, quality="low", background="opaque", image=None, mask=None, n=1,
                      size="1024x1024"):
        if not prompt:
            raise ApiNodeError("The prompt is empty.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        if image is None:
            if mask is not None:
                raise ApiNodeError("Cannot use a mask without an input image")
            body = m.OpenAIImageGenerationRequest(model="gpt-image-1", prompt=prompt, quality=quality,
                                                  background=background, n=n, size=size, seed=seed, moderation="low")
            response = await client.call(GENERATIONS, m.OpenAIImageGenerationResponse, body=body)
        else:
            if mask is not None and image.shape[0] != 1:
                raise ApiNodeError("Cannot use a mask with multiple image")
            field = "image" if image.shape[0] == 1 else "image[]"
            files = [(field, f"image_{i}.png", png_bytes(image, i), "image/png") for i in range(image.shape[0])]
            if mask is not None:
                import torch

                blank = torch.zeros(1, *mask.shape[1:], 3)
                files.append(("mask", "mask.png", _rgba_png(blank, mask), "image/png"))
            body = m.OpenAIImageEditRequest(model="gpt-image-1", prompt=prompt, quality=quality, background=background,
                                            n=n, size=size, moderation="low")
            response = await client.call(EDITS, m.OpenAIImageGenerationResponse, body=body, files=files)
        return io.NodeOutput(await images_of(client, response))


NODES = [OpenAIDalle2, OpenAIDalle3, OpenAIGPTImage1]
