"""LTX-Video nodes (upstream comfy_extras/nodes_lt.py): EmptyLTXVLatentVideo, LTXVImgToVideo,
LTXVAddGuide, LTXVCropGuides, LTXVConditioning, ModelSamplingLTXV, LTXVScheduler,
LTXVPreprocess.

Latents are [B, 128, (length-1)//8 + 1, H/32, W/32]. Image conditioning works through the
latent's ``noise_mask`` [B, 1, T, 1, 1] (1 - strength on the conditioning frames): the LTX-Video
model turns it into per-token timesteps. Guides (LTXVAddGuide) are appended after the video's
latent frames with their pixel positions in the conditioning (``keyframe_idxs``), and
LTXVCropGuides removes them again after sampling.
"""
from __future__ import annotations

import io as _bytes_io
import math

from comfyui.nodes.io import io

from ._image_utils import MAX_RESOLUTION, common_upscale
from ._lazy import lazy
from .conditioning import conditioning_set_values

torch = lazy("torch")
memory = lazy("comfyui.models.memory")
msmod = lazy("comfyui.sampling.model_sampling")
ltxv_model = lazy("comfyui.models.ltxv.model")

CHANNELS = 128


def _empty_latent(batch_size: int, length: int, height: int, width: int):
    return torch.zeros([batch_size, CHANNELS, ((length - 1) // 8) + 1, height // 32, width // 32],
                       device=memory.intermediate_device())


def token_shift(tokens: int, max_shift: float, base_shift: float) -> float:
    """The shift for ``tokens`` latent cells: linear through (1024, base_shift) and (4096, max_shift)."""
    slope = (max_shift - base_shift) / (4096 - 1024)
    return tokens * slope + base_shift - slope * 1024


def _tokens(latent) -> int:
    return 4096 if latent is None else math.prod(latent["samples"].shape[2:])


class EmptyLTXVLatentVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="EmptyLTXVLatentVideo", category="latent/video/ltxv",
            inputs=[io.Int.Input("width", default=768, min=64, max=MAX_RESOLUTION, step=32),
                    io.Int.Input("height", default=512, min=64, max=MAX_RESOLUTION, step=32),
                    io.Int.Input("length", default=97, min=1, max=MAX_RESOLUTION, step=8),
                    io.Int.Input("batch_size", default=1, min=1, max=4096)],
            outputs=[io.Latent.Output()])

    @classmethod
    def execute(cls, width, height, length, batch_size=1) -> io.NodeOutput:
        return io.NodeOutput({"samples": _empty_latent(batch_size, length, height, width)})


class LTXVImgToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTXVImgToVideo", category="conditioning/video_models",
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"), io.Vae.Input("vae"),
                    io.Image.Input("image"),
                    io.Int.Input("width", default=768, min=64, max=MAX_RESOLUTION, step=32),
                    io.Int.Input("height", default=512, min=64, max=MAX_RESOLUTION, step=32),
                    io.Int.Input("length", default=97, min=9, max=MAX_RESOLUTION, step=8),
                    io.Int.Input("batch_size", default=1, min=1, max=4096),
                    io.Float.Input("strength", default=1.0, min=0.0, max=1.0)],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
                     io.Latent.Output(display_name="latent")])

    @classmethod
    def execute(cls, positive, negative, image, vae, width, height, length, batch_size, strength) -> io.NodeOutput:
        """The image's latent frames at the start of an empty video latent, their noise mask
        1 - strength (strength 1: kept as they are)."""
        pixels = common_upscale(image.movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
        encoded = vae.encode(pixels[..., :3])
        latent = _empty_latent(batch_size, length, height, width)
        n = min(encoded.shape[2], latent.shape[2])
        latent[:, :, :n] = encoded[:, :, :n].to(latent)
        mask = torch.ones((batch_size, 1, latent.shape[2], 1, 1), dtype=torch.float32, device=latent.device)
        mask[:, :, :n] = 1.0 - strength
        return io.NodeOutput(positive, negative, {"samples": latent, "noise_mask": mask})


def _any_value(conditioning, key, default=None):
    for _, options in conditioning:
        if key in options:
            return options[key]
    return default


def _noise_mask(latent):
    mask = latent.get("noise_mask")
    if mask is None:
        samples = latent["samples"]
        return torch.ones((samples.shape[0], 1, samples.shape[2], 1, 1), dtype=torch.float32, device=samples.device)
    return mask.clone()


def _keyframes(conditioning):
    """(keyframe_idxs [B, 3, K] or None, number of guide latent frames)."""
    idxs = _any_value(conditioning, "keyframe_idxs")
    if idxs is None:
        return None, 0
    return idxs, int(torch.unique(idxs[:, 0]).shape[0])


class LTXVAddGuide(io.ComfyNode):
    NUM_PREFIX_FRAMES = 2

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTXVAddGuide", category="conditioning/video_models",
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"), io.Vae.Input("vae"),
                    io.Latent.Input("latent"),
                    io.Image.Input("image", tooltip="Image or video to condition the latent video on. Must be "
                                   "8*n + 1 frames (cropped to the nearest 8*n + 1 frames otherwise)."),
                    io.Int.Input("frame_idx", default=0, min=-9999, max=9999,
                                 tooltip="Frame index to start the conditioning at (videos of 9+ frames: a multiple "
                                         "of 8, rounded down). Negative values count from the end of the video."),
                    io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01)],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
                     io.Latent.Output(display_name="latent")])

    @classmethod
    def _latent_index(cls, cond, latent_length, guide_length, frame_idx, tc):
        _, num_keyframes = _keyframes(cond)
        count = latent_length - num_keyframes
        if frame_idx < 0:
            frame_idx = max((count - 1) * tc + 1 + frame_idx, 0)
        if guide_length > 1 and frame_idx != 0:
            frame_idx = (frame_idx - 1) // tc * tc + 1  # guides of several frames start at 8k + 1
        return frame_idx, (frame_idx + tc - 1) // tc

    @classmethod
    def _add_keyframe_index(cls, cond, frame_idx, guide, scale_factors):
        idxs, _ = _keyframes(cond)
        b, _, t, h, w = guide.shape
        coords = ltxv_model.pixel_coords(ltxv_model.latent_coords(t, h, w, b, guide.device), scale_factors,
                                         causal_fix=frame_idx == 0)
        coords[:, 0] += frame_idx
        idxs = coords if idxs is None else torch.cat([idxs, coords.to(idxs)], dim=2)
        return conditioning_set_values(cond, {"keyframe_idxs": idxs})

    @classmethod
    def execute(cls, positive, negative, vae, latent, image, frame_idx, strength) -> io.NodeOutput:
        scale_factors = tuple(vae.downscale_index_formula)
        tc, ws, hs = scale_factors
        samples = latent["samples"]
        mask = _noise_mask(latent)
        _, _, length, lh, lw = samples.shape
        image = image[:(image.shape[0] - 1) // tc * tc + 1]
        pixels = common_upscale(image.movedim(-1, 1), lw * ws, lh * hs, "bilinear", "disabled").movedim(1, -1)
        encoded = vae.encode(pixels[..., :3]).to(samples)
        frame_idx, latent_idx = cls._latent_index(positive, length, pixels.shape[0], frame_idx, tc)
        if latent_idx + encoded.shape[2] > length:
            raise ValueError("LTXVAddGuide: the conditioning frames exceed the length of the latent sequence")

        # the first (up to 2) latent frames are appended as keyframes with their positions
        prefix = min(cls.NUM_PREFIX_FRAMES, encoded.shape[2])
        guide = encoded[:, :, :prefix]
        mask[:, :, latent_idx:latent_idx + prefix] = 1.0
        positive = cls._add_keyframe_index(positive, frame_idx, guide, scale_factors)
        negative = cls._add_keyframe_index(negative, frame_idx, guide, scale_factors)
        guide_mask = torch.full((mask.shape[0], 1, prefix, mask.shape[3], mask.shape[4]), 1.0 - strength,
                                dtype=mask.dtype, device=mask.device)
        samples = torch.cat([samples, guide], dim=2)
        mask = torch.cat([mask, guide_mask], dim=2)

        # the rest replaces the video's latent frames in place
        rest = encoded[:, :, prefix:]
        if rest.shape[2]:
            start = latent_idx + prefix
            samples = samples.clone()
            samples[:, :, start:start + rest.shape[2]] = rest
            mask[:, :, start:start + rest.shape[2]] = 1.0 - strength
        return io.NodeOutput(positive, negative, {"samples": samples, "noise_mask": mask})


class LTXVCropGuides(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTXVCropGuides", category="conditioning/video_models",
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"), io.Latent.Input("latent")],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
                     io.Latent.Output(display_name="latent")])

    @classmethod
    def execute(cls, positive, negative, latent) -> io.NodeOutput:
        samples = latent["samples"].clone()
        mask = _noise_mask(latent)
        _, num_keyframes = _keyframes(positive)
        if num_keyframes == 0:
            return io.NodeOutput(positive, negative, {"samples": samples, "noise_mask": mask})
        positive = conditioning_set_values(positive, {"keyframe_idxs": None})
        negative = conditioning_set_values(negative, {"keyframe_idxs": None})
        return io.NodeOutput(positive, negative, {"samples": samples[:, :, :-num_keyframes],
                                                  "noise_mask": mask[:, :, :-num_keyframes]})


class LTXVConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTXVConditioning", category="conditioning/video_models",
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"),
                    io.Float.Input("frame_rate", default=25.0, min=0.0, max=1000.0, step=0.01)],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")])

    @classmethod
    def execute(cls, positive, negative, frame_rate) -> io.NodeOutput:
        return io.NodeOutput(conditioning_set_values(positive, {"frame_rate": frame_rate}),
                             conditioning_set_values(negative, {"frame_rate": frame_rate}))


class ModelSamplingLTXV(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ModelSamplingLTXV", category="advanced/model",
            inputs=[io.Model.Input("model"),
                    io.Float.Input("max_shift", default=2.05, min=0.0, max=100.0, step=0.01),
                    io.Float.Input("base_shift", default=0.95, min=0.0, max=100.0, step=0.01),
                    io.Latent.Input("latent", optional=True)],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, max_shift, base_shift, latent=None) -> io.NodeOutput:
        m = model.clone()
        shift = token_shift(_tokens(latent), max_shift, base_shift)
        m.add_object_patch("model_sampling", msmod.flow_model_sampling(msmod.ModelSamplingFlux, {"shift": shift}))
        return io.NodeOutput(m)


class LTXVScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTXVScheduler", category="sampling/custom_sampling/schedulers",
            inputs=[io.Int.Input("steps", default=20, min=1, max=10000),
                    io.Float.Input("max_shift", default=2.05, min=0.0, max=100.0, step=0.01),
                    io.Float.Input("base_shift", default=0.95, min=0.0, max=100.0, step=0.01),
                    io.Boolean.Input("stretch", default=True, tooltip="Stretch the sigmas to be in the range [terminal, 1]."),
                    io.Float.Input("terminal", default=0.1, min=0.0, max=0.99, step=0.01,
                                   tooltip="The terminal value of the sigmas after stretching."),
                    io.Latent.Input("latent", optional=True)],
            outputs=[io.Sigmas.Output()])

    @classmethod
    def execute(cls, steps, max_shift, base_shift, stretch, terminal, latent=None) -> io.NodeOutput:
        """``steps + 1`` sigmas from 1 to 0: linear times through Flux's time shift (mu from
        the token count), optionally stretched so the last non-zero sigma is ``terminal``."""
        mu = token_shift(_tokens(latent), max_shift, base_shift)
        t = torch.linspace(1.0, 0.0, steps + 1)
        sigmas = torch.zeros_like(t)
        nz = t != 0
        sigmas[nz] = math.exp(mu) / (math.exp(mu) + (1 / t[nz] - 1))
        if stretch:
            one_minus = 1.0 - sigmas[nz]
            sigmas[nz] = 1.0 - one_minus / (one_minus[-1] / (1.0 - terminal))
        return io.NodeOutput(sigmas)


def _h264_round_trip(image, crf: int):
    """One frame [H, W, 3] through H.264 (yuv420p) at quality ``crf`` and back (the compression
    artefacts LTX-Video was trained to expect in conditioning images)."""
    import av
    import numpy as np
    arr = (image[:image.shape[0] // 2 * 2, :image.shape[1] // 2 * 2] * 255.0).byte().cpu().numpy()
    buf = _bytes_io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
        stream.height, stream.width = arr.shape[0], arr.shape[1]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24").reformat(format="yuv420p")
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as container:
        stream = next(s for s in container.streams if s.type == "video")
        out = next(container.decode(stream)).to_ndarray(format="rgb24")
    return torch.tensor(out, dtype=image.dtype, device=image.device) / 255.0


class LTXVPreprocess(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTXVPreprocess", category="image",
            inputs=[io.Image.Input("image"),
                    io.Int.Input("img_compression", default=35, min=0, max=100,
                                 tooltip="Amount of compression to apply on image.")],
            outputs=[io.Image.Output(display_name="output_image")])

    @classmethod
    def execute(cls, image, img_compression) -> io.NodeOutput:
        if img_compression == 0:
            return io.NodeOutput(image)
        return io.NodeOutput(torch.stack([_h264_round_trip(image[i], img_compression) for i in range(image.shape[0])]))


NODE_CLASS_MAPPINGS = {
    "EmptyLTXVLatentVideo": EmptyLTXVLatentVideo,
    "LTXVImgToVideo": LTXVImgToVideo,
    "ModelSamplingLTXV": ModelSamplingLTXV,
    "LTXVConditioning": LTXVConditioning,
    "LTXVScheduler": LTXVScheduler,
    "LTXVAddGuide": LTXVAddGuide,
    "LTXVPreprocess": LTXVPreprocess,
    "LTXVCropGuides": LTXVCropGuides,
}
