"""The built-in packs expose ComfyUI's node names, display names, categories and input specs,
so existing workflow JSON (UI and API format) keeps working."""
import importlib

import pytest

# class_type: (module, display name, category, output node) as in ComfyUI 0.3.64
EXPECTED = {
    "SaveImage": ("image", "Save Image", "image", True),
    "PreviewImage": ("image", "Preview Image", "image", True),
    "LoadImage": ("image", "Load Image", "image", False),
    "LoadImageMask": ("image", "Load Image (as Mask)", "mask", False),
    "LoadImageOutput": ("image", "Load Image (from Outputs)", "image", False),
    "WebcamCapture": ("image", "Webcam Capture", "image", False),
    "ImageScale": ("image", "Upscale Image", "image/upscaling", False),
    "ImageScaleBy": ("image", "Upscale Image By", "image/upscaling", False),
    "ImageInvert": ("image", "Invert Image", "image", False),
    "ImageBatch": ("image", "Batch Images", "image", False),
    "ImagePadForOutpaint": ("image", "Pad Image for Outpainting", "image", False),
    "EmptyImage": ("image", "EmptyImage", "image", False),
    "ImageCompositeMasked": ("mask", "ImageCompositeMasked", "image", False),
    "MaskToImage": ("mask", "Convert Mask to Image", "mask", False),
    "ImageToMask": ("mask", "Convert Image to Mask", "mask", False),
    "ImageColorToMask": ("mask", "ImageColorToMask", "mask", False),
    "SolidMask": ("mask", "SolidMask", "mask", False),
    "InvertMask": ("mask", "InvertMask", "mask", False),
    "CropMask": ("mask", "CropMask", "mask", False),
    "MaskComposite": ("mask", "MaskComposite", "mask", False),
    "FeatherMask": ("mask", "FeatherMask", "mask", False),
    "GrowMask": ("mask", "GrowMask", "mask", False),
    "ThresholdMask": ("mask", "ThresholdMask", "mask", False),
    "MaskPreview": ("mask", "MaskPreview", "mask", True),
    "ImageBlend": ("postprocessing", "Image Blend", "image/postprocessing", False),
    "ImageBlur": ("postprocessing", "Image Blur", "image/postprocessing", False),
    "ImageQuantize": ("postprocessing", "Image Quantize", "image/postprocessing", False),
    "ImageSharpen": ("postprocessing", "Image Sharpen", "image/postprocessing", False),
    "ImageScaleToTotalPixels": ("postprocessing", "Scale Image to Total Pixels", "image/upscaling", False),
    "ImageCrop": ("image_transform", "Image Crop", "image/transform", False),
    "RepeatImageBatch": ("image_transform", "RepeatImageBatch", "image/batch", False),
    "ImageFromBatch": ("image_transform", "ImageFromBatch", "image/batch", False),
    "RebatchImages": ("image_transform", "Rebatch Images", "image/batch", False),
    "Morphology": ("morphology", "ImageMorphology", "image/postprocessing", False),
    "ImageRGBToYUV": ("morphology", "ImageRGBToYUV", "image/batch", False),
    "ImageYUVToRGB": ("morphology", "ImageYUVToRGB", "image/batch", False),
    "ImageAddNoise": ("image_transform", "ImageAddNoise", "image", False),
    "SaveAnimatedWEBP": ("image_transform", "SaveAnimatedWEBP", "image/animation", True),
    "SaveAnimatedPNG": ("image_transform", "SaveAnimatedPNG", "image/animation", True),
    "ImageStitch": ("image_transform", "Image Stitch", "image/transform", False),
    "ResizeAndPadImage": ("image_transform", "ResizeAndPadImage", "image/transform", False),
    "GetImageSize": ("image_transform", "Get Image Size", "image", False),
    "ImageRotate": ("image_transform", "ImageRotate", "image/transform", False),
    "ImageFlip": ("image_transform", "ImageFlip", "image/transform", False),
    "ImageScaleToMaxDimension": ("image_transform", "ImageScaleToMaxDimension", "image/upscaling", False),
    "PorterDuffImageComposite": ("compositing", "Porter-Duff Image Composite", "mask/compositing", False),
    "SplitImageWithAlpha": ("compositing", "Split Image with Alpha", "mask/compositing", False),
    "JoinImageWithAlpha": ("compositing", "Join Image with Alpha", "mask/compositing", False),
    "Canny": ("canny", "Canny", "image/preprocessors", False),
    "PrimitiveString": ("primitives", "String", "utils/primitive", False),
    "PrimitiveStringMultiline": ("primitives", "String (Multiline)", "utils/primitive", False),
    "PrimitiveInt": ("primitives", "Int", "utils/primitive", False),
    "PrimitiveFloat": ("primitives", "Float", "utils/primitive", False),
    "PrimitiveBoolean": ("primitives", "Boolean", "utils/primitive", False),
    "PreviewAny": ("preview", "Preview Any", "utils", True),
    "StringConcatenate": ("strings", "Concatenate", "utils/string", False),
    "StringSubstring": ("strings", "Substring", "utils/string", False),
    "StringLength": ("strings", "Length", "utils/string", False),
    "CaseConverter": ("strings", "Case Converter", "utils/string", False),
    "StringTrim": ("strings", "Trim", "utils/string", False),
    "StringReplace": ("strings", "Replace", "utils/string", False),
    "StringContains": ("strings", "Contains", "utils/string", False),
    "StringCompare": ("strings", "Compare", "utils/string", False),
    "RegexMatch": ("strings", "Regex Match", "utils/string", False),
    "RegexExtract": ("strings", "Regex Extract", "utils/string", False),
    "RegexReplace": ("strings", "Regex Replace", "utils/string", False),
}


def _mod(name):
    return importlib.import_module(f"comfyui.nodes.builtin.{name}")


@pytest.mark.parametrize("class_type", sorted(EXPECTED))
def test_node_identity(class_type, workspace):
    module, display, category, output_node = EXPECTED[class_type]
    mod = _mod(module)
    cls = mod.NODE_CLASS_MAPPINGS[class_type]
    assert mod.NODE_DISPLAY_NAME_MAPPINGS.get(class_type, class_type) == display
    assert cls.CATEGORY == category
    assert bool(getattr(cls, "OUTPUT_NODE", False)) == output_node
    # classic API contract: INPUT_TYPES dict, FUNCTION is a method, RETURN_TYPES a tuple
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    assert callable(getattr(cls, cls.FUNCTION))
    assert isinstance(cls.RETURN_TYPES, tuple)
    names = getattr(cls, "RETURN_NAMES", None)
    assert names is None or len(names) == len(cls.RETURN_TYPES)


def _inputs(module, class_type):
    spec = _mod(module).NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    return {**spec.get("required", {}), **spec.get("optional", {})}


def test_key_input_specs(workspace):
    scale = _inputs("image", "ImageScale")
    assert scale["upscale_method"][0] == ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    assert scale["width"] == ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1})
    assert scale["crop"][0] == ["disabled", "center"]
    pad = _inputs("image", "ImagePadForOutpaint")
    assert pad["left"][1]["step"] == 8 and pad["feathering"][1] == {"default": 40, "min": 0, "max": 16384, "step": 1}
    assert _inputs("image", "ImageScaleBy")["scale_by"][1] == {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}
    assert _inputs("mask", "GrowMask")["expand"][1]["min"] == -16384
    assert _inputs("mask", "MaskComposite")["operation"][0] == ["multiply", "add", "subtract", "and", "or", "xor"]
    assert _inputs("mask", "ImageCompositeMasked")["resize_source"] == ("BOOLEAN", {"default": False})
    assert _inputs("canny", "Canny")["low_threshold"][1] == {"default": 0.4, "min": 0.01, "max": 0.99, "step": 0.01}
    assert _inputs("postprocessing", "ImageBlend")["blend_mode"][0] == ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
    assert _inputs("postprocessing", "ImageQuantize")["dither"][0][-1] == "bayer-16"
    stitch = _inputs("image_transform", "ImageStitch")
    assert list(stitch) == ["image1", "direction", "match_image_size", "spacing_width", "spacing_color", "image2"]
    assert _inputs("image_transform", "ImageFromBatch")["batch_index"][1] == {"default": 0, "min": 0, "max": 4095}
    save = _mod("image").SaveImage.INPUT_TYPES()
    assert save["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert save["required"]["filename_prefix"][1]["default"] == "ComfyUI"
