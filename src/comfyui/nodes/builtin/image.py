"""Core image nodes: load / save / preview and the basic IMAGE operations of ComfyUI's nodes.py.

Metadata switch: ``DISABLE_METADATA`` (module level, default False). When it is true, or the
process config (``comfyui.config.current().disable_metadata``, i.e. ``--disable-metadata``) says
so, SaveImage / PreviewImage / SaveAnimated* write files without the ``prompt`` and
extra_pnginfo (``workflow``, ...) metadata. ``set_disable_metadata(True)`` sets the flag.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
import re
from typing import Any

from PIL import Image, ImageFile, ImageOps, ImageSequence, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from ._image_utils import (
    CROP_METHODS,
    MAX_RESOLUTION,
    UPSCALE_METHODS,
    check_image,
    common_upscale,
    tensor_to_pil,
)
from ._lazy import lazy

np = lazy("numpy")
torch = lazy("torch")

DISABLE_METADATA = False


def set_disable_metadata(disabled: bool) -> None:
    """Called by the config layer for --disable-metadata."""
    global DISABLE_METADATA
    DISABLE_METADATA = bool(disabled)


def metadata_disabled() -> bool:
    if DISABLE_METADATA:
        return True
    try:
        from comfyui import config

        return bool(getattr(config.current(), "disable_metadata", False))
    except ImportError:
        return False


def _folder_paths():
    from comfyui import paths

    return paths


# --------------------------------------------------------------------------------------------
# Loading


def _open_image(path: str, display_name: str) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Invalid image file: {display_name} (not found)") from None
    except UnidentifiedImageError as e:
        raise ValueError(f"Invalid image file: {display_name} is not an image Pillow can read") from e
    except OSError as first_error:
        # Truncated files: retry the way ComfyUI does, tolerating a short read.
        prev = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            img = Image.open(path)
            img.load()
            return img
        except OSError:
            raise ValueError(f"Invalid image file: {display_name} could not be read ({first_error})") from first_error
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = prev


def _exif_transpose(frame: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(frame)
    except OSError:
        prev = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return ImageOps.exif_transpose(frame)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = prev


def _is_wide_int_mode(mode: str) -> bool:
    return mode == "I" or mode.startswith("I;16")


def _frame_rgb(frame: Image.Image) -> np.ndarray:
    """float32 [H,W,3] in 0..1. 16-bit / 32-bit integer greyscale is scaled from the 16-bit range."""
    if _is_wide_int_mode(frame.mode):
        arr = np.asarray(frame).astype(np.float32) / 65535.0
        arr = np.clip(arr, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=-1)
    if frame.mode == "F":
        arr = np.clip(np.asarray(frame, dtype=np.float32), 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=-1)
    return np.asarray(frame.convert("RGB")).astype(np.float32) / 255.0


def _frame_alpha(frame: Image.Image) -> np.ndarray | None:
    """float32 [H,W] alpha in 0..1, or None when the frame has no transparency."""
    if "A" in frame.getbands():
        return np.asarray(frame.getchannel("A")).astype(np.float32) / 255.0
    if frame.mode == "P" and "transparency" in frame.info:
        return np.asarray(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
    return None


def _file_hash(path: str) -> str:
    m = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            m.update(chunk)
    return m.digest().hex()


def _input_image_files() -> list[str]:
    fp = _folder_paths()
    input_dir = fp.get_input_directory()
    try:
        files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
    except FileNotFoundError:
        files = []
    content_filter = getattr(fp, "filter_files_content_types", None) or _filter_image_files
    return sorted(content_filter(files, ["image"]))


def _filter_image_files(files, content_types):
    """Fallback for the folder API's filter_files_content_types: keep files whose MIME type is image/*."""
    import mimetypes

    out = []
    for f in files:
        mime = mimetypes.guess_type(f)[0]
        if mime is None and f.lower().endswith((".webp", ".avif", ".jxl")):
            mime = "image/" + f.rsplit(".", 1)[-1].lower()
        if mime and mime.split("/")[0] in content_types:
            out.append(f)
    return out


def load_image_file(path: str, display_name: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an image file into (IMAGE [B,H,W,3], MASK [B,H,W]) like ComfyUI's LoadImage.

    Every frame of an animated/multi-page file becomes one batch entry (frames whose size differs
    from the first are skipped; MPO files only give their first picture). The mask is 1 - alpha,
    or a 64x64 zero mask when the file has no alpha channel.
    """
    display_name = display_name or os.path.basename(path)
    img = _open_image(path, display_name)
    images: list[np.ndarray] = []
    alphas: list[np.ndarray | None] = []
    size = None
    try:
        for frame in ImageSequence.Iterator(img):
            frame = _exif_transpose(frame)
            if size is None:
                size = frame.size
            elif frame.size != size:
                continue
            images.append(_frame_rgb(frame))
            alphas.append(_frame_alpha(frame))
            if img.format == "MPO":
                break  # MPO's extra pictures are depth/stereo views, not animation frames
    finally:
        img.close()
    if not images:
        raise ValueError(f"Invalid image file: {display_name} contains no frames")

    h, w = images[0].shape[:2]
    any_alpha = any(a is not None for a in alphas)
    masks = []
    for a in alphas:
        if a is not None:
            masks.append(torch.from_numpy(1.0 - a))
        elif any_alpha:
            masks.append(torch.zeros((h, w), dtype=torch.float32))
        else:
            masks.append(torch.zeros((64, 64), dtype=torch.float32))
    image = torch.from_numpy(np.stack(images, axis=0)).float()
    mask = torch.stack(masks, dim=0).float()
    return image, mask


class LoadImage:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": (_input_image_files(), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        path = _folder_paths().get_annotated_filepath(image)
        return load_image_file(path, image)

    @classmethod
    def IS_CHANGED(s, image):
        path = _folder_paths().get_annotated_filepath(image)
        if not os.path.isfile(path):
            return ""
        return _file_hash(path)

    @classmethod
    def VALIDATE_INPUTS(s, image):
        if not _folder_paths().exists_annotated_filepath(image):
            return "Invalid image file: {}".format(image)
        return True


class LoadImageMask:
    _color_channels = ["alpha", "red", "green", "blue"]

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": (_input_image_files(), {"image_upload": True}),
                "channel": (s._color_channels,),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "load_image"

    def load_image(self, image, channel):
        if channel not in self._color_channels:
            raise ValueError(f"channel must be one of {self._color_channels}, got {channel!r}")
        path = _folder_paths().get_annotated_filepath(image)
        with _open_image(path, image) as opened:
            return (self._mask_from(_exif_transpose(opened), channel),)

    @staticmethod
    def _mask_from(img: Image.Image, channel: str) -> torch.Tensor:
        band = channel[0].upper()
        if _is_wide_int_mode(img.mode):
            # 16-bit greyscale: every colour channel is the grey value, there is no alpha.
            grey = np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)
            if band == "A":
                return torch.zeros((1, 64, 64), dtype=torch.float32)
            return torch.from_numpy(grey)[None]
        if img.getbands() != ("R", "G", "B", "A"):
            had_alpha = _frame_alpha(img) is not None
            img = img.convert("RGBA")
            if band == "A" and not had_alpha:
                return torch.zeros((1, 64, 64), dtype=torch.float32)
        mask = torch.from_numpy(np.asarray(img.getchannel(band)).astype(np.float32) / 255.0)
        if band == "A":
            mask = 1.0 - mask
        return mask.unsqueeze(0)

    @classmethod
    def IS_CHANGED(s, image, channel):
        path = _folder_paths().get_annotated_filepath(image)
        if not os.path.isfile(path):
            return ""
        return _file_hash(path)

    @classmethod
    def VALIDATE_INPUTS(s, image):
        if not _folder_paths().exists_annotated_filepath(image):
            return "Invalid image file: {}".format(image)
        return True


class LoadImageOutput(LoadImage):
    """Like LoadImage, but picks from the output folder (names are annotated "name [output]")."""

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": (
                    "COMBO",
                    {
                        "image_upload": True,
                        "image_folder": "output",
                        "remote": {"route": "/internal/files/output", "refresh_button": True, "control_after_refresh": "first"},
                    },
                )
            }
        }

    DESCRIPTION = "Load an image from the output folder. When the refresh button is clicked, the node will update the image list and automatically select the first image, allowing for easy iteration."
    EXPERIMENTAL = True


class WebcamCapture(LoadImage):
    """The frontend's webcam widget uploads a snapshot and passes its (annotated) file name."""

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("WEBCAM", {}),
                "width": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "capture_on_queue": ("BOOLEAN", {"default": True}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load_capture"
    CATEGORY = "image"

    def load_capture(self, image, **kwargs):
        # width/height only size the capture in the browser
        return (self.load_image(image)[0],)

    @classmethod
    def IS_CHANGED(s, image, width=0, height=0, capture_on_queue=True):
        return LoadImage.IS_CHANGED(image=image)


# --------------------------------------------------------------------------------------------
# Saving

_DATE_TOKEN = re.compile(r"(yyyy|yy|M{1,2}|d{1,2}|h{1,2}|m{1,2}|s{1,2})")
_UNSAFE_CHARS = re.compile(r'[/?<>\\:*|"]')
_PERCENT_TOKEN = re.compile(r"%([^%]+)%")


def format_date(fmt: str, now: _dt.datetime | None = None) -> str:
    """The frontend's date format: yyyy yy MM M dd d hh h mm m ss s."""
    now = now or _dt.datetime.now()
    parts = {"M": now.month, "d": now.day, "h": now.hour, "m": now.minute, "s": now.second}

    def repl(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "yyyy":
            return str(now.year)
        if tok == "yy":
            return str(now.year)[2:]
        return str(parts[tok[0]]).zfill(len(tok))

    return _DATE_TOKEN.sub(repl, fmt)


def _find_prompt_node(prompt: dict, name: str) -> dict | None:
    if not isinstance(prompt, dict):
        return None
    if isinstance(prompt.get(name), dict):
        return prompt[name]
    for key in ("title", "class_type"):
        for node in prompt.values():
            if not isinstance(node, dict):
                continue
            value = node.get("_meta", {}).get("title") if key == "title" else node.get("class_type")
            if value == name:
                return node
    return None


def resolve_filename_tokens(filename_prefix: str, prompt: dict | None = None, now: _dt.datetime | None = None) -> str:
    """Resolve ``%date:FMT%`` and ``%NodeTitleOrId.widget%`` in a filename prefix.

    The frontend normally substitutes these before queueing; API-format prompts arrive with them
    intact, so they are resolved here against the PROMPT (node id, then ``_meta.title``, then
    class_type). Tokens that cannot be resolved, and the ones the folder API handles itself
    (``%width%``, ``%year%``, ``%batch_num%``, ...), are left as they are.
    """

    def repl(m: re.Match) -> str:
        body = m.group(1)
        if body.startswith("date:"):
            return format_date(body[5:], now)
        if "." not in body or prompt is None:
            return m.group(0)
        node_name, widget = body.rsplit(".", 1)
        node = _find_prompt_node(prompt, node_name)
        if node is None:
            return m.group(0)
        inputs = node.get("inputs", {})
        if widget not in inputs:
            return m.group(0)
        value = inputs[widget]
        if isinstance(value, list):  # a link to another node's output: no literal value to use
            return m.group(0)
        if value is None:
            value = ""
        if isinstance(value, bool):
            value = str(value).lower()
        return _UNSAFE_CHARS.sub("_", str(value))

    return _PERCENT_TOKEN.sub(repl, filename_prefix)


def _png_metadata(prompt, extra_pnginfo) -> PngInfo | None:
    if metadata_disabled():
        return None
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    if extra_pnginfo is not None:
        if not isinstance(extra_pnginfo, dict):
            raise TypeError("extra_pnginfo must be a dict of chunk name -> JSON value")
        for key, value in extra_pnginfo.items():
            metadata.add_text(key, json.dumps(value))
    return metadata


class SaveImage:
    def __init__(self):
        self.output_dir = None  # resolved per call so config changes are honoured
        self.type = "output"
        self.prefix_append = ""
        self.compress_level = 4

    def _output_dir(self) -> str:
        fp = _folder_paths()
        return self.output_dir or (fp.get_temp_directory() if self.type == "temp" else fp.get_output_directory())

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        check_image(images, "images")
        if images.shape[0] == 0:
            return {"ui": {"images": []}}
        filename_prefix = resolve_filename_tokens(filename_prefix, prompt) + self.prefix_append
        output_dir = self._output_dir()
        full_output_folder, filename, counter, subfolder, filename_prefix = _folder_paths().get_save_image_path(
            filename_prefix, output_dir, images[0].shape[1], images[0].shape[0]
        )
        os.makedirs(full_output_folder, exist_ok=True)
        results = []
        for batch_number, image in enumerate(images):
            img = tensor_to_pil(image)
            metadata = _png_metadata(prompt, extra_pnginfo)
            name = filename.replace("%batch_num%", str(batch_number))
            file = f"{name}_{counter:05}_.png"
            img.save(os.path.join(full_output_folder, file), pnginfo=metadata, compress_level=self.compress_level)
            results.append({"filename": file, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    def __init__(self):
        self.output_dir = None
        self.type = "temp"
        self.prefix_append = "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
        self.compress_level = 1

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    DESCRIPTION = "Saves the input images to the temp directory and shows them in the UI."


# --------------------------------------------------------------------------------------------
# Basic image operations


class ImageScale:
    upscale_methods = UPSCALE_METHODS
    crop_methods = CROP_METHODS

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (s.upscale_methods,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "crop": (s.crop_methods,),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, width, height, crop):
        check_image(image)
        if width == 0 and height == 0:
            return (image,)
        samples = image.movedim(-1, 1)
        if width == 0:
            width = max(1, round(samples.shape[3] * height / samples.shape[2]))
        elif height == 0:
            height = max(1, round(samples.shape[2] * width / samples.shape[3]))
        s = common_upscale(samples, width, height, upscale_method, crop)
        return (s.movedim(1, -1),)


class ImageScaleBy:
    upscale_methods = UPSCALE_METHODS

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (s.upscale_methods,),
                "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, scale_by):
        check_image(image)
        samples = image.movedim(-1, 1)
        width = max(1, round(samples.shape[3] * scale_by))
        height = max(1, round(samples.shape[2] * scale_by))
        s = common_upscale(samples, width, height, upscale_method, "disabled")
        return (s.movedim(1, -1),)


class ImageInvert:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    CATEGORY = "image"

    def invert(self, image):
        return (1.0 - image,)


class ImageBatch:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    CATEGORY = "image"

    def batch(self, image1, image2):
        check_image(image1, "image1")
        check_image(image2, "image2")
        return (batch_images([image1, image2]),)


def batch_images(images: list) -> torch.Tensor:
    """One batch of ``images``: an RGB image next to an RGBA one gets an opaque alpha channel,
    and every image is resized (bilinear, centre crop) to the first one's size."""
    channels = max(image.shape[-1] for image in images)
    first = images[0]
    out = []
    for image in images:
        if image.shape[-1] < channels:
            alpha = torch.ones_like(image[..., :1]).expand(*image.shape[:-1], channels - image.shape[-1])
            image = torch.cat([image, alpha], dim=-1)
        if image.shape[1:3] != first.shape[1:3]:
            image = common_upscale(image.movedim(-1, 1), first.shape[2], first.shape[1], "bilinear", "center").movedim(1, -1)
        out.append(image.to(first))
    return torch.cat(out, dim=0)


class EmptyImage:
    def __init__(self, device="cpu"):
        self.device = device

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    def generate(self, width, height, batch_size=1, color=0):
        rgb = torch.tensor(
            [((color >> 16) & 0xFF) / 0xFF, ((color >> 8) & 0xFF) / 0xFF, (color & 0xFF) / 0xFF], dtype=torch.float32
        )
        out = rgb.to(self.device).expand(batch_size, height, width, 3).clone()
        return (out,)


def outpaint_feather_mask(h: int, w: int, left: int, top: int, right: int, bottom: int, feathering: int) -> torch.Tensor:
    """Mask over the original image area for ImagePadForOutpaint.

    For each pixel, d = distance to the nearest *padded* edge (edges with no padding don't count);
    pixels closer than ``feathering`` get ((feathering - d) / feathering) ** 2, the rest 0. Feathering
    is skipped entirely when 2 * feathering does not fit inside both image dimensions.
    """
    t = torch.zeros((h, w), dtype=torch.float32)
    if not (feathering > 0 and feathering * 2 < h and feathering * 2 < w):
        return t
    i = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    j = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    far_h = torch.full_like(i, float(h))
    far_w = torch.full_like(j, float(w))
    dt = i if top != 0 else far_h
    db = (h - i) if bottom != 0 else far_h
    dl = j if left != 0 else far_w
    dr = (w - j) if right != 0 else far_w
    d = torch.minimum(torch.minimum(dt, db), torch.minimum(dl, dr))
    v = (feathering - d) / feathering
    return torch.where(d < feathering, v * v, t)


class ImagePadForOutpaint:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "left": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "top": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "right": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "bottom": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "feathering": ("INT", {"default": 40, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"
    CATEGORY = "image"

    def expand_image(self, image, left, top, right, bottom, feathering):
        check_image(image)
        b, h, w, c = image.shape
        new_image = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32, device=image.device)
        new_image[:, top:top + h, left:left + w, :] = image
        mask = torch.ones((h + top + bottom, w + left + right), dtype=torch.float32)
        mask[top:top + h, left:left + w] = outpaint_feather_mask(h, w, left, top, right, bottom, feathering)
        return (new_image, mask.unsqueeze(0))


NODE_CLASS_MAPPINGS = {
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "LoadImage": LoadImage,
    "LoadImageMask": LoadImageMask,
    "LoadImageOutput": LoadImageOutput,
    "WebcamCapture": WebcamCapture,
    "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy,
    "ImageInvert": ImageInvert,
    "ImageBatch": ImageBatch,
    "ImagePadForOutpaint": ImagePadForOutpaint,
    "EmptyImage": EmptyImage,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "LoadImage": "Load Image",
    "LoadImageMask": "Load Image (as Mask)",
    "LoadImageOutput": "Load Image (from Outputs)",
    "WebcamCapture": "Webcam Capture",
    "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By",
    "ImageInvert": "Invert Image",
    "ImagePadForOutpaint": "Pad Image for Outpainting",
    "ImageBatch": "Batch Images",
    "EmptyImage": "EmptyImage",
}
