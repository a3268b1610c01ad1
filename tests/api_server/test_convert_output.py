"""convert_output: PNG (default), JPEG and WebP with the seed's options, done off the loop."""
from __future__ import annotations

import io

from PIL import Image

from api_helpers import decode_image, image_prompt


async def test_jpeg_conversion_with_options(api):
    status, out = await api.post({"id": "j", "prompt": image_prompt(0x336699, 32, 16),
                                  "convert_output": {"format": "jpeg", "options": {"quality": 90, "progressive": True,
                                                                                   "chromaSubsampling": "4:4:4"}}})
    assert status == 200, out
    assert out["filenames"][0].endswith(".jpeg")
    img = decode_image(out["images"][0])
    assert img.format == "JPEG" and img.size == (32, 16)
    assert img.info.get("progressive") == 1 or img.info.get("progression") == 1
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(img) == 0  # 4:4:4
    r, g, b = img.getpixel((5, 5))
    assert abs(r - 0x33) <= 3 and abs(g - 0x66) <= 3 and abs(b - 0x99) <= 3
    assert out["convert_output"]["options"]["quality"] == 90  # the request round-trips


async def test_jpeg_quality_changes_the_size_and_default_subsampling_is_420(api):
    from PIL import JpegImagePlugin

    sizes = {}
    for q in (10, 95):
        status, out = await api.post({"prompt": _noise_prompt(), "convert_output": {"format": "jpg",
                                                                                  "options": {"quality": q}}})
        assert status == 200, out
        img = decode_image(out["images"][0])
        assert JpegImagePlugin.get_sampling(img) == 2  # 4:2:0
        sizes[q] = len(out["images"][0])
    assert sizes[10] < sizes[95] / 2


async def test_webp_lossy_and_lossless(api):
    status, out = await api.post({"prompt": _noise_prompt(), "convert_output": {"format": "webp"}})
    assert status == 200, out
    lossy = decode_image(out["images"][0])
    assert lossy.format == "WEBP" and out["filenames"][0].endswith(".webp")
    status, out = await api.post({"prompt": _noise_prompt(), "convert_output": {
        "format": "webp", "options": {"lossless": True, "effort": 6}}})
    lossless = decode_image(out["images"][0])
    status, png = await api.post({"prompt": _noise_prompt()})
    original = decode_image(png["images"][0]).convert("RGB")
    assert lossless.convert("RGB").tobytes() == original.tobytes()
    assert lossy.convert("RGB").tobytes() != original.tobytes()


async def test_png_default_and_unknown_option_is_400(api):
    status, out = await api.post({"prompt": image_prompt()})
    assert decode_image(out["images"][0]).format == "PNG"
    status, out = await api.post({"prompt": image_prompt(), "convert_output": {"format": "webp",
                                                                               "options": {"qualty": 5}}})
    assert status == 400 and "qualty" in out["error"]["details"]


def test_animated_images_and_non_images_pass_through():
    from comfyui.api_server.convert import convert_image, convertible, parse_conversion

    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:])
    conversion = parse_conversion({"format": "jpeg"})
    assert convert_image(buf.getvalue(), conversion) is None
    assert not convertible("clip.mp4") and not convertible("sound.flac") and convertible("a.PNG")


def _noise_prompt() -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": _NOISE_B64}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


def _noise_png() -> str:
    import base64
    import random

    rng = random.Random(0)
    img = Image.new("RGB", (64, 64))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(64 * 64)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


_NOISE_B64 = _noise_png()


async def test_video_and_animated_outputs_come_back_as_files_unconverted(api):
    import av

    prompt = image_prompt(0x00FF00, 16, 16)
    prompt["5"] = {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 0xFF}}
    prompt["6"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["5", 0]}}  # 3 frames
    prompt["3"] = {"class_type": "SaveWEBM", "inputs": {"images": ["6", 0], "filename_prefix": "v", "codec": "vp9",
                                                        "fps": 8.0, "crf": 32.0}}
    prompt["4"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["6", 0], "filename_prefix": "a",
                                                                "fps": 6.0, "lossless": True, "quality": 80,
                                                                "method": "default"}}
    status, out = await api.post({"id": "vid", "prompt": prompt, "convert_output": {"format": "jpeg"}})
    assert status == 200, out
    by_ext = {name.rsplit(".", 1)[1]: b64 for name, b64 in zip(out["filenames"], out["images"])}
    assert set(by_ext) == {"jpeg", "webm", "webp"}  # the still image converted, the rest as they came
    import base64

    with av.open(io.BytesIO(base64.b64decode(by_ext["webm"]))) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    animated = decode_image(by_ext["webp"])
    assert animated.n_frames >= 2  # still animated (libwebp may merge the two equal frames)
