"""Ideogram nodes (upstream comfy_api_nodes/nodes_ideogram.py): V1 and V2 send one JSON request
to ``/proxy/ideogram/generate``, V3 a multipart one to ``/proxy/ideogram/ideogram-v3/generate``
(or ``.../edit`` with an image and mask); the answer lists image URLs, downloaded into one batch."""
from __future__ import annotations

from comfyui.nodes.io import io

from . import models as m
from .client import ApiClient, ApiNodeError
from .images import image_batch, image_from_bytes, png_bytes

CATEGORY = "api node/image/Ideogram"
HIDDEN = [io.Hidden.auth_token_comfy_org, io.Hidden.api_key_comfy_org, io.Hidden.unique_id]
ASPECT_RATIOS = {r: "ASPECT_" + r.replace(":", "_")
                 for r in ("1:1", "4:3", "3:4", "16:9", "9:16", "2:1", "1:2", "3:2", "2:3", "4:5", "5:4")}
_SIZES = ("512x1536 576x1408 576x1472 576x1536 640x1024 640x1344 640x1408 640x1472 640x1536 704x1152 704x1216 "
          "704x1280 704x1344 704x1408 704x1472 720x1280 736x1312 768x1024 768x1088 768x1152 768x1216 768x1232 "
          "768x1280 768x1344 832x960 832x1024 832x1088 832x1152 832x1216 832x1248 864x1152 896x960 896x1024 "
          "896x1088 896x1120 896x1152 960x832 960x896 960x1024 960x1088 1024x640 1024x768 1024x832 1024x896 "
          "1024x960 1024x1024 1088x768 1088x832 1088x896 1088x960 1120x896 1152x704 1152x768 1152x832 1152x864 "
          "1152x896 1216x704 1216x768 1216x832 1232x768 1248x832 1280x704 1280x720 1280x768 1280x800 1312x736 "
          "1344x640 1344x704 1344x768 1408x576 1408x640 1408x704 1472x576 1472x640 1472x704 1536x512 1536x576 "
          "1536x640").split()
RESOLUTIONS = {"Auto": "AUTO", **{s.replace("x", " x "): "RESOLUTION_" + s.replace("x", "_") for s in _SIZES}}


def _common_inputs(aspect_tip: str) -> tuple[list, list]:
    head = [
        io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation"),
        io.Boolean.Input("turbo", default=False,
                         tooltip="Whether to use turbo mode (faster generation, potentially lower quality)"),
        io.Combo.Input("aspect_ratio", options=list(ASPECT_RATIOS), default="1:1", tooltip=aspect_tip, optional=True),
    ]
    tail = [
        io.Combo.Input("magic_prompt_option", options=["AUTO", "ON", "OFF"], default="AUTO",
                       tooltip="Determine if MagicPrompt should be used in generation", optional=True),
        io.Int.Input("seed", default=0, min=0, max=2147483647, step=1, control_after_generate=True,
                     display_mode=io.NumberDisplay.number, optional=True),
    ]
    return head, tail


def _count_inputs() -> list:
    return [
        io.String.Input("negative_prompt", multiline=True, default="", optional=True,
                        tooltip="Description of what to exclude from the image"),
        io.Int.Input("num_images", default=1, min=1, max=8, step=1, display_mode=io.NumberDisplay.number, optional=True),
    ]


def _price(full: float, turbo: float) -> io.PriceBadge:
    return io.PriceBadge(depends_on=io.PriceBadgeDepends(widgets=["turbo", "num_images"]),
                         expr=f'{{"type":"usd","usd": (widgets.turbo ? {turbo} : {full}) * widgets.num_images}}')


async def generate(cls, request: m.IdeogramImageRequest) -> io.NodeOutput:
    client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
    response = await client.call("/proxy/ideogram/generate", m.IdeogramGenerateResponse,
                                 body=m.IdeogramGenerateRequest(image_request=request))
    return await images_of(client, response)


async def images_of(client: ApiClient, response: m.IdeogramGenerateResponse) -> io.NodeOutput:
    urls = [d.url for d in response.data if d.url]
    if not urls:
        if any(d.is_image_safe is False for d in response.data):
            raise ApiNodeError("Ideogram withheld the images: they were flagged as unsafe.")
        raise ApiNodeError("No images were generated in the response")
    return io.NodeOutput(image_batch([image_from_bytes(await client.download(u)) for u in urls]))


class IdeogramV1(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        head, tail = _common_inputs("The aspect ratio for image generation.")
        return io.Schema(
            node_id="IdeogramV1", display_name="Ideogram V1", category=CATEGORY,
            description="Generates images using the Ideogram V1 model.", is_api_node=True,
            inputs=head + tail + _count_inputs(), outputs=[io.Image.Output()], hidden=HIDDEN,
            price_badge=_price(0.06, 0.02))

    @classmethod
    async def execute(cls, prompt, turbo=False, aspect_ratio="1:1", magic_prompt_option="AUTO", seed=0,
                      negative_prompt="", num_images=1):
        ratio = ASPECT_RATIOS.get(aspect_ratio)
        return await generate(cls, m.IdeogramImageRequest(
            prompt=prompt, model="V_1_TURBO" if turbo else "V_1", num_images=num_images, seed=seed,
            aspect_ratio=None if ratio == "ASPECT_1_1" else ratio,
            magic_prompt_option=None if magic_prompt_option == "AUTO" else magic_prompt_option,
            negative_prompt=negative_prompt or None))


class IdeogramV2(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        head, tail = _common_inputs("The aspect ratio for image generation. Ignored if resolution is not set to AUTO.")
        resolution = io.Combo.Input("resolution", options=list(RESOLUTIONS), default="Auto", optional=True,
                                    tooltip="The resolution for image generation. If not set to AUTO, this overrides "
                                            "the aspect_ratio setting.")
        style = io.Combo.Input("style_type", options=["AUTO", "GENERAL", "REALISTIC", "DESIGN", "RENDER_3D", "ANIME"],
                               default="NONE", tooltip="Style type for generation (V2 only)", optional=True)
        return io.Schema(
            node_id="IdeogramV2", display_name="Ideogram V2", category=CATEGORY,
            description="Generates images using the Ideogram V2 model.", is_api_node=True,
            inputs=head + [resolution] + tail + [style] + _count_inputs(), outputs=[io.Image.Output()],
            hidden=HIDDEN, price_badge=_price(0.08, 0.05))

    @classmethod
    async def execute(cls, prompt, turbo=False, aspect_ratio="1:1", resolution="Auto", magic_prompt_option="AUTO",
                      seed=0, style_type="NONE", negative_prompt="", num_images=1):
        size = RESOLUTIONS.get(resolution)
        ratio = ASPECT_RATIOS.get(aspect_ratio)
        return await generate(cls, m.IdeogramImageRequest(
            prompt=prompt, model="V_2_TURBO" if turbo else "V_2", num_images=num_images, seed=seed,
            resolution=None if size in (None, "AUTO") else size,
            aspect_ratio=None if size not in (None, "AUTO") or ratio == "ASPECT_1_1" else ratio,
            magic_prompt_option=None if magic_prompt_option == "AUTO" else magic_prompt_option,
            style_type=None if style_type == "NONE" else style_type,
            negative_prompt=negative_prompt or None))


V3_ASPECT_RATIOS = {r: r.replace(":", "x") for r in ("1:3", "3:1", "1:2", "2:1", "9:16", "16:9", "10:16", "16:10",
                                                     "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "1:1")}
V3_RESOLUTIONS = ["Auto"] + (
    "512x1536 576x1408 576x1472 576x1536 640x1344 640x1408 640x1472 640x1536 704x1152 704x1216 704x1280 "
    "704x1344 704x1408 704x1472 736x1312 768x1088 768x1216 768x1280 768x1344 800x1280 832x960 832x1024 "
    "832x1088 832x1152 832x1216 832x1248 864x1152 896x960 896x1024 896x1088 896x1120 896x1152 960x832 "
    "960x896 960x1024 960x1088 1024x832 1024x896 1024x960 1024x1024 1088x768 1088x832 1088x896 1088x960 "
    "1120x896 1152x704 1152x832 1152x864 1152x896 1216x704 1216x768 1216x832 1248x832 1280x704 1280x768 "
    "1280x800 1312x736 1344x640 1344x704 1344x768 1408x576 1408x640 1408x704 1472x576 1472x640 1472x704 "
    "1536x512 1536x576 1536x640").split()


def _mask_png(mask, image) -> bytes:
    """Ideogram edits the black areas: the MASK (white = replace) resized to the image, inverted."""
    import torch

    mask = mask.reshape(-1, *mask.shape[-2:])[:1].float()
    if mask.shape[-2:] != image.shape[1:3]:
        mask = torch.nn.functional.interpolate(mask.unsqueeze(1), size=image.shape[1:3], mode="nearest").squeeze(1)
    return png_bytes((1.0 - mask).round().unsqueeze(-1).expand(-1, -1, -1, 3))


class IdeogramV3(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IdeogramV3", display_name="Ideogram V3", category=CATEGORY,
            description="Generates images using the Ideogram V3 model. Supports both regular image generation from "
                        "text prompts and image editing with mask.", is_api_node=True,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation or editing"),
                io.Image.Input("image", optional=True, tooltip="Optional reference image for image editing."),
                io.Mask.Input("mask", optional=True, tooltip="Optional mask for inpainting (white areas will be replaced)"),
                io.Combo.Input("aspect_ratio", options=list(V3_ASPECT_RATIOS), default="1:1", optional=True,
                               tooltip="The aspect ratio for image generation. Ignored if resolution is not set to Auto."),
                io.Combo.Input("resolution", options=V3_RESOLUTIONS, default="Auto", optional=True,
                               tooltip="The resolution for image generation. If not set to Auto, this overrides the "
                                       "aspect_ratio setting."),
                io.Combo.Input("magic_prompt_option", options=["AUTO", "ON", "OFF"], default="AUTO", optional=True,
                               tooltip="Determine if MagicPrompt should be used in generation"),
                io.Int.Input("seed", default=0, min=0, max=2147483647, step=1, control_after_generate=True,
                             display_mode=io.NumberDisplay.number, optional=True),
                io.Int.Input("num_images", default=1, min=1, max=8, step=1, display_mode=io.NumberDisplay.number,
                             optional=True),
                io.Combo.Input("rendering_speed", options=["DEFAULT", "TURBO", "QUALITY"], default="DEFAULT",
                               optional=True, tooltip="Controls the trade-off between generation speed and quality"),
                io.Image.Input("character_image", optional=True, tooltip="Image to use as character reference."),
                io.Mask.Input("character_mask", optional=True, tooltip="Optional mask for character reference image."),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN,
            price_badge=io.PriceBadge(
                depends_on=io.PriceBadgeDepends(widgets=["rendering_speed", "num_images"]),
                expr='($s := widgets.rendering_speed; {"type":"usd","usd": ($s = "TURBO" ? 0.03 : $s = "QUALITY" ? 0.09'
                     ' : 0.06) * widgets.num_images})'))

    @classmethod
    async def execute(cls, prompt, image=None, mask=None, resolution="Auto", aspect_ratio="1:1",
                      magic_prompt_option="AUTO", seed=0, num_images=1, rendering_speed="DEFAULT", character_image=None,
                      character_mask=None):
        if rendering_speed == "BALANCED":  # the option's old name
            rendering_speed = "DEFAULT"
        if character_mask is not None and character_image is None:
            raise ApiNodeError("Character mask requires character image to be present")
        if (image is None) != (mask is None):
            raise ApiNodeError("Ideogram V3 image editing requires both an image AND a mask")
        files = []
        if character_image is not None:
            files.append(("character_reference_images", "image.png", png_bytes(character_image[..., :3]), "image/png"))
            if character_mask is not None:
                files.append(("character_mask_binary", "mask.png", _mask_png(character_mask, character_image), "image/png"))
        options = {"magic_prompt": None if magic_prompt_option == "AUTO" else magic_prompt_option,
                   "seed": seed or None, "num_images": num_images if num_images > 1 else None}
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        if image is not None:
            files = [("image", "image.png", png_bytes(image[..., :3]), "image/png"),
                     ("mask", "mask.png", _mask_png(mask, image), "image/png")] + files
            body = m.IdeogramV3EditRequest(prompt=prompt, rendering_speed=rendering_speed, **options)
            path = "/proxy/ideogram/ideogram-v3/edit"
        else:
            ratio = V3_ASPECT_RATIOS.get(aspect_ratio) if resolution == "Auto" and aspect_ratio != "1:1" else None
            body = m.IdeogramV3Request(prompt=prompt, rendering_speed=rendering_speed, aspect_ratio=ratio,
                                       resolution=None if resolution == "Auto" else resolution,
                                       style_type="AUTO" if files else None, **options)
            path = "/proxy/ideogram/ideogram-v3/generate"
        response = await client.call(path, m.IdeogramGenerateResponse, body=body, files=files)
        return await images_of(client, response)


NODES = [IdeogramV1, IdeogramV2, IdeogramV3]
