"""Post-processing nodes (ComfyUI's comfy_extras/nodes_post_processing.py)."""
from __future__ import annotations

import math

from PIL import Image

from comfyui.nodes.io import io

from ._image_utils import UPSCALE_METHODS, check_image, common_upscale, filter2d_same, gaussian_kernel
from ._lazy import lazy
from .image import batch_images

np = lazy("numpy")
torch = lazy("torch")


class Blend:
    blend_modes = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image1": ("IMAGE",),
                "image2": ("IMAGE",),
                "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                "blend_mode": (s.blend_modes,),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"
    CATEGORY = "image/postprocessing"

    def blend_images(self, image1, image2, blend_factor, blend_mode):
        check_image(image1, "image1")
        check_image(image2, "image2")
        image2 = image2.to(image1.device, image1.dtype)
        if image1.shape[-1] != image2.shape[-1]:
            # Blend colour only; keep image1's extra (alpha) channel if it has one.
            c = min(image1.shape[-1], image2.shape[-1])
            image2 = torch.cat([image2[..., :c], image1[..., c:]], dim=-1) if image1.shape[-1] > c else image2[..., :c]
        if image1.shape[1:3] != image2.shape[1:3]:
            image2 = common_upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bicubic", "center").movedim(1, -1)
        if image2.shape[0] != image1.shape[0] and image2.shape[0] != 1 and image1.shape[0] != 1:
            raise ValueError(f"ImageBlend: batch sizes {image1.shape[0]} and {image2.shape[0]} cannot be combined")
        blended = self.blend_mode(image1, image2, blend_mode)
        blended = image1 * (1 - blend_factor) + blended * blend_factor
        return (torch.clamp(blended, 0, 1),)

    def blend_mode(self, img1, img2, mode):
        if mode == "normal":
            return img2
        if mode == "multiply":
            return img1 * img2
        if mode == "screen":
            return 1 - (1 - img1) * (1 - img2)
        if mode == "overlay":
            return torch.where(img1 <= 0.5, 2 * img1 * img2, 1 - 2 * (1 - img1) * (1 - img2))
        if mode == "soft_light":
            return torch.where(img2 <= 0.5, img1 - (1 - 2 * img2) * img1 * (1 - img1), img1 + (2 * img2 - 1) * (self.g(img1) - img1))
        if mode == "difference":
            return img1 - img2
        raise ValueError(f"Unsupported blend mode: {mode}")

    def g(self, x):
        return torch.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, torch.sqrt(x.clamp(min=0)))


class Blur:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"
    CATEGORY = "image/postprocessing"

    def blur(self, image, blur_radius, sigma):
        check_image(image)
        if blur_radius == 0:
            return (image,)
        kernel = gaussian_kernel(blur_radius * 2 + 1, sigma, device=image.device)
        out = filter2d_same(image.movedim(-1, 1), kernel, blur_radius)
        return (out.movedim(1, -1),)


class Quantize:
    dither_modes = ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "colors": ("INT", {"default": 256, "min": 1, "max": 256, "step": 1}),
                "dither": (s.dither_modes,),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "quantize"
    CATEGORY = "image/postprocessing"

    @staticmethod
    def _bayer_matrix(n: int) -> np.ndarray:
        """Normalised (zero-mean, |v| < 0.5) ordered-dither threshold matrix of size 2^n."""
        m = np.zeros((1, 1), dtype=np.float64)
        for level in range(1, n + 1):
            q = 4 ** level
            base = q * m
            m = np.block([[base - 1.5, base + 0.5], [base + 1.5, base - 0.5]]) / q
        return m

    @classmethod
    def _bayer(cls, im: Image.Image, pal_im: Image.Image, order: int) -> Image.Image:
        num_colors = len(pal_im.getpalette()) // 3
        spread = 2 * 256 / num_colors
        matrix = spread * cls._bayer_matrix(int(math.log2(order))) + 0.5
        arr = np.asarray(im).astype(np.float64)
        h, w = arr.shape[:2]
        tiled = np.tile(matrix, (math.ceil(h / order), math.ceil(w / order)))[:h, :w]
        arr = np.clip(arr + tiled[..., None], 0, 255).astype(np.uint8)
        return Image.fromarray(arr).quantize(palette=pal_im, dither=Image.Dither.NONE)

    def quantize(self, image, colors, dither):
        check_image(image)
        if dither not in self.dither_modes:
            raise ValueError(f"ImageQuantize: unknown dither {dither!r}; expected one of {self.dither_modes}")
        result = torch.zeros_like(image[..., :3])
        for b in range(image.shape[0]):
            arr = (image[b, ..., :3].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
            im = Image.fromarray(arr)
            # A palette image is needed to quantize with dithering control (Pillow issue 5836).
            pal_im = im.quantize(colors=colors)
            if dither == "none":
                q = im.quantize(palette=pal_im, dither=Image.Dither.NONE)
            elif dither == "floyd-steinberg":
                q = im.quantize(palette=pal_im, dither=Image.Dither.FLOYDSTEINBERG)
            else:
                q = self._bayer(im, pal_im, int(dither.split("-")[-1]))
            result[b] = torch.from_numpy(np.array(q.convert("RGB"))).float() / 255
        return (result,)


class Sharpen:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
                "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"
    CATEGORY = "image/postprocessing"

    def sharpen(self, image, sharpen_radius, sigma, alpha):
        check_image(image)
        if sharpen_radius == 0:
            return (image,)
        kernel_size = sharpen_radius * 2 + 1
        # Unsharp-mask kernel: -(10*alpha) * gaussian, with the centre raised so the kernel sums to 1.
        kernel = gaussian_kernel(kernel_size, sigma, device=image.device) * -(alpha * 10)
        center = kernel_size // 2
        kernel[center, center] = kernel[center, center] - kernel.sum() + 1.0
        out = filter2d_same(image.movedim(-1, 1), kernel, sharpen_radius)
        return (torch.clamp(out.movedim(1, -1), 0, 1),)


class ImageScaleToTotalPixels:
    upscale_methods = UPSCALE_METHODS
    crop_methods = ["disabled", "center"]

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (s.upscale_methods,),
                "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, megapixels):
        check_image(image)
        samples = image.movedim(-1, 1)
        total = int(megapixels * 1024 * 1024)
        scale_by = math.sqrt(total / (samples.shape[3] * samples.shape[2]))
        width = max(1, round(samples.shape[3] * scale_by))
        height = max(1, round(samples.shape[2] * scale_by))
        s = common_upscale(samples, width, height, upscale_method, "disabled")
        return (s.movedim(1, -1),)


class BatchImagesNode(io.ComfyNode):
    """Any number (2 to 50) of images in one batch, sized like the first."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BatchImagesNode", display_name="Batch Images", category="image",
            search_aliases=["batch", "image batch", "batch images", "combine images", "merge images", "stack images"],
            inputs=[io.Autogrow.Input("images", template=io.Autogrow.TemplatePrefix(
                io.Image.Input("image"), prefix="image", min=2, max=50))],
            outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, images: dict) -> io.NodeOutput:
        for name, image in images.items():
            check_image(image, name)
        return io.NodeOutput(batch_images(list(images.values())))


NODE_CLASS_MAPPINGS = {
    "ImageBlend": Blend,
    "ImageBlur": Blur,
    "ImageQuantize": Quantize,
    "ImageSharpen": Sharpen,
    "ImageScaleToTotalPixels": ImageScaleToTotalPixels,
    "BatchImagesNode": BatchImagesNode,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageBlend": "Image Blend",
    "ImageBlur": "Image Blur",
    "ImageQuantize": "Image Quantize",
    "ImageSharpen": "Image Sharpen",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}
