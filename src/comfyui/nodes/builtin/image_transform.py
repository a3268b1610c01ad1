"""Image transform / batch / animation nodes (ComfyUI's comfy_extras/nodes_images.py)."""
from __future__ import annotations

import json
import os

from PIL.PngImagePlugin import PngInfo

from . import image as _image
from ._image_utils import MAX_RESOLUTION, check_image, common_upscale, tensor_to_pil
from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")


class ImageCrop:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"
    CATEGORY = "image/transform"

    def crop(self, image, width, height, x, y):
        check_image(image)
        # An origin past the edge is pulled back so at least one pixel remains.
        x = min(x, image.shape[2] - 1)
        y = min(y, image.shape[1] - 1)
        return (image[:, y:y + height, x:x + width, :],)


class RepeatImageBatch:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",), "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"
    CATEGORY = "image/batch"

    def repeat(self, image, amount):
        check_image(image)
        return (image.repeat((amount, 1, 1, 1)),)


class ImageFromBatch:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095}),
                "length": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "frombatch"
    CATEGORY = "image/batch"

    def frombatch(self, image, batch_index, length):
        check_image(image)
        if batch_index < 0:
            batch_index += image.shape[0]
        batch_index = max(0, min(image.shape[0] - 1, batch_index))
        length = min(image.shape[0] - batch_index, length)
        return (image[batch_index:batch_index + length].clone(),)


class RebatchImages:
    """Regroups a list of image batches into batches of ``batch_size`` (the last may be smaller)."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"images": ("IMAGE",), "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("IMAGE",)
    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "rebatch"
    CATEGORY = "image/batch"

    def rebatch(self, images, batch_size):
        batch_size = batch_size[0] if isinstance(batch_size, (list, tuple)) else batch_size
        if not isinstance(images, (list, tuple)):
            images = [images]
        singles = [img[i:i + 1] for img in images for i in range(check_image(img, "images").shape[0])]
        out = []
        for i in range(0, len(singles), batch_size):
            group = singles[i:i + batch_size]
            if any(g.shape[1:] != group[0].shape[1:] for g in group):
                raise ValueError("RebatchImages: images in one output batch must have the same size; "
                                 f"got {sorted({tuple(g.shape[1:3]) for g in group})}")
            out.append(torch.cat(group, dim=0))
        return (out,)


class ImageAddNoise:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "The random seed used for creating the noise."}),
                "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"
    CATEGORY = "image"

    def repeat(self, image, seed, strength):
        check_image(image)
        generator = torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)
        noise = torch.randn(image.size(), generator=generator, device="cpu").to(image)
        return (torch.clip(image + strength * noise, min=0.0, max=1.0),)


class ImageStitch:
    """Stitches image2 onto image1 in a direction, optionally resizing it and adding a spacer."""

    directions = ["right", "down", "left", "up"]
    spacing_colors = ["white", "black", "red", "green", "blue"]
    _colors = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0),
               "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image1": ("IMAGE",),
                "direction": (s.directions, {"default": "right"}),
                "match_image_size": ("BOOLEAN", {"default": True}),
                "spacing_width": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 2}),
                "spacing_color": (s.spacing_colors, {"default": "white"}),
            },
            "optional": {"image2": ("IMAGE",)},
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stitch"
    CATEGORY = "image/transform"
    DESCRIPTION = (
        "Stitches image2 to image1 in the specified direction.\n"
        "If image2 is not provided, returns image1 unchanged.\n"
        "Optional spacing can be added between images."
    )

    @staticmethod
    def _pad_to(img: torch.Tensor, dim: int, size: int, value: float) -> torch.Tensor:
        missing = size - img.shape[dim]
        if missing <= 0:
            return img
        before, after = missing // 2, missing - missing // 2
        pad = [0, 0, 0, 0, 0, 0]  # F.pad order: C, W, H
        idx = {2: 2, 1: 4}[dim]
        pad[idx], pad[idx + 1] = before, after
        return F.pad(img, pad, mode="constant", value=value)

    def stitch(self, image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
        check_image(image1, "image1")
        if image2 is None:
            return (image1,)
        check_image(image2, "image2")
        if direction not in self.directions:
            raise ValueError(f"ImageStitch: direction must be one of {self.directions}, got {direction!r}")
        if spacing_color not in self._colors:
            raise ValueError(f"ImageStitch: spacing_color must be one of {self.spacing_colors}, got {spacing_color!r}")
        image2 = image2.to(image1.device, image1.dtype)
        horizontal = direction in ("left", "right")

        # Shorter batch: repeat its last image.
        n = max(image1.shape[0], image2.shape[0])
        if image1.shape[0] < n:
            image1 = torch.cat([image1, image1[-1:].repeat(n - image1.shape[0], 1, 1, 1)])
        if image2.shape[0] < n:
            image2 = torch.cat([image2, image2[-1:].repeat(n - image2.shape[0], 1, 1, 1)])

        if match_image_size:
            h1, w1 = image1.shape[1:3]
            h2, w2 = image2.shape[1:3]
            aspect = w2 / h2
            if horizontal:
                target_h, target_w = h1, max(1, int(h1 * aspect))
            else:
                target_w, target_h = w1, max(1, int(w1 / aspect))
            image2 = common_upscale(image2.movedim(-1, 1), target_w, target_h, "lanczos", "disabled").movedim(1, -1)
        else:
            # Centre the smaller one on the cross axis; grey colours pad with their value, others black.
            rgb = self._colors[spacing_color]
            pad_value = rgb[0] if rgb[0] == rgb[1] == rgb[2] else 0.0
            dim = 1 if horizontal else 2
            size = max(image1.shape[dim], image2.shape[dim])
            image1 = self._pad_to(image1, dim, size, pad_value)
            image2 = self._pad_to(image2, dim, size, pad_value)

        if image1.shape[-1] != image2.shape[-1]:
            c = max(image1.shape[-1], image2.shape[-1])
            if image1.shape[-1] < c:
                image1 = torch.cat([image1, torch.ones(*image1.shape[:-1], c - image1.shape[-1], dtype=image1.dtype, device=image1.device)], dim=-1)
            if image2.shape[-1] < c:
                image2 = torch.cat([image2, torch.ones(*image2.shape[:-1], c - image2.shape[-1], dtype=image2.dtype, device=image2.device)], dim=-1)

        parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
        if spacing_width > 0:
            spacing_width = spacing_width + (spacing_width % 2)
            channels = image1.shape[-1]
            if horizontal:
                shape = (n, max(image1.shape[1], image2.shape[1]), spacing_width, channels)
            else:
                shape = (n, spacing_width, max(image1.shape[2], image2.shape[2]), channels)
            spacing = torch.zeros(shape, dtype=image1.dtype, device=image1.device)
            for i, v in enumerate(self._colors[spacing_color][:channels]):
                spacing[..., i] = v
            if channels == 4:
                spacing[..., 3] = 1.0
            parts.insert(1, spacing)
        return (torch.cat(parts, dim=2 if horizontal else 1),)


class ResizeAndPadImage:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "target_width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "target_height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "padding_color": (["white", "black"],),
                "interpolation": (["area", "bicubic", "nearest-exact", "bilinear", "lanczos"],),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "resize_and_pad"
    CATEGORY = "image/transform"

    def resize_and_pad(self, image, target_width, target_height, padding_color, interpolation):
        check_image(image)
        b, h, w, c = image.shape
        scale = min(target_width / w, target_height / h)
        new_w, new_h = max(1, int(w * scale)), max(1, int(h * scale))
        resized = common_upscale(image.movedim(-1, 1), new_w, new_h, interpolation, "disabled")
        pad_value = 0.0 if padding_color == "black" else 1.0
        out = torch.full((b, c, target_height, target_width), pad_value, dtype=image.dtype, device=image.device)
        y0, x0 = (target_height - new_h) // 2, (target_width - new_w) // 2
        out[:, :, y0:y0 + new_h, x0:x0 + new_w] = resized
        return (out.movedim(1, -1),)


class GetImageSize:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT", "INT", "INT")
    RETURN_NAMES = ("width", "height", "batch_size")
    FUNCTION = "get_size"
    CATEGORY = "image"
    DESCRIPTION = "Returns width and height of the image, and passes it through unchanged."

    def get_size(self, image, unique_id=None):
        check_image(image)
        return (int(image.shape[2]), int(image.shape[1]), int(image.shape[0]))


class ImageRotate:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",), "rotation": (["none", "90 degrees", "180 degrees", "270 degrees"],)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "rotate"
    CATEGORY = "image/transform"

    def rotate(self, image, rotation):
        check_image(image)
        k = {"none": 0, "90": 1, "180": 2, "270": 3}[rotation.split(" ")[0]]
        # dims [2, 1]: clockwise in image (y-down) coordinates
        return (torch.rot90(image, k=k, dims=[2, 1]),)


class ImageFlip:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",), "flip_method": (["x-axis: vertically", "y-axis: horizontally"],)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "flip"
    CATEGORY = "image/transform"

    def flip(self, image, flip_method):
        check_image(image)
        return (torch.flip(image, dims=[1] if flip_method.startswith("x") else [2]),)


class ImageScaleToMaxDimension:
    upscale_methods = ["area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic"]

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (s.upscale_methods,),
                "largest_size": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, largest_size):
        check_image(image)
        if largest_size < 1:
            raise ValueError("ImageScaleToMaxDimension: largest_size must be at least 1")
        h, w = image.shape[1], image.shape[2]
        if h > w:
            w, h = max(1, round(w / h * largest_size)), largest_size
        elif w > h:
            w, h = largest_size, max(1, round(h / w * largest_size))
        else:
            w = h = largest_size
        return (common_upscale(image.movedim(-1, 1), w, h, upscale_method, "disabled").movedim(1, -1),)


class SaveAnimatedWEBP:
    methods = {"default": 4, "fastest": 0, "slowest": 6}

    def __init__(self):
        self.type = "output"
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "lossless": ("BOOLEAN", {"default": True}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                "method": (list(s.methods.keys()),),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image/animation"

    def save_images(self, images, fps, filename_prefix, lossless, quality, method, num_frames=0, prompt=None, extra_pnginfo=None):
        check_image(images, "images")
        fp = _image._folder_paths()
        filename_prefix = _image.resolve_filename_tokens(filename_prefix, prompt) + self.prefix_append
        full_output_folder, filename, counter, subfolder, _ = fp.get_save_image_path(
            filename_prefix, fp.get_output_directory(), images[0].shape[1], images[0].shape[0])
        os.makedirs(full_output_folder, exist_ok=True)
        frames = [tensor_to_pil(img) for img in images]
        exif = frames[0].getexif()
        if not _image.metadata_disabled():
            # ComfyUI stores the metadata as EXIF strings: Make (0x010f) downwards for extra_pnginfo keys,
            # Model (0x0110) for the prompt.
            if prompt is not None:
                exif[0x0110] = "prompt:{}".format(json.dumps(prompt))
            if extra_pnginfo is not None:
                tag = 0x010F
                for key, value in extra_pnginfo.items():
                    exif[tag] = "{}:{}".format(key, json.dumps(value))
                    tag -= 1
        num_frames = num_frames or len(frames)
        results = []
        for i in range(0, len(frames), num_frames):
            file = f"{filename}_{counter:05}_.webp"
            frames[i].save(os.path.join(full_output_folder, file), save_all=True, duration=int(1000.0 / fps),
                           append_images=frames[i + 1:i + num_frames], exif=exif, lossless=lossless,
                           quality=quality, method=self.methods.get(method, 4))
            results.append({"filename": file, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results, "animated": [num_frames != 1]}}


class SaveAnimatedPNG:
    def __init__(self):
        self.type = "output"
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "compress_level": ("INT", {"default": 4, "min": 0, "max": 9}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image/animation"

    def save_images(self, images, fps, compress_level, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        check_image(images, "images")
        fp = _image._folder_paths()
        filename_prefix = _image.resolve_filename_tokens(filename_prefix, prompt) + self.prefix_append
        full_output_folder, filename, counter, subfolder, _ = fp.get_save_image_path(
            filename_prefix, fp.get_output_directory(), images[0].shape[1], images[0].shape[0])
        os.makedirs(full_output_folder, exist_ok=True)
        frames = [tensor_to_pil(img) for img in images]
        metadata = None
        if not _image.metadata_disabled():
            # "comf" chunks after the image data so APNG readers that stop early still work.
            metadata = PngInfo()
            if prompt is not None:
                metadata.add(b"comf", b"prompt\0" + json.dumps(prompt).encode("latin-1", "replace"), after_idat=True)
            if extra_pnginfo is not None:
                for key, value in extra_pnginfo.items():
                    metadata.add(b"comf", key.encode("latin-1", "replace") + b"\0" + json.dumps(value).encode("latin-1", "replace"), after_idat=True)
        file = f"{filename}_{counter:05}_.png"
        frames[0].save(os.path.join(full_output_folder, file), pnginfo=metadata, compress_level=compress_level,
                       save_all=True, duration=int(1000.0 / fps), append_images=frames[1:])
        return {"ui": {"images": [{"filename": file, "subfolder": subfolder, "type": self.type}], "animated": [True]}}


NODE_CLASS_MAPPINGS = {
    "ImageCrop": ImageCrop,
    "RepeatImageBatch": RepeatImageBatch,
    "ImageFromBatch": ImageFromBatch,
    "RebatchImages": RebatchImages,
    "ImageAddNoise": ImageAddNoise,
    "SaveAnimatedWEBP": SaveAnimatedWEBP,
    "SaveAnimatedPNG": SaveAnimatedPNG,
    "ImageStitch": ImageStitch,
    "ResizeAndPadImage": ResizeAndPadImage,
    "GetImageSize": GetImageSize,
    "ImageRotate": ImageRotate,
    "ImageFlip": ImageFlip,
    "ImageScaleToMaxDimension": ImageScaleToMaxDimension,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageCrop": "Image Crop",
    "ImageStitch": "Image Stitch",
    "GetImageSize": "Get Image Size",
    "RebatchImages": "Rebatch Images",
}
