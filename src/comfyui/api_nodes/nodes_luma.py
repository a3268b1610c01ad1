"""Luma image nodes (upstream comfy_api_nodes/nodes_luma.py): input images are stored through
``/customers/storage`` and passed by URL; ``POST /proxy/luma/generations/image`` starts a
generation, polled at ``/proxy/luma/generations/{id}`` (queued -> dreaming -> completed / failed)."""
from __future__ import annotations

from comfyui.nodes.io import io

from . import models as m
from .client import ApiClient, ApiNodeError
from .images import image_from_bytes, png_bytes

CATEGORY = "api node/image/Luma"
HIDDEN = [io.Hidden.auth_token_comfy_org, io.Hidden.api_key_comfy_org, io.Hidden.unique_id]
LUMA_REF = "LUMA_REF"
MODELS = ["photon-1", "photon-flash-1"]
ASPECT_RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21"]
SEED_MAX = 0xFFFFFFFFFFFFFFFF
SEED_TIP = "Seed to determine if node should re-run; actual results are nondeterministic regardless of seed."
_PRICE = '{"type":"usd","usd": widgets.model = "photon-flash-1" ? 0.0019 : 0.0073}'


class LumaReferenceChain:
    """LUMA_REF: (image, weight) pairs, extended node by node (a chain is never mutated)."""

    def __init__(self, refs: tuple = ()):
        self.refs = tuple(refs)

    def plus(self, image, weight: float) -> "LumaReferenceChain":
        return LumaReferenceChain(self.refs + ((image, weight),))


async def upload_image(client: ApiClient, image, index: int = 0) -> str:
    return await client.upload(png_bytes(image, index), "image.png", "image/png")


async def run_luma(cls, client: ApiClient, request: m.LumaImageGenerationRequest) -> io.NodeOutput:
    started = await client.call("/proxy/luma/generations/image", m.LumaGeneration, body=request)

    async def fetch():
        generation = await client.call(f"/proxy/luma/generations/{started.id}", m.LumaGeneration, method="GET")
        if generation.state == m.LumaState.failed:
            raise ApiNodeError(f"Luma generation failed: {generation.failure_reason or 'no reason given'}")
        return generation

    done = await client.poll(fetch, state=lambda g: "done" if g.state == m.LumaState.completed else "running",
                             progress=lambda g: None)
    if done.assets is None or not done.assets.image:
        raise ApiNodeError("Luma reported the generation completed without an image.")
    return io.NodeOutput(image_from_bytes(await client.download(done.assets.image)))


class LumaReferenceNode(io.ComfyNode):
    """Holds an image and weight for use with Luma Generate Image node."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LumaReferenceNode", display_name="Luma Reference", category=CATEGORY, description=cls.__doc__,
            inputs=[io.Image.Input("image", tooltip="Image to use as reference."),
                    io.Float.Input("weight", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Weight of image reference."),
                    io.Custom(LUMA_REF).Input("luma_ref", optional=True)],
            outputs=[io.Custom(LUMA_REF).Output(display_name="luma_ref")], hidden=HIDDEN)

    @classmethod
    def execute(cls, image, weight, luma_ref=None):
        return io.NodeOutput((luma_ref or LumaReferenceChain()).plus(image, round(weight, 2)))


class LumaImageGenerationNode(io.ComfyNode):
    """Generates images synchronously based on prompt and aspect ratio."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LumaImageNode", display_name="Luma Text to Image", category=CATEGORY, description=cls.__doc__,
            inputs=[
                io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation"),
                io.Combo.Input("model", options=MODELS),
                io.Combo.Input("aspect_ratio", options=ASPECT_RATIOS, default="16:9"),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True, tooltip=SEED_TIP),
                io.Float.Input("style_image_weight", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Weight of style image. Ignored if no style_image provided."),
                io.Custom(LUMA_REF).Input("image_luma_ref", optional=True,
                                          tooltip="Luma Reference node connection to influence generation with input "
                                                  "images; up to 4 images can be considered."),
                io.Image.Input("style_image", optional=True, tooltip="Style reference image; only 1 image will be used."),
                io.Image.Input("character_image", optional=True,
                               tooltip="Character reference images; can be a batch of multiple, up to 4 images can be "
                                       "considered."),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(depends_on=io.PriceBadgeDepends(widgets=["model"]), expr=_PRICE))

    @classmethod
    async def execute(cls, prompt, model, aspect_ratio, seed, style_image_weight, image_luma_ref=None,
                      style_image=None, character_image=None):
        if len(prompt.strip()) < 3:
            raise ApiNodeError("The prompt must be at least 3 characters long.")
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        image_ref = None
        if image_luma_ref is not None and image_luma_ref.refs:
            image_ref = [m.LumaImageRef(url=await upload_image(client, image), weight=weight)
                         for image, weight in image_luma_ref.refs[:4]]
        style_ref = None
        if style_image is not None:
            style_ref = [m.LumaImageRef(url=await upload_image(client, style_image), weight=round(style_image_weight, 2))]
        character_ref = None
        if character_image is not None:
            urls = [await upload_image(client, character_image, i) for i in range(min(character_image.shape[0], 4))]
            character_ref = m.LumaCharacterRef(identity0=m.LumaImageIdentity(images=urls))
        request = m.LumaImageGenerationRequest(prompt=prompt, model=model, aspect_ratio=aspect_ratio, image_ref=image_ref,
                                               style_ref=style_ref, character_ref=character_ref)
        return await run_luma(cls, client, request)


class LumaImageModifyNode(io.ComfyNode):
    """Modifies images synchronously based on prompt and aspect ratio."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LumaImageModifyNode", display_name="Luma Image to Image", category=CATEGORY,
            description=cls.__doc__,
            inputs=[
                io.Image.Input("image"),
                io.String.Input("prompt", multiline=True, default="", tooltip="Prompt for the image generation"),
                io.Float.Input("image_weight", default=0.1, min=0.0, max=0.98, step=0.01,
                               tooltip="Weight of the image; the closer to 1.0, the less the image will be modified."),
                io.Combo.Input("model", options=MODELS),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True, tooltip=SEED_TIP),
            ],
            outputs=[io.Image.Output()], hidden=HIDDEN, is_api_node=True,
            price_badge=io.PriceBadge(depends_on=io.PriceBadgeDepends(widgets=["model"]), expr=_PRICE))

    @classmethod
    async def execute(cls, prompt, model, image, image_weight, seed):
        client = ApiClient(cls.hidden.auth_token_comfy_org, cls.hidden.api_key_comfy_org)
        # the node's image_weight is how much of the image to keep; Luma's weight is the opposite
        ref = m.LumaImageRef(url=await upload_image(client, image), weight=round(max(min(1.0 - image_weight, 0.98), 0.0), 2))
        return await run_luma(cls, client, m.LumaImageGenerationRequest(prompt=prompt, model=model, modify_image_ref=ref))


NODES = [LumaReferenceNode, LumaImageGenerationNode, LumaImageModifyNode]
