"""``convert_output``: images re-encoded as JPEG or WebP with Pillow (sharp's option names, as
comfyui-api takes them). Runs in a worker thread. Files that are not still images (videos,
audio, animated images, latents) pass through unchanged, as in comfyui-api.

Mapping of sharp's options onto Pillow's encoders:

* JPEG: ``quality``; ``progressive``; ``chromaSubsampling`` "4:4:4" / "4:2:2" / "4:2:0";
  ``optimizeCoding`` -> ``optimize``. ``mozjpeg``, ``trellisQuantisation``,
  ``overshootDeringing``, ``optimizeScans`` and ``quantisationTable`` (mozjpeg's alternative
  tables) are mozjpeg features the libjpeg(-turbo) in Pillow lacks: they are checked and
  accepted (requests written for sharp keep working) and the standard table is used.
* WebP: ``quality``; ``alphaQuality`` -> ``alpha_quality``; ``lossless``; ``effort`` 0-6 ->
  ``method``; ``nearLossless`` gives lossless output (Pillow has no near-lossless mode);
  ``preset`` and ``smartSubsample`` are checked and accepted with no effect (Pillow's WebP
  encoder exposes neither).
"""
from __future__ import annotations

import io
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

STILL_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class JPEGOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quality: int = Field(80, ge=1, le=100, description="quality, integer 1-100")
    progressive: bool = Field(False, description="use progressive (interlace) scan")
    chromaSubsampling: str = Field("4:2:0", pattern=r"^4:(4:4|2:2|2:0)$",
                                   description="'4:4:4' prevents chroma subsampling; default '4:2:0'")
    optimizeCoding: bool = Field(True, description="optimize Huffman coding tables")
    mozjpeg: bool = Field(False, description="accepted; no effect with libjpeg")
    trellisQuantisation: bool = Field(False, description="accepted; no effect with libjpeg")
    overshootDeringing: bool = Field(False, description="accepted; no effect with libjpeg")
    optimizeScans: bool = Field(False, description="accepted; no effect with libjpeg")
    quantisationTable: int = Field(0, ge=0, le=8, description="accepted (0-8); libjpeg's standard table is used")


class WebPOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quality: int = Field(80, ge=1, le=100, description="quality, integer 1-100")
    alphaQuality: int = Field(100, ge=0, le=100, description="quality of the alpha layer, 0-100")
    lossless: bool = Field(False, description="lossless compression")
    nearLossless: bool = Field(False, description="near-lossless compression (lossless with Pillow)")
    smartSubsample: bool = Field(False, description="accepted; no effect with Pillow")
    preset: str = Field("default", pattern=r"^(default|photo|picture|drawing|icon|text)$",
                        description="default, photo, picture, drawing, icon or text; no effect with Pillow")
    effort: int = Field(4, ge=0, le=6, description="CPU effort, 0 (fastest) to 6 (slowest)")


class OutputConversion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(..., pattern=r"^(jpeg|jpg|webp|png)$", description="output format")
    options: dict[str, Any] | None = None

    def encoder_options(self) -> JPEGOptions | WebPOptions | None:
        """The options checked against the format's schema (ValidationError when wrong)."""
        if self.format in ("jpeg", "jpg"):
            return JPEGOptions(**(self.options or {}))
        if self.format == "webp":
            return WebPOptions(**(self.options or {}))
        return None


def parse_conversion(value: Any) -> OutputConversion:
    """``convert_output`` of a request; raises ValueError with a readable message."""
    try:
        conversion = OutputConversion.model_validate(value)
        conversion.encoder_options()
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'convert_output'}: {err['msg']}"
                             for err in e.errors())
        raise ValueError(problems) from None
    return conversion


def convertible(filename: str) -> bool:
    return os.path.splitext(filename)[1].lower() in STILL_IMAGE_EXTS


def convert_image(data: bytes, conversion: OutputConversion) -> bytes | None:
    """One image file's bytes re-encoded; None for an animated image (kept as it is)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if getattr(img, "n_frames", 1) > 1:
            return None
        img.load()
        out = io.BytesIO()
        opts = conversion.encoder_options()
        if isinstance(opts, JPEGOptions):
            rgb = img.convert("RGB") if img.mode not in ("RGB", "L") else img
            subsampling = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[opts.chromaSubsampling]
            kwargs: dict[str, Any] = dict(quality=opts.quality, progressive=opts.progressive,
                                          optimize=opts.optimizeCoding, subsampling=subsampling)
            rgb.save(out, "JPEG", **kwargs)
        elif isinstance(opts, WebPOptions):
            if img.mode not in ("RGB", "RGBA"):
                img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            lossless = opts.lossless or opts.nearLossless
            img.save(out, "WEBP", quality=opts.quality, alpha_quality=opts.alphaQuality, lossless=lossless,
                     method=opts.effort)
        else:
            img.save(out, "PNG")
        return out.getvalue()


def converted_name(filename: str, conversion: OutputConversion) -> str:
    return os.path.splitext(filename)[0] + "." + conversion.format
