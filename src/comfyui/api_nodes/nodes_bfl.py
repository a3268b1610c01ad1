"""Black Forest Labs Flux Pro nodes (upstream comfy_api_nodes/nodes_bfl.py): submit to
``/proxy/bfl/<model>/generate``, poll the answer's ``polling_url`` until Ready, download the sample."""
from __future__ import annotations

from comfyui.nodes.io import io

from . import models as m
from .client import ApiClient, ApiNodeError
from .images import image_from_bytes, png_base64

CATEGORY = "api node/image/BFL"
HIDDEN = [io.Hidden.auth_token_comfy_org, io.Hidden.api_key_comfy_org, io.Hidden.unique_id]
SEED_MAX = 0xFFFFFFFFFFFFFFFF
UPSAMPLING_TIP = ("Whether to perform upsampling on the prompt. If active, automatically modifies the prompt for more "
                  "creative generation, but results are nondeterministic (same seed will not produce exactly the same result).")


def _usd(price: float) -> io.PriceBadge:
    return io.PriceBadge(expr=f'{{"type":"usd","usd":{price}}}')


def checked_aspect_ratio(text: str, lowest: float = 1 / 4, highest: float = 4.0, label: str = "1:4 and 4:1") -> str:
    """``"W:H"`` with both positive and the ratio in [lowest, highest] (BFL's bounds)."""
    try:
        w, h = (float(x) for x in text.strip().split(":"))
        ok = w > 0 and h > 0 and lowest <= w / h <= highest
    except ValueError:
        ok = False
    if not ok:
        raise ApiNodeError(f"Aspect ratio {text!r} must be 'W:H' between {label}.")
    return text.strip()


async def run_bfl(cls, path: str, request) -> io.NodeOutput:
    client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
    task = await client.call(path, m.BFLFluxProGenerateResponse, body=request)
    misses = 0

    async def fetch():
        nonlocal misses
        status = await client.get_url(task.polling_url, m.BFLFluxProStatusResponse)
        if status.status in (m.BFLStatus.request_moderated, m.BFLStatus.content_moderated):
            raise ApiNodeError(f"BFL API did not return an image due to: {status.status.value}.")
        if status.status == m.BFLStatus.error:
            raise ApiNodeError(f"BFL API encountered an error: {status.details or status.result or 'no details'}.")
        if status.status == m.BFLStatus.task_not_found:
            misses += 1
            if misses > 5:
                raise ApiNodeError("BFL API could not find the task.")
        return status

    done = await client.poll(fetch, state=lambda s: "done" if s.status == m.BFLStatus.ready else "running",
                             progress=lambda s: s.progress)
    sample = (done.result or {}).get("sample")
    if not sample:
        raise ApiNodeError("BFL API reported the task Ready without an image.")
    return io.NodeOutput(image_from_bytes(await client.download(sample)))


class FluxProUltraImageNode(io.ComfyNode):
    """Generates images using Flux Pro 1.1 Ultra via api based on prompt and resolution."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxProUltraImageNode", display_name="Flux 1.1 [pro] Ultra Image", category=CATEGORY,
            description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation"),
                io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                io.String.Input("aspect_ratio", default="16:9", tooltip="Aspect ratio of image; must be between 1:4 and 4:1."),
                io.Boolean.Input("raw", default=False, tooltip="When True, generate less processed, more natural-looking images."),
                io.Image.Input("image_prompt", optional=True),
                io.Float.Input("image_prompt_strength", default=0.1, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Blend between the prompt and the image prompt."),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(0.06))

    @classmethod
    def validate_inputs(cls, aspect_ratio):
        """A bad aspect ratio is refused when the prompt is queued (a link's value is checked at run time)."""
        try:
            checked_aspect_ratio(aspect_ratio) if isinstance(aspect_ratio, str) else None
        except ApiNodeError as e:
            return str(e)
        return True

    @classmethod
    async def execute(cls, prompt, aspect_ratio, prompt_upsampling=False, raw=False, seed=0, image_prompt=None,
                      image_prompt_strength=0.1):
        if image_prompt is None and not prompt:
            raise ApiNodeError("The prompt is empty.")
        request = m.BFLFluxProUltraGenerateRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, seed=seed, aspect_ratio=checked_aspect_ratio(aspect_ratio),
            raw=raw, image_prompt=None if image_prompt is None else png_base64(image_prompt),
            image_prompt_strength=None if image_prompt is None else round(image_prompt_strength, 2))
        return await run_bfl(cls, "/proxy/bfl/flux-pro-1.1-ultra/generate", request)


class FluxKontextProImageNode(io.ComfyNode):
    """Edits images using Flux.1 Kontext [pro] via api based on prompt and aspect ratio."""

    NODE_ID = "FluxKontextProImageNode"
    DISPLAY_NAME = "Flux.1 Kontext [pro] Image"
    BFL_PATH = "/proxy/bfl/flux-kontext-pro/generate"
    PRICE = 0.04

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="Prompt for the image generation - specify what and how to edit."),
                io.String.Input("aspect_ratio", default="16:9", tooltip="Aspect ratio of image; must be between 1:4 and 4:1."),
                io.Float.Input("guidance", default=3.0, min=0.1, max=99.0, step=0.1,
                               tooltip="Guidance strength for the image generation process"),
                io.Int.Input("steps", default=50, min=1, max=150, tooltip="Number of steps for the image generation process"),
                io.Int.Input("seed", default=1234, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                io.Image.Input("input_image", optional=True),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(cls.PRICE))

    @classmethod
    def validate_inputs(cls, aspect_ratio):
        """A bad aspect ratio is refused when the prompt is queued (a link's value is checked at run time)."""
        try:
            checked_aspect_ratio(aspect_ratio) if isinstance(aspect_ratio, str) else None
        except ApiNodeError as e:
            return str(e)
        return True

    @classmethod
    async def execute(cls, prompt, aspect_ratio, guidance, steps, input_image=None, seed=0, prompt_upsampling=False):
        if input_image is None and not prompt:
            raise ApiNodeError("The prompt is empty.")
        request = m.BFLFluxKontextProGenerateRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, guidance=round(guidance, 1), steps=steps, seed=seed,
            aspect_ratio=checked_aspect_ratio(aspect_ratio),
            input_image=None if input_image is None else png_base64(input_image))
        return await run_bfl(cls, cls.BFL_PATH, request)


class FluxKontextMaxImageNode(FluxKontextProImageNode):
    """Edits images using Flux.1 Kontext [max] via api based on prompt and aspect ratio."""

    NODE_ID = "FluxKontextMaxImageNode"
    DISPLAY_NAME = "Flux.1 Kontext [max] Image"
    BFL_PATH = "/proxy/bfl/flux-kontext-max/generate"
    PRICE = 0.08


class FluxProImageNode(io.ComfyNode):
    """Generates images synchronously based on prompt and resolution."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxProImageNode", display_name="Flux 1.1 [pro] Image", category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation"),
                io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                io.Int.Input("width", default=1024, min=256, max=1440, step=32),
                io.Int.Input("height", default=768, min=256, max=1440, step=32),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                io.Image.Input("image_prompt", optional=True),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(0.04))

    @classmethod
    async def execute(cls, prompt, prompt_upsampling, width, height, seed=0, image_prompt=None):
        request = m.BFLFluxProGenerateRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, width=width, height=height, seed=seed,
            image_prompt=None if image_prompt is None else png_base64(image_prompt))
        return await run_bfl(cls, "/proxy/bfl/flux-pro-1.1/generate", request)


def _steps(default=50):
    return io.Int.Input("steps", default=default, min=15, max=50, tooltip="Number of steps for the image generation process")


def _seed():
    return io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                        tooltip="The random seed used for creating the noise.")


def _prompt():
    return io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation")


def _guidance(default, low):
    return io.Float.Input("guidance", default=default, min=low, max=100,
                          tooltip="Guidance strength for the image generation process")


def mask_png_base64(mask, image) -> str:
    """A MASK resized to the image's size, as a greyscale-in-RGB PNG (white = repaint)."""
    import torch

    mask = mask.reshape(-1, *mask.shape[-2:])[:1].float()
    if mask.shape[-2:] != image.shape[1:3]:
        mask = torch.nn.functional.interpolate(mask.unsqueeze(1), size=image.shape[1:3], mode="bilinear").squeeze(1)
    return png_base64(mask.unsqueeze(-1).expand(-1, -1, -1, 3))


class FluxProExpandNode(io.ComfyNode):
    """Outpaints image based on prompt."""

    @classmethod
    def define_schema(cls):
        sides = [io.Int.Input(side, default=0, min=0, max=2048, tooltip=f"Number of pixels to expand at the {side} of the image")
                 for side in ("top", "bottom", "left", "right")]
        return io.Schema(
            node_id="FluxProExpandNode", display_name="Flux.1 Expand Image", category=CATEGORY, description=cls.__doc__,
            inputs=[io.Image.Input("image"), _prompt(),
                    io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                    *sides, _guidance(60, 1.5), _steps(), _seed()],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(0.05))

    @classmethod
    async def execute(cls, image, prompt, prompt_upsampling, top, bottom, left, right, steps, guidance, seed=0):
        request = m.BFLFluxExpandImageRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, top=top, bottom=bottom, left=left, right=right,
            steps=steps, guidance=guidance, seed=seed, image=png_base64(image[..., :3]))
        return await run_bfl(cls, "/proxy/bfl/flux-pro-1.0-expand/generate", request)


class FluxProFillNode(io.ComfyNode):
    """Inpaints image based on mask and prompt."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxProFillNode", display_name="Flux.1 Fill Image", category=CATEGORY, description=cls.__doc__,
            inputs=[io.Image.Input("image"), io.Mask.Input("mask"), _prompt(),
                    io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                    _guidance(60, 1.5), _steps(), _seed()],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(0.05))

    @classmethod
    async def execute(cls, image, mask, prompt, prompt_upsampling, steps, guidance, seed=0):
        request = m.BFLFluxFillImageRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, steps=steps, guidance=guidance, seed=seed,
            image=png_base64(image[..., :3]), mask=mask_png_base64(mask, image))
        return await run_bfl(cls, "/proxy/bfl/flux-pro-1.0-fill/generate", request)


class FluxProCannyNode(io.ComfyNode):
    """Generate image using a control image (canny)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxProCannyNode", display_name="Flux.1 Canny Control Image", category=CATEGORY,
            description=cls.__doc__,
            inputs=[io.Image.Input("control_image"), _prompt(),
                    io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                    io.Float.Input("canny_low_threshold", default=0.1, min=0.01, max=0.99, step=0.01,
                                   tooltip="Low threshold for Canny edge detection; ignored if skip_processing is True"),
                    io.Float.Input("canny_high_threshold", default=0.4, min=0.01, max=0.99, step=0.01,
                                   tooltip="High threshold for Canny edge detection; ignored if skip_processing is True"),
                    io.Boolean.Input("skip_preprocessing", default=False,
                                     tooltip="Whether to skip preprocessing; set to True if control_image already is "
                                             "canny-fied, False if it is a raw image."),
                    _guidance(30, 1), _steps(), _seed()],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(0.05))

    @classmethod
    async def execute(cls, control_image, prompt, prompt_upsampling, canny_low_threshold, canny_high_threshold,
                      skip_preprocessing, steps, guidance, seed=0):
        encoded = png_base64(control_image[..., :3])
        thresholds = {} if skip_preprocessing else {  # BFL's thresholds run 0..500
            "canny_low_threshold": round(canny_low_threshold * 500), "canny_high_threshold": round(canny_high_threshold * 500)}
        request = m.BFLFluxControlImageRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, steps=steps, guidance=guidance, seed=seed,
            control_image=None if skip_preprocessing else encoded,
            preprocessed_image=encoded if skip_preprocessing else None, **thresholds)
        return await run_bfl(cls, "/proxy/bfl/flux-pro-1.0-canny/generate", request)


class FluxProDepthNode(io.ComfyNode):
    """Generate image using a control image (depth)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxProDepthNode", display_name="Flux.1 Depth Control Image", category=CATEGORY,
            description=cls.__doc__,
            inputs=[io.Image.Input("control_image"), _prompt(),
                    io.Boolean.Input("prompt_upsampling", default=False, tooltip=UPSAMPLING_TIP),
                    io.Boolean.Input("skip_preprocessing", default=False,
                                     tooltip="Whether to skip preprocessing; set to True if control_image already is "
                                             "depth-ified, False if it is a raw image."),
                    _guidance(15, 1), _steps(), _seed()],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True, price_badge=_usd(0.05))

    @classmethod
    async def execute(cls, control_image, prompt, prompt_upsampling, skip_preprocessing, steps, guidance, seed=0):
        encoded = png_base64(control_image[..., :3])
        request = m.BFLFluxControlImageRequest(
            prompt=prompt, prompt_upsampling=prompt_upsampling, steps=steps, guidance=guidance, seed=seed,
            control_image=None if skip_preprocessing else encoded,
            preprocessed_image=encoded if skip_preprocessing else None)
        return await run_bfl(cls, "/proxy/bfl/flux-pro-1.0-depth/generate", request)


NODES = [FluxProUltraImageNode, FluxKontextProImageNode, FluxKontextMaxImageNode, FluxProImageNode, FluxProExpandNode,
         FluxProFillNode, FluxProCannyNode, FluxProDepthNode]
