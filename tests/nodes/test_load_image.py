import os

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui.nodes.builtin.image import LoadImage, LoadImageMask, LoadImageOutput



def run(node_cls, **kwargs):
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


def _input(workspace, name):
    return os.path.join(workspace, "input", name)


def test_rgba_png_alpha_becomes_inverted_mask(workspace):
    arr = np.zeros((3, 5, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red
    arr[..., 3] = 255  # opaque...
    arr[1, 2, 3] = 0  # ...except one transparent pixel
    arr[2, 4, 3] = 51  # and one 20% opaque
    Image.fromarray(arr, "RGBA").save(_input(workspace, "rgba.png"))

    image, mask = run(LoadImage, image="rgba.png")
    assert image.shape == (1, 3, 5, 3) and image.dtype == torch.float32
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert mask.shape == (1, 3, 5)
    assert mask[0, 0, 0] == 0.0  # opaque -> not masked
    assert mask[0, 1, 2] == 1.0  # transparent -> masked
    assert mask[0, 2, 4] == pytest.approx(0.8)


def test_rgb_without_alpha_gives_64x64_empty_mask(workspace):
    Image.new("RGB", (10, 7), (0, 128, 255)).save(_input(workspace, "rgb.jpg"), quality=100)
    image, mask = run(LoadImage, image="rgb.jpg")
    assert image.shape == (1, 7, 10, 3)
    assert image[0, 3, 3, 2] == pytest.approx(1.0, abs=0.02)
    assert mask.shape == (1, 64, 64) and mask.abs().sum() == 0


def test_palette_transparency_becomes_mask(workspace):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 1
    img.save(_input(workspace, "pal.png"), transparency=1)
    _, mask = run(LoadImage, image="pal.png")
    assert mask.shape == (1, 4, 4)
    assert mask[0, 1, 1] == 1.0 and mask.sum() == 1.0


def test_exif_orientation_is_applied(workspace):
    # 4 wide x 2 high, left half white; orientation 6 = rotate 90 degrees clockwise for display.
    arr = np.zeros((2, 4, 3), dtype=np.uint8)
    arr[:, :2] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(_input(workspace, "rot.png"), exif=exif)
    image, _ = run(LoadImage, image="rot.png")
    assert image.shape == (1, 4, 2, 3)  # now 2 wide x 4 high
    # after a clockwise turn the former left half is the top half
    assert image[0, :2].min() == 1.0 and image[0, 2:].max() == 0.0


def test_animated_gif_becomes_batch(workspace):
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(_input(workspace, "anim.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    image, mask = run(LoadImage, image="anim.gif")
    assert image.shape == (3, 6, 8, 3)
    assert image[0, 0, 0].argmax() == 0 and image[1, 0, 0].argmax() == 1 and image[2, 0, 0].argmax() == 2
    assert mask.shape[0] == 3


def test_multipage_tiff_skips_frames_of_another_size(workspace):
    pages = [Image.new("RGB", (8, 6), (10, 10, 10)), Image.new("RGB", (5, 5), (20, 20, 20)), Image.new("RGB", (8, 6), (30, 30, 30))]
    pages[0].save(_input(workspace, "pages.tiff"), save_all=True, append_images=pages[1:])
    image, mask = run(LoadImage, image="pages.tiff")
    assert image.shape == (2, 6, 8, 3)
    assert image[1, 0, 0, 0] == pytest.approx(30 / 255)
    assert mask.shape == (2, 64, 64)


def test_16bit_greyscale_png_is_scaled(workspace):
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(_input(workspace, "deep.png"))
    with Image.open(_input(workspace, "deep.png")) as im:
        assert im.mode.startswith("I")
    image, _ = run(LoadImage, image="deep.png")
    assert image.shape == (1, 1, 3, 3)
    assert image[0, 0, :, 0].tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-3)
    assert torch.equal(image[..., 0], image[..., 2])


def test_annotated_name_loads_from_output_folder(workspace):
    Image.new("RGB", (3, 3), (255, 255, 255)).save(os.path.join(workspace, "output", "res.png"))
    image, _ = run(LoadImage, image="res.png [output]")
    assert image.shape == (1, 3, 3, 3) and image.min() == 1.0
    assert LoadImageOutput.VALIDATE_INPUTS(image="res.png [output]") is True


def test_validate_and_is_changed(workspace):
    assert LoadImage.VALIDATE_INPUTS(image="missing.png") == "Invalid image file: missing.png"
    path = _input(workspace, "a.png")
    Image.new("RGB", (2, 2), (1, 2, 3)).save(path)
    assert LoadImage.VALIDATE_INPUTS(image="a.png") is True
    h1 = LoadImage.IS_CHANGED(image="a.png")
    assert h1 == LoadImage.IS_CHANGED(image="a.png")
    Image.new("RGB", (2, 2), (9, 9, 9)).save(path)
    assert LoadImage.IS_CHANGED(image="a.png") != h1


def test_missing_or_broken_file_errors_clearly(workspace):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        run(LoadImage, image="nothere.png")
    with open(_input(workspace, "junk.png"), "wb") as f:
        f.write(b"not an image at all")
    with pytest.raises(ValueError, match="junk.png"):
        run(LoadImage, image="junk.png")


def test_input_types_lists_image_files_sorted(workspace):
    for name in ["b.png", "a.webp", "c.jpg"]:
        Image.new("RGB", (2, 2)).save(_input(workspace, name))
    with open(_input(workspace, "notes.txt"), "w") as f:
        f.write("x")
    os.makedirs(_input(workspace, "sub"))
    files, opts = LoadImage.INPUT_TYPES()["required"]["image"]
    assert files == ["a.webp", "b.png", "c.jpg"]
    assert opts == {"image_upload": True}
    assert LoadImageMask.INPUT_TYPES()["required"]["channel"][0] == ["alpha", "red", "green", "blue"]


def test_load_image_mask_channels(workspace):
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[..., 0] = 255
    arr[..., 1] = 51
    arr[..., 3] = 255
    arr[0, 0, 3] = 0
    Image.fromarray(arr, "RGBA").save(_input(workspace, "m.png"))
    (alpha,) = run(LoadImageMask, image="m.png", channel="alpha")
    assert alpha.shape == (1, 2, 2)
    assert alpha[0, 0, 0] == 1.0 and alpha[0, 1, 1] == 0.0  # alpha is inverted
    (red,) = run(LoadImageMask, image="m.png", channel="red")
    assert red.min() == 1.0  # colour channels are not inverted
    (green,) = run(LoadImageMask, image="m.png", channel="green")
    assert green[0, 0, 0] == pytest.approx(0.2)

    Image.new("RGB", (5, 5), (0, 0, 255)).save(_input(workspace, "rgb.png"))
    (no_alpha,) = run(LoadImageMask, image="rgb.png", channel="alpha")
    assert no_alpha.shape == (1, 64, 64) and no_alpha.sum() == 0
    (blue,) = run(LoadImageMask, image="rgb.png", channel="blue")
    assert blue.shape == (1, 5, 5) and blue.min() == 1.0
    assert LoadImageMask.VALIDATE_INPUTS(image="nope.png") == "Invalid image file: nope.png"
