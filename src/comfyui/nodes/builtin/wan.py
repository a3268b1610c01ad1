"""Wan nodes (ComfyUI's comfy_extras/nodes_wan.py, nodes_cfg.py, nodes_slg.py,
nodes_attention_multiply.py): the image-to-video conditionings that put an encoded start (and
end) image and a mask beside the noise latent, Fun-Control's control video (Wan 2.2 Fun Control
with its reference image), Fun Camera's camera embedding, ATI's point tracks, CFG-Zero*, the
generic DiT skip-layer guidance and UNetTemporalAttentionMultiply.

The conditionings set ``concat_latent_image`` (raw VAE latents [B, 16*k, T, h, w]),
``concat_mask`` (1 = to generate; per picture, folded into 4 channels per latent frame, or one
channel per latent frame) and ``clip_vision_output`` (the CLIP-vision penultimate features the
i2v models attend to); the Wan model turns them into its extra input channels and image tokens.
"""
from __future__ import annotations

import re

from comfyui.nodes.io import io

from ._image_utils import MAX_RESOLUTION, common_upscale
from ._lazy import lazy
from ._wan_tracks import parse_tracks, patch_motion, track_tensor
from .conditioning import conditioning_set_values

torch = lazy("torch")
memory = lazy("comfyui.models.memory")
latent_formats = lazy("comfyui.models.latent_formats")
clip_vision = lazy("comfyui.models.clip_vision")
_conditioning = lazy("comfyui.sampling.conditioning")


def _video_inputs():
    return [
        io.Conditioning.Input("positive"),
        io.Conditioning.Input("negative"),
        io.Vae.Input("vae"),
        io.Int.Input("width", default=832, min=16, max=MAX_RESOLUTION, step=16),
        io.Int.Input("height", default=480, min=16, max=MAX_RESOLUTION, step=16),
        io.Int.Input("length", default=81, min=1, max=MAX_RESOLUTION, step=4),
        io.Int.Input("batch_size", default=1, min=1, max=4096),
    ]


def _video_outputs():
    return [io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
            io.Latent.Output(display_name="latent")]


def _fit(images, width: int, height: int):
    """IMAGE [N, H, W, C] -> [N, height, width, C]: centre crop to the aspect, bilinear."""
    return common_upscale(images.movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)


def _empty_latent(vae, width: int, height: int, length: int, batch_size: int, channels: int | None = None):
    s = vae.spacial_compression_encode()
    return torch.zeros([batch_size, channels or vae.latent_channels, ((length - 1) // 4) + 1, height // s, width // s],
                       device=memory.intermediate_device())


def _set_both(positive, negative, values: dict):
    return conditioning_set_values(positive, values), conditioning_set_values(negative, values)


class WanImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanImageToVideo", category="conditioning/video_models",
            inputs=_video_inputs() + [io.ClipVisionOutput.Input("clip_vision_output", optional=True),
                                      io.Image.Input("start_image", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None,
                clip_vision_output=None) -> io.NodeOutput:
        """The start pictures, then mid-grey up to ``length``, VAE-encoded beside the noise; the
        mask keeps the latent frames the start pictures cover."""
        latent = _empty_latent(vae, width, height, length, batch_size, 16)
        if start_image is not None:
            start_image = _fit(start_image[:length], width, height)
            image = torch.ones((length, height, width, start_image.shape[-1]), dtype=start_image.dtype) * 0.5
            image[:start_image.shape[0]] = start_image
            concat = vae.encode(image[:, :, :, :3])
            mask = torch.ones((1, 1, latent.shape[2], concat.shape[-2], concat.shape[-1]), dtype=start_image.dtype)
            mask[:, :, :((start_image.shape[0] - 1) // 4) + 1] = 0.0
            positive, negative = _set_both(positive, negative, {"concat_latent_image": concat, "concat_mask": mask})
        if clip_vision_output is not None:
            positive, negative = _set_both(positive, negative, {"clip_vision_output": clip_vision_output})
        return io.NodeOutput(positive, negative, {"samples": latent})


class WanFirstLastFrameToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanFirstLastFrameToVideo", category="conditioning/video_models",
            inputs=_video_inputs() + [io.ClipVisionOutput.Input("clip_vision_start_image", optional=True),
                                      io.ClipVisionOutput.Input("clip_vision_end_image", optional=True),
                                      io.Image.Input("start_image", optional=True),
                                      io.Image.Input("end_image", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None, end_image=None,
                clip_vision_start_image=None, clip_vision_end_image=None) -> io.NodeOutput:
        """Start pictures first, end pictures last, mid-grey between; the mask is per picture
        (4 per latent frame, the first frame's 4 covering the first picture) and the two images'
        CLIP-vision features are joined (514 tokens for the first-last-frame model)."""
        latent = _empty_latent(vae, width, height, length, batch_size)
        if start_image is not None:
            start_image = _fit(start_image[:length], width, height)
        if end_image is not None:
            end_image = _fit(end_image[-length:], width, height)
        image = torch.ones((length, height, width, 3)) * 0.5
        mask = torch.ones((1, 1, latent.shape[2] * 4, latent.shape[-2], latent.shape[-1]))
        if start_image is not None:
            image[:start_image.shape[0]] = start_image[..., :3]
            mask[:, :, :start_image.shape[0] + 3] = 0.0
        if end_image is not None:
            image[-end_image.shape[0]:] = end_image[..., :3]
            mask[:, :, -end_image.shape[0]:] = 0.0
        concat = vae.encode(image)
        mask = mask.view(1, mask.shape[2] // 4, 4, mask.shape[3], mask.shape[4]).transpose(1, 2)
        positive, negative = _set_both(positive, negative, {"concat_latent_image": concat, "concat_mask": mask})
        output = clip_vision_start_image
        if clip_vision_end_image is not None:
            if output is not None:
                states = torch.cat([output.penultimate_hidden_states, clip_vision_end_image.penultimate_hidden_states],
                                   dim=-2)
                output = clip_vision.Output(penultimate_hidden_states=states)
            else:
                output = clip_vision_end_image
        if output is not None:
            positive, negative = _set_both(positive, negative, {"clip_vision_output": output})
        return io.NodeOutput(positive, negative, {"samples": latent})


class WanFunInpaintToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanFunInpaintToVideo", category="conditioning/video_models",
            inputs=_video_inputs() + [io.ClipVisionOutput.Input("clip_vision_output", optional=True),
                                      io.Image.Input("start_image", optional=True),
                                      io.Image.Input("end_image", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None, end_image=None,
                clip_vision_output=None) -> io.NodeOutput:
        return WanFirstLastFrameToVideo.execute(positive, negative, vae, width, height, length, batch_size,
                                                start_image=start_image, end_image=end_image,
                                                clip_vision_start_image=clip_vision_output)


class WanFunControlToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanFunControlToVideo", category="conditioning/video_models",
            inputs=_video_inputs() + [io.ClipVisionOutput.Input("clip_vision_output", optional=True),
                                      io.Image.Input("start_image", optional=True),
                                      io.Image.Input("control_video", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None,
                clip_vision_output=None, control_video=None) -> io.NodeOutput:
        """32 channels beside the noise: the control video's latents, then the start image's;
        absent parts are latents that normalise to zero (the Wan21 mean)."""
        latent = _empty_latent(vae, width, height, length, batch_size, 16)
        concat = latent_formats.Wan21().process_out(torch.zeros_like(latent)).repeat(1, 2, 1, 1, 1)
        if start_image is not None:
            encoded = vae.encode(_fit(start_image[:length], width, height)[:, :, :, :3])
            concat[:, 16:, :encoded.shape[2]] = encoded[:, :, :concat.shape[2]]
        if control_video is not None:
            encoded = vae.encode(_fit(control_video[:length], width, height)[:, :, :, :3])
            concat[:, :16, :encoded.shape[2]] = encoded[:, :, :concat.shape[2]]
        positive, negative = _set_both(positive, negative, {"concat_latent_image": concat})
        if clip_vision_output is not None:
            positive, negative = _set_both(positive, negative, {"clip_vision_output": clip_vision_output})
        return io.NodeOutput(positive, negative, {"samples": latent})


class WanCameraImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanCameraImageToVideo", category="conditioning/video_models",
            inputs=_video_inputs() + [io.ClipVisionOutput.Input("clip_vision_output", optional=True),
                                      io.Image.Input("start_image", optional=True),
                                      io.WanCameraEmbedding.Input("camera_conditions", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, start_image=None,
                clip_vision_output=None, camera_conditions=None) -> io.NodeOutput:
        """Wan Fun Camera: the start image's latents beside the noise (the rest latents that
        normalise to zero) with a mask keeping its pictures, and the camera's Plücker embedding
        (WanCameraEmbedding) as ``camera_conditions`` for the model's control adapter."""
        latent = _empty_latent(vae, width, height, length, batch_size, 16)
        if start_image is not None:
            concat = latent_formats.Wan21().process_out(torch.zeros_like(latent))
            pictures = _fit(start_image[:length], width, height)
            encoded = vae.encode(pictures[:, :, :, :3])
            concat[:, :, :encoded.shape[2]] = encoded[:, :, :concat.shape[2]]
            mask = torch.ones((1, 1, latent.shape[2] * 4, latent.shape[-2], latent.shape[-1]))
            mask[:, :, :pictures.shape[0] + 3] = 0.0   # the first latent frame holds 1 picture, as 4
            mask = mask.view(1, latent.shape[2], 4, latent.shape[-2], latent.shape[-1]).transpose(1, 2)
            positive, negative = _set_both(positive, negative, {"concat_latent_image": concat, "concat_mask": mask})
        if camera_conditions is not None:
            positive, negative = _set_both(positive, negative, {"camera_conditions": camera_conditions})
        if clip_vision_output is not None:
            positive, negative = _set_both(positive, negative, {"clip_vision_output": clip_vision_output})
        return io.NodeOutput(positive, negative, {"samples": latent})


class WanTrackToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanTrackToVideo", category="conditioning/video_models",
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"), io.Vae.Input("vae"),
                    io.String.Input("tracks", multiline=True, default="[]"),
                    io.Int.Input("width", default=832, min=16, max=MAX_RESOLUTION, step=16),
                    io.Int.Input("height", default=480, min=16, max=MAX_RESOLUTION, step=16),
                    io.Int.Input("length", default=81, min=1, max=MAX_RESOLUTION, step=4),
                    io.Int.Input("batch_size", default=1, min=1, max=4096),
                    io.Float.Input("temperature", default=220.0, min=1.0, max=1000.0, step=0.1),
                    io.Int.Input("topk", default=2, min=1, max=10),
                    io.Image.Input("start_image"),
                    io.ClipVisionOutput.Input("clip_vision_output", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, tracks, width, height, length, batch_size, temperature, topk,
                start_image=None, clip_vision_output=None) -> io.NodeOutput:
        """Wan ATI: WanImageToVideo's start picture (then mid-grey), with the start frame's
        latent features painted along the point tracks into the later frames and the mask
        set to how strongly each position was painted (see _wan_tracks). No tracks: plain
        WanImageToVideo."""
        batches = parse_tracks(tracks)
        if not batches or start_image is None:
            return WanImageToVideo.execute(positive, negative, vae, width, height, length, batch_size,
                                           start_image=start_image, clip_vision_output=clip_vision_output)
        if (length - 1) % 4:
            raise ValueError(f"WanTrackToVideo: length must be 4n + 1 (1, 5, 9, ...), got {length}")
        latent = _empty_latent(vae, width, height, length, batch_size, 16)
        pictures = _fit(start_image[:batch_size], width, height)[..., :3]
        videos = torch.ones((pictures.shape[0], length, height, width, 3), dtype=pictures.dtype) * 0.5
        videos[:, 0] = pictures
        videos = videos[torch.arange(batch_size) % videos.shape[0]]   # pictures and track sets repeat
        encoded = latent_formats.Wan21().process_in(torch.cat([vae.encode(v) for v in videos], dim=0))
        masks, features = [], []
        for i in range(batch_size):
            mask, feature = patch_motion(track_tensor(batches[i % len(batches)], width, height, length - 1),
                                         encoded[i], temperature, topk)
            masks.append(mask)
            features.append(feature)
        values = {"concat_mask": 1.0 - torch.stack(masks),
                  "concat_latent_image": latent_formats.Wan21().process_out(torch.stack(features))}
        positive, negative = _set_both(positive, negative, values)
        if clip_vision_output is not None:
            positive, negative = _set_both(positive, negative, {"clip_vision_output": clip_vision_output})
        return io.NodeOutput(positive, negative, {"samples": latent})


class Wan22FunControlToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Wan22FunControlToVideo", category="conditioning/video_models",
            inputs=_video_inputs() + [io.Image.Input("ref_image", optional=True),
                                      io.Image.Input("control_video", optional=True)],
            outputs=_video_outputs())

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, ref_image=None,
                control_video=None) -> io.NodeOutput:
        """Wan 2.2 Fun Control: beside the noise, the control video's latents, a 4-channel mask
        (at ``concat_mask_index``: every frame to generate) and an empty start-image part
        (latents that normalise to zero); the reference image's latent goes in as
        ``reference_latents`` (the model's ``ref_conv`` tokens). Works with the Wan 2.1 VAE
        (14B) and the Wan 2.2 one (5B, 48 channels)."""
        latent = _empty_latent(vae, width, height, length, batch_size)
        channels = latent.shape[1]
        latent_format = latent_formats.Wan22() if channels == 48 else latent_formats.Wan21()
        concat = latent_format.process_out(torch.zeros_like(latent)).repeat(1, 2, 1, 1, 1)
        if control_video is not None:
            encoded = vae.encode(_fit(control_video[:length], width, height)[:, :, :, :3])
            concat[:, :channels, :encoded.shape[2]] = encoded[:, :, :concat.shape[2]]
        mask = torch.ones((1, 4, latent.shape[2], latent.shape[-2], latent.shape[-1]))
        values = {"concat_latent_image": concat, "concat_mask": mask, "concat_mask_index": channels}
        positive, negative = _set_both(positive, negative, values)
        if ref_image is not None:
            reference = {"reference_latents": [vae.encode(_fit(ref_image[:1], width, height)[:, :, :, :3])]}
            positive = conditioning_set_values(positive, reference, append=True)
            negative = conditioning_set_values(negative, reference, append=True)
        return io.NodeOutput(positive, negative, {"samples": latent})


class WanVaceToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanVaceToVideo", category="conditioning/video_models", is_experimental=True,
            inputs=_video_inputs() + [io.Float.Input("strength", default=1.0, min=0.0, max=1000.0, step=0.01),
                                      io.Image.Input("control_video", optional=True),
                                      io.Mask.Input("control_masks", optional=True),
                                      io.Image.Input("reference_image", optional=True)],
            outputs=_video_outputs() + [io.Int.Output(display_name="trim_latent")])

    @classmethod
    def execute(cls, positive, negative, vae, width, height, length, batch_size, strength, control_video=None,
                control_masks=None, reference_image=None) -> io.NodeOutput:
        """VACE's control input: the control video (grey when absent) split by the mask into
        the kept ("inactive") and the to-generate ("reactive") parts, both VAE-encoded, and the
        mask folded from 8x8 pixel cells into 64 channels per latent frame. A reference image
        becomes an extra first latent frame (``trim_latent`` = 1 tells TrimVideoLatent to drop it
        after sampling). Appended to the conditioning, so several VACE inputs combine."""
        latent_length = ((length - 1) // 4) + 1
        if control_video is not None:
            control_video = _fit(control_video[:length], width, height)
            if control_video.shape[0] < length:
                control_video = torch.nn.functional.pad(control_video, (0, 0, 0, 0, 0, 0, 0, length - control_video.shape[0]),
                                                        value=0.5)
        else:
            control_video = torch.ones((length, height, width, 3)) * 0.5
        if reference_image is not None:
            reference = vae.encode(_fit(reference_image[:1], width, height)[:, :, :, :3])
            reference = torch.cat([reference, latent_formats.Wan21().process_out(torch.zeros_like(reference))], dim=1)
        if control_masks is None:
            mask = torch.ones((length, height, width, 1))
        else:
            mask = control_masks.unsqueeze(1) if control_masks.ndim == 3 else control_masks
            mask = common_upscale(mask[:length], width, height, "bilinear", "center").movedim(1, -1)
            if mask.shape[0] < length:
                mask = torch.nn.functional.pad(mask, (0, 0, 0, 0, 0, 0, 0, length - mask.shape[0]), value=1.0)
        control_video = control_video[..., :3] - 0.5
        inactive = vae.encode((control_video * (1 - mask)) + 0.5)
        reactive = vae.encode((control_video * mask) + 0.5)
        control_latent = torch.cat((inactive, reactive), dim=1)
        if reference_image is not None:
            control_latent = torch.cat((reference, control_latent), dim=2)
        stride = 8
        hm, wm = height // stride, width // stride
        mask = mask.reshape(length, hm, stride, wm, stride).permute(2, 4, 0, 1, 3).reshape(stride * stride, length, hm, wm)
        mask = torch.nn.functional.interpolate(mask.unsqueeze(0), size=(latent_length, hm, wm),
                                               mode="nearest-exact").squeeze(0)
        trim = 0
        if reference_image is not None:
            mask = torch.cat((torch.zeros_like(mask[:, :reference.shape[2]]), mask), dim=1)
            latent_length += reference.shape[2]
            trim = reference.shape[2]
        values = {"vace_frames": [control_latent], "vace_mask": [mask.unsqueeze(0)], "vace_strength": [strength]}
        positive = conditioning_set_values(positive, values, append=True)
        negative = conditioning_set_values(negative, values, append=True)
        latent = torch.zeros([batch_size, 16, latent_length, height // 8, width // 8], device=memory.intermediate_device())
        return io.NodeOutput(positive, negative, {"samples": latent}, trim)


class Wan22ImageToVideoLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Wan22ImageToVideoLatent", category="conditioning/inpaint",
            inputs=[io.Vae.Input("vae"),
                    io.Int.Input("width", default=1280, min=32, max=MAX_RESOLUTION, step=32),
                    io.Int.Input("height", default=704, min=32, max=MAX_RESOLUTION, step=32),
                    io.Int.Input("length", default=49, min=1, max=MAX_RESOLUTION, step=4),
                    io.Int.Input("batch_size", default=1, min=1, max=4096),
                    io.Image.Input("start_image", optional=True)],
            outputs=[io.Latent.Output()])

    @classmethod
    def execute(cls, vae, width, height, length, batch_size, start_image=None) -> io.NodeOutput:
        """Wan 2.2 5B: the start pictures' latents in the first latent frames, kept by a noise
        mask (0 there); the other frames hold the latents that normalise to zero. (Upstream
        ignores ``batch_size`` without a start image; here it always applies.)"""
        latent = torch.zeros([1, 48, ((length - 1) // 4) + 1, height // 16, width // 16],
                             device=memory.intermediate_device())
        if start_image is None:
            return io.NodeOutput({"samples": latent.repeat(batch_size, 1, 1, 1, 1)})
        mask = torch.ones([1, 1, latent.shape[2], latent.shape[-2], latent.shape[-1]], device=latent.device)
        encoded = vae.encode(_fit(start_image[:length], width, height)[..., :3]).to(latent)
        latent[:, :, :encoded.shape[2]] = encoded[:, :, :latent.shape[2]]
        mask[:, :, :encoded.shape[2]] = 0.0
        latent = latent_formats.Wan22().process_out(latent) * mask + latent * (1.0 - mask)
        return io.NodeOutput({"samples": latent.repeat(batch_size, 1, 1, 1, 1),
                              "noise_mask": mask.repeat(batch_size, 1, 1, 1, 1)})


# ------------------------------------------------------------------------------ guidance
def _optimized_scale(positive, negative):
    """Per sample, the projection coefficient of ``positive`` on ``negative``."""
    p, n = positive.reshape(positive.shape[0], -1), negative.reshape(negative.shape[0], -1)
    scale = (p * n).sum(dim=1, keepdim=True) / ((n ** 2).sum(dim=1, keepdim=True) + 1e-8)
    return scale.reshape([positive.shape[0]] + [1] * (positive.ndim - 1))


class CFGZeroStar(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="CFGZeroStar", category="advanced/guidance", inputs=[io.Model.Input("model")],
                         outputs=[io.Model.Output(display_name="patched_model")])

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        """CFG-Zero*: the unconditional prediction is scaled by the optimal projection alpha of
        the conditional noise estimate onto the unconditional one before guidance."""
        def cfg_zero_star(args):
            scale, x = args["cond_scale"], args["input"]
            cond, uncond = args["cond_denoised"], args["uncond_denoised"]
            alpha = _optimized_scale(x - cond, x - uncond)
            return args["denoised"] + uncond * (alpha - 1.0) + scale * uncond * (1.0 - alpha)

        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(cfg_zero_star)
        return io.NodeOutput(patched)


def _with_skipped(model_options: dict, kind: str, layers: list[int]) -> dict:
    transformer_options = dict(model_options.get("transformer_options", {}))
    patches = dict(transformer_options.get("patches_replace", {}))
    dit = dict(patches.get("dit", {}))
    for layer in layers:
        dit[(kind, layer)] = lambda args, extra: args
    patches["dit"] = dit
    transformer_options["patches_replace"] = patches
    return {**model_options, "transformer_options": transformer_options}


class SkipLayerGuidanceDiT(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SkipLayerGuidanceDiT", category="advanced/guidance", is_experimental=True,
            description="Generic version of SkipLayerGuidance node that can be used on every DiT model.",
            inputs=[io.Model.Input("model"),
                    io.String.Input("double_layers", default="7, 8, 9"),
                    io.String.Input("single_layers", default="7, 8, 9"),
                    io.Float.Input("scale", default=3.0, min=0.0, max=10.0, step=0.1),
                    io.Float.Input("start_percent", default=0.01, min=0.0, max=1.0, step=0.001),
                    io.Float.Input("end_percent", default=0.15, min=0.0, max=1.0, step=0.001),
                    io.Float.Input("rescaling_scale", default=0.0, min=0.0, max=10.0, step=0.01)],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, scale, start_percent, end_percent, double_layers="", single_layers="",
                rescaling_scale=0.0) -> io.NodeOutput:
        """Between ``start_percent`` and ``end_percent``, the positive prediction is run again with
        the listed blocks skipped and the result pushed away from it by ``scale``."""
        double = [int(n) for n in re.findall(r"\d+", double_layers)]
        single = [int(n) for n in re.findall(r"\d+", single_layers)]
        if not double and not single:
            return io.NodeOutput(model)
        ms = model.get_model_object("model_sampling")
        sigma_start, sigma_end = ms.percent_to_sigma(start_percent), ms.percent_to_sigma(end_percent)

        def post_cfg(args):
            result, sigma = args["denoised"], args["sigma"]
            if scale > 0 and sigma_end <= sigma[0].item() <= sigma_start:
                options = _with_skipped(_with_skipped(args["model_options"], "double_block", double),
                                        "single_block", single)
                (without,) = _conditioning.calc_cond_batch(args["model"], [args["cond"]], args["input"], sigma, options)
                result = result + (args["cond_denoised"] - without) * scale
                if rescaling_scale != 0:
                    factor = args["cond_denoised"].std() / result.std()
                    result = result * (rescaling_scale * factor + (1 - rescaling_scale))
            return result

        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(post_cfg)
        return io.NodeOutput(patched)


class UNetTemporalAttentionMultiply(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="UNetTemporalAttentionMultiply", category="_for_testing/attention_experiments",
            is_experimental=True,
            inputs=[io.Model.Input("model"),
                    io.Float.Input("self_structural", default=1.0, min=0.0, max=10.0, step=0.01),
                    io.Float.Input("self_temporal", default=1.0, min=0.0, max=10.0, step=0.01),
                    io.Float.Input("cross_structural", default=1.0, min=0.0, max=10.0, step=0.01),
                    io.Float.Input("cross_temporal", default=1.0, min=0.0, max=10.0, step=0.01)],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, self_structural, self_temporal, cross_structural, cross_temporal) -> io.NodeOutput:
        """Scales the output projections of the UNet attentions (``attn1`` self, ``attn2``
        cross; ``.time_stack.`` ones are the temporal layers of video UNets). Models without
        such keys (Wan and the other DiTs) come back as an unchanged clone, as upstream."""
        patched = model.clone()
        keep = ("diff", (torch.zeros(()),))  # weight * factor + 0 * (nothing)
        for key in model.model_state_dict():
            for attn, structural, temporal in (("attn1", self_structural, self_temporal),
                                               ("attn2", cross_structural, cross_temporal)):
                if key.endswith((f"{attn}.to_out.0.bias", f"{attn}.to_out.0.weight")):
                    factor = temporal if ".time_stack." in key else structural
                    patched.add_patches({key: keep}, 0.0, factor)
        return io.NodeOutput(patched)


NODE_CLASS_MAPPINGS = {
    "WanImageToVideo": WanImageToVideo,
    "WanFirstLastFrameToVideo": WanFirstLastFrameToVideo,
    "WanFunInpaintToVideo": WanFunInpaintToVideo,
    "WanFunControlToVideo": WanFunControlToVideo,
    "Wan22FunControlToVideo": Wan22FunControlToVideo,
    "WanCameraImageToVideo": WanCameraImageToVideo,
    "WanTrackToVideo": WanTrackToVideo,
    "Wan22ImageToVideoLatent": Wan22ImageToVideoLatent,
    "WanVaceToVideo": WanVaceToVideo,
    "CFGZeroStar": CFGZeroStar,
    "SkipLayerGuidanceDiT": SkipLayerGuidanceDiT,
    "UNetTemporalAttentionMultiply": UNetTemporalAttentionMultiply,
}
