"""Video latent nodes: EmptyHunyuanLatentVideo (comfy_extras/nodes_hunyuan.py, also Wan 2.1's
text-to-video latent) and TrimVideoLatent (comfy_extras/nodes_wan.py).

Video latents are [B,C,T,H/8,W/8] with T = (length-1)//4 + 1 for a causal VAE that compresses
time by 4 (the first picture alone, then 4 per latent frame).
"""
from __future__ import annotations

from comfyui.nodes.io import io

from ._image_utils import MAX_RESOLUTION
from ._lazy import lazy

torch = lazy("torch")
memory = lazy("comfyui.models.memory")


class EmptyHunyuanLatentVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 848, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "height": ("INT", {"default": 480, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "length": ("INT", {"default": 25, "min": 1, "max": MAX_RESOLUTION, "step": 4}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"
    CATEGORY = "latent/video"

    def generate(self, width, height, length, batch_size=1):
        latent = torch.zeros([batch_size, 16, ((length - 1) // 4) + 1, height // 8, width // 8],
                             device=memory.intermediate_device())
        return ({"samples": latent},)


class TrimVideoLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TrimVideoLatent",
            category="latent/video",
            inputs=[io.Latent.Input("samples"), io.Int.Input("trim_amount", default=0, min=0, max=99999)],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, samples, trim_amount) -> io.NodeOutput:
        """Drop the first ``trim_amount`` latent frames (and the noise mask's, when it has them)."""
        out = dict(samples)
        out["samples"] = samples["samples"][:, :, trim_amount:]
        mask = samples.get("noise_mask")
        if mask is not None and mask.ndim == 5 and mask.shape[2] == samples["samples"].shape[2]:
            out["noise_mask"] = mask[:, :, trim_amount:]
        return io.NodeOutput(out)


NODE_CLASS_MAPPINGS = {
    "EmptyHunyuanLatentVideo": EmptyHunyuanLatentVideo,
    "TrimVideoLatent": TrimVideoLatent,
}
