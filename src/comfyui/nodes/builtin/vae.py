"""VAE nodes: VAEDecode, VAEEncode, VAEDecodeTiled, VAEEncodeTiled, VAEEncodeForInpaint,
InpaintModelConditioning.

Video VAEs (``vae.latent_dim == 3``, :class:`comfyui.models.video_vae.VideoVAE`) decode
[B,C,T,H,W] latents to [B,T,H,W,3], folded here into the IMAGE batch [B*T,H,W,3], and encode
a frame batch IMAGE [T,H,W,C] into one video latent [1,C,t,h,w]; the tiled nodes tile in time
too (temporal_size / temporal_overlap in pictures, turned into latent frames here, as upstream).
"""
from __future__ import annotations

import math

from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")


def _temporal_compression(vae):
    fn = getattr(vae, "temporal_compression_decode", None)
    return fn() if fn is not None else None


def _fold_frames(images):
    """[B,T,H,W,C] -> [B*T,H,W,C] (video VAEs); IMAGE batches pass through."""
    if images.ndim == 5:
        images = images.reshape(-1, images.shape[-3], images.shape[-2], images.shape[-1])
    return images


def _temporal(tile_size, overlap, temporal_size, temporal_overlap):
    if tile_size < overlap * 4:
        overlap = tile_size // 4
    if temporal_size < temporal_overlap * 2:
        temporal_overlap = temporal_overlap // 2
    return overlap, temporal_overlap


class VAEDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                             "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"
    CATEGORY = "latent"
    DESCRIPTION = "Decodes latent images back into pixel space images."

    def decode(self, vae, samples):
        return (_fold_frames(vae.decode(samples["samples"])),)


class VAEDecodeTiled:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "samples": ("LATENT",), "vae": ("VAE",),
            "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 32}),
            "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
            "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                                      "tooltip": "Only used for video VAEs: Amount of frames to decode at a time."}),
            "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                                         "tooltip": "Only used for video VAEs: Amount of frames to overlap."}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = "_for_testing"

    def decode(self, vae, samples, tile_size, overlap=64, temporal_size=64, temporal_overlap=8):
        overlap, temporal_overlap = _temporal(tile_size, overlap, temporal_size, temporal_overlap)
        c = vae.spacial_compression_decode()
        kwargs = {}
        tc = _temporal_compression(vae)
        if tc is not None:  # pictures -> latent frames
            tile_t = max(2, temporal_size // tc)
            kwargs = {"tile_t": tile_t, "overlap_t": max(1, min(tile_t // 2, temporal_overlap // tc))}
        images = vae.decode_tiled(samples["samples"], tile_x=tile_size // c, tile_y=tile_size // c,
                                  overlap=overlap // c, **kwargs)
        return (_fold_frames(images),)


class VAEEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent"

    def encode(self, vae, pixels):
        return ({"samples": vae.encode(pixels)},)


class VAEEncodeTiled:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pixels": ("IMAGE",), "vae": ("VAE",),
            "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64}),
            "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
            "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                                      "tooltip": "Only used for video VAEs: Amount of frames to encode at a time."}),
            "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                                         "tooltip": "Only used for video VAEs: Amount of frames to overlap."}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "_for_testing"

    def encode(self, vae, pixels, tile_size, overlap, temporal_size=64, temporal_overlap=8):
        kwargs = {}
        if _temporal_compression(vae) is not None:
            kwargs = {"tile_t": temporal_size, "overlap_t": temporal_overlap}
        return ({"samples": vae.encode_tiled(pixels, tile_x=tile_size, tile_y=tile_size, overlap=overlap, **kwargs)},)


def _crop_pixels_and_mask(pixels, mask, r=8):
    x = (pixels.shape[1] // r) * r
    y = (pixels.shape[2] // r) * r
    mask = F.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])),
                         size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
    if pixels.shape[1] != x or pixels.shape[2] != y:
        xo = (pixels.shape[1] % r) // 2
        yo = (pixels.shape[2] % r) // 2
        pixels = pixels[:, xo:x + xo, yo:y + yo, :]
        mask = mask[:, :, xo:x + xo, yo:y + yo]
    return pixels, mask, x, y


def _gray_out(pixels, mask):
    pixels = pixels.clone()
    m = (1.0 - mask.round()).squeeze(1)
    for i in range(3):
        pixels[:, :, :, i] -= 0.5
        pixels[:, :, :, i] *= m
        pixels[:, :, :, i] += 0.5
    return pixels


class VAEEncodeForInpaint:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent/inpaint"

    def encode(self, vae, pixels, mask, grow_mask_by=6):
        r = vae.spacial_compression_encode()
        pixels, mask, x, y = _crop_pixels_and_mask(pixels, mask, r)
        if grow_mask_by == 0:
            mask_erosion = mask
        else:
            kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
            padding = math.ceil((grow_mask_by - 1) / 2)
            mask_erosion = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)
        pixels = _gray_out(pixels, mask)
        t = vae.encode(pixels)
        return ({"samples": t, "noise_mask": mask_erosion[:, :, :x, :y].round()},)


class InpaintModelConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",),
            "pixels": ("IMAGE",), "mask": ("MASK",),
            "noise_mask": ("BOOLEAN", {"default": True, "tooltip": "Add a noise mask to the latent so sampling will "
                                       "only happen within the mask. Might improve results or completely break things "
                                       "depending on the model."}),
        }}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"
    CATEGORY = "conditioning/inpaint"

    def encode(self, positive, negative, pixels, vae, mask, noise_mask=True):
        r = vae.spacial_compression_encode()
        orig_pixels, mask, _x, _y = _crop_pixels_and_mask(pixels, mask, r)
        concat_latent = vae.encode(_gray_out(orig_pixels, mask))
        orig_latent = vae.encode(orig_pixels)
        out_latent = {"samples": orig_latent}
        if noise_mask:
            out_latent["noise_mask"] = mask
        out = []
        for conditioning in (positive, negative):
            c = []
            for t in conditioning:
                d = dict(t[1])
                d["concat_latent_image"] = concat_latent
                d["concat_mask"] = mask
                c.append([t[0], d])
            out.append(c)
        return (out[0], out[1], out_latent)


NODE_CLASS_MAPPINGS = {
    "VAEDecode": VAEDecode,
    "VAEEncode": VAEEncode,
    "VAEDecodeTiled": VAEDecodeTiled,
    "VAEEncodeTiled": VAEEncodeTiled,
    "VAEEncodeForInpaint": VAEEncodeForInpaint,
    "InpaintModelConditioning": InpaintModelConditioning,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "VAEDecodeTiled": "VAE Decode (Tiled)",
    "VAEEncodeTiled": "VAE Encode (Tiled)",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
    "InpaintModelConditioning": "InpaintModelConditioning",
}
