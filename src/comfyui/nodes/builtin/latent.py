"""LATENT nodes of ComfyUI's nodes.py (+ LatentBatch, LatentCompositeMasked).

LATENT is ``{"samples": [B,C,H/8,W/8], optional "noise_mask": [B,1,H,W], "batch_index": [int]}``.
Video latents are 5-D, ``[B,C,T,H/8,W/8]``: every node here works on the last two (spatial)
dimensions and keeps the time axis (resizes, crops, composites, flips and rotations act on each
frame; a MASK of one frame applies to all of them, a MASK of T frames to its frame).
"""
from __future__ import annotations

import hashlib
import json
import math
import os

from ._image_utils import MAX_RESOLUTION, center_crop_to_aspect
from ._lazy import lazy
from .image import metadata_disabled
from .mask import composite

torch = lazy("torch")
F = lazy("torch.nn.functional")

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP_METHODS = ["disabled", "center"]


def _paths():
    from comfyui import paths

    return paths


def _repeat_batch(t: torch.Tensor, n: int) -> torch.Tensor:
    if t.shape[0] == n:
        return t
    reps = math.ceil(n / t.shape[0])
    return t.repeat((reps,) + (1,) * (t.ndim - 1))[:n]


# ----------------------------------------------------------------------------------------
# resizing
# ----------------------------------------------------------------------------------------
def _slerp(b1: torch.Tensor, b2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows of b1/b2 ([N,C]) with ratios r ([N,1]); the norm is
    interpolated linearly. Near-parallel rows fall back to b1, opposite rows to lerp."""
    n1 = torch.linalg.vector_norm(b1, dim=-1, keepdim=True)
    n2 = torch.linalg.vector_norm(b2, dim=-1, keepdim=True)
    u1 = torch.where(n1 == 0, torch.zeros_like(b1), b1 / n1)
    u2 = torch.where(n2 == 0, torch.zeros_like(b2), b2 / n2)
    dot = (u1 * u2).sum(-1)
    omega = torch.acos(dot.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    rr = r.squeeze(1)
    res = (torch.sin((1.0 - rr) * omega) / so).unsqueeze(1) * u1 + (torch.sin(rr * omega) / so).unsqueeze(1) * u2
    res = res * (n1 * (1.0 - r) + n2 * r)
    same = dot > 1 - 1e-5
    opposite = dot < 1e-5 - 1
    res[same] = b1[same]
    lerp = b1 * (1.0 - r) + b2 * r
    res[opposite] = lerp[opposite]
    return res


def _bilinear_coords(length_old: int, length_new: int, device):
    """Source indices (floor / next) and ratios used by a bilinear resize along one axis."""
    c1 = torch.arange(length_old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1)
    c1 = F.interpolate(c1, size=(1, length_new), mode="bilinear")
    ratios = c1 - c1.floor()
    c1 = c1.to(torch.int64)
    c2 = torch.arange(length_old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1) + 1
    c2[:, :, :, -1] -= 1
    c2 = F.interpolate(c2, size=(1, length_new), mode="bilinear").to(torch.int64)
    return ratios, c1, c2


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resize where each interpolation between two latent vectors is a slerp."""
    orig_dtype = samples.dtype
    samples = samples.float()
    n, c, h, w = samples.shape
    # along width
    ratios, c1, c2 = _bilinear_coords(w, width, samples.device)
    p1 = samples.gather(-1, c1.expand(n, c, h, -1)).movedim(1, -1).reshape(-1, c)
    p2 = samples.gather(-1, c2.expand(n, c, h, -1)).movedim(1, -1).reshape(-1, c)
    r = ratios.expand(n, 1, h, -1).movedim(1, -1).reshape(-1, 1)
    result = _slerp(p1, p2, r).reshape(n, h, width, c).movedim(-1, 1)
    # along height
    ratios, c1, c2 = _bilinear_coords(h, height, samples.device)
    c1 = c1.reshape(1, 1, -1, 1).expand(n, c, -1, width)
    c2 = c2.reshape(1, 1, -1, 1).expand(n, c, -1, width)
    r = ratios.reshape(1, 1, -1, 1).expand(n, 1, -1, width).movedim(1, -1).reshape(-1, 1)
    p1 = result.gather(-2, c1).movedim(1, -1).reshape(-1, c)
    p2 = result.gather(-2, c2).movedim(1, -1).reshape(-1, c)
    result = _slerp(p1, p2, r).reshape(n, height, width, c).movedim(-1, 1)
    return result.to(orig_dtype)


def fold_time(samples: torch.Tensor) -> torch.Tensor:
    """[B,C,T,H,W] -> [B*T,C,H,W] (frame-major per batch item); 4-D latents pass through."""
    if samples.ndim == 4:
        return samples
    b, c = samples.shape[:2]
    return samples.reshape(b, c, -1, samples.shape[-2], samples.shape[-1]).movedim(2, 1).reshape(
        -1, c, samples.shape[-2], samples.shape[-1])


def unfold_time(frames: torch.Tensor, like_shape) -> torch.Tensor:
    """Inverse of :func:`fold_time` for a latent shaped ``like_shape`` (new H, W allowed)."""
    if len(like_shape) == 4:
        return frames
    b, c = like_shape[0], like_shape[1]
    h, w = frames.shape[-2], frames.shape[-1]
    return frames.reshape(b, -1, c, h, w).movedim(1, 2).reshape(tuple(like_shape[:-2]) + (h, w))


def upscale_latent(samples: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """Resize [B,C,H,W] (or [B,C,T,H,W], frame by frame) latents to (height, width) latent pixels."""
    if method not in UPSCALE_METHODS:
        raise ValueError(f"unknown upscale method {method!r}; expected one of {UPSCALE_METHODS}")
    if samples.ndim > 4:
        return unfold_time(upscale_latent(fold_time(samples), width, height, method, crop), samples.shape)
    s = center_crop_to_aspect(samples, width, height) if crop == "center" else samples
    if method == "bislerp":
        return bislerp(s, width, height)
    return F.interpolate(s, size=(height, width), mode=method)


# ----------------------------------------------------------------------------------------
# nodes
# ----------------------------------------------------------------------------------------
class EmptyLatentImage:
    def __init__(self):
        self.device = torch.device("cpu")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                                  "tooltip": "The width of the latent images in pixels."}),
                "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                                   "tooltip": "The height of the latent images in pixels."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                       "tooltip": "The number of latent images in the batch."}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"
    CATEGORY = "latent"
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."

    def generate(self, width, height, batch_size=1):
        latent = torch.zeros([batch_size, 4, height // 8, width // 8], device=self.device)
        return ({"samples": latent},)


class LatentUpscale:
    upscale_methods = UPSCALE_METHODS
    crop_methods = CROP_METHODS

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (cls.upscale_methods,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "crop": (cls.crop_methods,),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(self, samples, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (samples,)
        s = dict(samples)
        src = samples["samples"]
        if width == 0:
            height = max(64, height)
            width = max(64, round(src.shape[-1] * height / src.shape[-2]))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(src.shape[-2] * width / src.shape[-1]))
        else:
            width = max(64, width)
            height = max(64, height)
        s["samples"] = upscale_latent(src, width // 8, height // 8, upscale_method, crop)
        return (s,)


class LatentUpscaleBy:
    upscale_methods = UPSCALE_METHODS

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (cls.upscale_methods,),
                "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(self, samples, upscale_method, scale_by):
        s = dict(samples)
        src = samples["samples"]
        width = round(src.shape[-1] * scale_by)
        height = round(src.shape[-2] * scale_by)
        s["samples"] = upscale_latent(src, width, height, upscale_method, "disabled")
        return (s,)


class LatentComposite:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples_to": ("LATENT",),
                "samples_from": ("LATENT",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "feather": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"
    CATEGORY = "latent"

    def composite(self, samples_to, samples_from, x, y, composite_method="normal", feather=0):
        x, y, feather = x // 8, y // 8, feather // 8
        out = dict(samples_to)
        dst = samples_to["samples"]
        s = dst.clone()
        src = _repeat_batch(samples_from["samples"].to(s), s.shape[0])
        if src.ndim != s.ndim or src.shape[2:-2] != s.shape[2:-2]:
            raise ValueError(f"LatentComposite: latents of shapes {tuple(src.shape)} and {tuple(s.shape)} differ "
                             "in more than their size (frame counts must match)")
        h = max(0, min(src.shape[-2], dst.shape[-2] - y))
        w = max(0, min(src.shape[-1], dst.shape[-1] - x))
        if h == 0 or w == 0:
            out["samples"] = s
            return (out,)
        src = src[..., :h, :w]
        if feather == 0:
            s[..., y:y + h, x:x + w] = src
        else:
            mask = torch.ones_like(src)
            for t in range(feather):
                f = (1.0 / feather) * (t + 1)
                if y != 0:
                    mask[..., t:1 + t, :] *= f
                if y + h < dst.shape[-2]:
                    mask[..., h - 1 - t:h - t, :] *= f
                if x != 0:
                    mask[..., :, t:1 + t] *= f
                if x + w < dst.shape[-1]:
                    mask[..., :, w - 1 - t:w - t] *= f
            s[..., y:y + h, x:x + w] = src * mask + s[..., y:y + h, x:x + w] * (1.0 - mask)
        out["samples"] = s
        return (out,)


class LatentCompositeMasked:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "destination": ("LATENT",),
                "source": ("LATENT",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "resize_source": ("BOOLEAN", {"default": False}),
            },
            "optional": {"mask": ("MASK",)},
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"
    CATEGORY = "latent"

    def composite(self, destination, source, x, y, resize_source, mask=None):
        output = dict(destination)
        dst = destination["samples"].clone()
        src = source["samples"]
        if dst.ndim == 5:  # video: composite frame by frame (a one-frame mask applies to all)
            if src.ndim != 5 or (src.shape[2] != dst.shape[2] and src.shape[2] != 1):
                raise ValueError(f"LatentCompositeMasked: source {tuple(src.shape)} does not fit the video latent "
                                 f"{tuple(dst.shape)} (same frame count, or one frame)")
            src = src.expand(-1, -1, dst.shape[2], -1, -1) if src.shape[2] == 1 else src
            src = _repeat_batch(src, dst.shape[0])
            frames = composite(fold_time(dst), fold_time(src), x, y, mask, 8, resize_source)
            output["samples"] = unfold_time(frames, dst.shape)
            return (output,)
        output["samples"] = composite(dst, src, x, y, mask, 8, resize_source)
        return (output,)


class LatentBlend:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples1": ("LATENT",),
                "samples2": ("LATENT",),
                "blend_factor": ("FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "blend"
    CATEGORY = "_for_testing"

    def blend(self, samples1, samples2, blend_factor, blend_mode="normal"):
        out = dict(samples1)
        s1 = samples1["samples"]
        s2 = samples2["samples"]
        if s1.shape != s2.shape:
            s2 = upscale_latent(s2, s1.shape[-1], s1.shape[-2], "bicubic", crop="center")
        if blend_mode != "normal":
            raise ValueError(f"unsupported blend mode {blend_mode!r}")
        out["samples"] = s1 * blend_factor + s2 * (1 - blend_factor)
        return (out,)


class LatentFromBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT",),
                "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
                "length": ("INT", {"default": 1, "min": 1, "max": 64}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "frombatch"
    CATEGORY = "latent/batch"

    def frombatch(self, samples, batch_index, length):
        s = dict(samples)
        s_in = samples["samples"]
        batch_index = min(s_in.shape[0] - 1, batch_index)
        length = min(s_in.shape[0] - batch_index, length)
        s["samples"] = s_in[batch_index:batch_index + length].clone()
        if "noise_mask" in samples:
            masks = samples["noise_mask"]
            if masks.shape[0] == 1:
                s["noise_mask"] = masks.clone()
            else:
                if masks.shape[0] < s_in.shape[0]:
                    masks = _repeat_batch(masks, s_in.shape[0])
                s["noise_mask"] = masks[batch_index:batch_index + length].clone()
        if "batch_index" not in samples:
            s["batch_index"] = list(range(batch_index, batch_index + length))
        else:
            s["batch_index"] = list(samples["batch_index"][batch_index:batch_index + length])
        return (s,)


class RepeatLatentBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "repeat"
    CATEGORY = "latent/batch"

    def repeat(self, samples, amount):
        s = dict(samples)
        s_in = samples["samples"]
        s["samples"] = s_in.repeat((amount,) + (1,) * (s_in.ndim - 1))
        if "noise_mask" in samples and samples["noise_mask"].shape[0] > 1:
            masks = samples["noise_mask"]
            if masks.shape[0] < s_in.shape[0]:
                masks = _repeat_batch(masks, s_in.shape[0])
            s["noise_mask"] = masks.repeat((amount,) + (1,) * (masks.ndim - 1))
        if "batch_index" in s:
            bi = list(s["batch_index"])
            offset = max(bi) - min(bi) + 1
            s["batch_index"] = bi + [x + (i * offset) for i in range(1, amount) for x in bi]
        return (s,)


class LatentBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "batch"
    CATEGORY = "latent/batch"

    def batch(self, samples1, samples2):
        out = dict(samples1)
        s1 = samples1["samples"]
        s2 = samples2["samples"]
        if s1.shape[1:] != s2.shape[1:]:
            s2 = upscale_latent(s2, s1.shape[-1], s1.shape[-2], "bilinear", "center")
        if s1.shape[1:] != s2.shape[1:]:
            raise ValueError(f"LatentBatch: cannot batch latents of shapes {tuple(s1.shape)} and {tuple(s2.shape)} "
                             "(channels and frame counts must match)")
        out["samples"] = torch.cat((s1, s2.to(s1)), dim=0)
        out["batch_index"] = (list(samples1.get("batch_index", range(s1.shape[0])))
                              + list(samples2.get("batch_index", range(s2.shape[0]))))
        return (out,)


class LatentRotate:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "rotation": (["none", "90 degrees", "180 degrees", "270 degrees"],)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "rotate"
    CATEGORY = "latent/transform"

    def rotate(self, samples, rotation):
        s = dict(samples)
        k = {"90": 1, "180": 2, "270": 3}.get(rotation.split(" ")[0], 0)
        s["samples"] = torch.rot90(samples["samples"], k=k, dims=[-1, -2])
        return (s,)


class LatentFlip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "flip_method": (["x-axis: vertically", "y-axis: horizontally"],)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "flip"
    CATEGORY = "latent/transform"

    def flip(self, samples, flip_method):
        s = dict(samples)
        if flip_method.startswith("x"):
            s["samples"] = torch.flip(samples["samples"], dims=[-2])
        elif flip_method.startswith("y"):
            s["samples"] = torch.flip(samples["samples"], dims=[-1])
        return (s,)


class LatentCrop:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT",),
                "width": ("INT", {"default": 512, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "crop"
    CATEGORY = "latent/transform"

    def crop(self, samples, width, height, x, y):
        s = dict(samples)
        t = samples["samples"]
        x, y = x // 8, y // 8
        x = min(x, t.shape[-1] - 8)
        y = min(y, t.shape[-2] - 8)
        x, y = max(0, x), max(0, y)
        s["samples"] = t[..., y:y + height // 8, x:x + width // 8]
        return (s,)


class SetLatentNoiseMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"
    CATEGORY = "latent/inpaint"

    def set_mask(self, samples, mask):
        s = dict(samples)
        s["noise_mask"] = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
        return (s,)


class SaveLatent:
    def __init__(self):
        self.output_dir = _paths().get_output_directory()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "_for_testing"

    def save(self, samples, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        import safetensors.torch

        paths = _paths()
        full_output_folder, filename, counter, subfolder, filename_prefix = paths.get_save_image_path(
            filename_prefix, self.output_dir)
        metadata = None
        if not metadata_disabled():
            metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
            if extra_pnginfo is not None:
                for k in extra_pnginfo:
                    metadata[k] = json.dumps(extra_pnginfo[k])
        file = f"{filename}_{counter:05}_.latent"
        results = [{"filename": file, "subfolder": subfolder, "type": "output"}]
        os.makedirs(full_output_folder, exist_ok=True)
        output = {"latent_tensor": samples["samples"].contiguous().cpu(),
                  "latent_format_version_0": torch.tensor([])}
        safetensors.torch.save_file(output, os.path.join(full_output_folder, file), metadata=metadata)
        return {"ui": {"latents": results}}


def _latent_files() -> list[str]:
    input_dir = _paths().get_input_directory()
    try:
        files = [f for f in os.listdir(input_dir)
                 if os.path.isfile(os.path.join(input_dir, f)) and f.endswith(".latent")]
    except FileNotFoundError:
        files = []
    return sorted(files)


class LoadLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": [_latent_files()]}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"
    CATEGORY = "_for_testing"

    def load(self, latent):
        import safetensors.torch

        path = _paths().get_annotated_filepath(latent)
        data = safetensors.torch.load_file(path, device="cpu")
        multiplier = 1.0 if "latent_format_version_0" in data else 1.0 / 0.18215
        return ({"samples": data["latent_tensor"].float() * multiplier},)

    @classmethod
    def IS_CHANGED(cls, latent):
        path = _paths().get_annotated_filepath(latent)
        m = hashlib.sha256()
        with open(path, "rb") as f:
            m.update(f.read())
        return m.digest().hex()

    @classmethod
    def VALIDATE_INPUTS(cls, latent):
        if not _paths().exists_annotated_filepath(latent):
            return "Invalid latent file: {}".format(latent)
        return True


NODE_CLASS_MAPPINGS = {
    "EmptyLatentImage": EmptyLatentImage,
    "LatentUpscale": LatentUpscale,
    "LatentUpscaleBy": LatentUpscaleBy,
    "LatentComposite": LatentComposite,
    "LatentCompositeMasked": LatentCompositeMasked,
    "LatentBlend": LatentBlend,
    "LatentFromBatch": LatentFromBatch,
    "RepeatLatentBatch": RepeatLatentBatch,
    "LatentBatch": LatentBatch,
    "LatentRotate": LatentRotate,
    "LatentFlip": LatentFlip,
    "LatentCrop": LatentCrop,
    "SetLatentNoiseMask": SetLatentNoiseMask,
    "SaveLatent": SaveLatent,
    "LoadLatent": LoadLatent,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyLatentImage": "Empty Latent Image",
    "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By",
    "LatentComposite": "Latent Composite",
    "LatentBlend": "Latent Blend",
    "LatentFromBatch": "Latent From Batch",
    "RepeatLatentBatch": "Repeat Latent Batch",
    "LatentRotate": "Rotate Latent",
    "LatentFlip": "Flip Latent",
    "LatentCrop": "Crop Latent",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
}
