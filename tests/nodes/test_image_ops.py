import pytest
import torch

from comfyui.nodes.builtin.canny import Canny
from comfyui.nodes.builtin.compositing import JoinImageWithAlpha, PorterDuffImageComposite, SplitImageWithAlpha
from comfyui.nodes.builtin.image import (
    EmptyImage,
    ImageBatch,
    ImageInvert,
    ImagePadForOutpaint,
    ImageScale,
    ImageScaleBy,
)
from comfyui.nodes.builtin.image_transform import (
    GetImageSize,
    ImageCrop,
    ImageFlip,
    ImageFromBatch,
    ImageRotate,
    ImageStitch,
    RepeatImageBatch,
    ResizeAndPadImage,
)
from comfyui.nodes.builtin.mask import ImageCompositeMasked
from comfyui.nodes.builtin.postprocessing import (
    BatchImagesNode,
    Blend,
    Blur,
    ImageScaleToTotalPixels,
    Quantize,
    Sharpen,
)


def run(node_cls, **kwargs):
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_image_scale_methods(gradient_image, method):
    (out,) = run(ImageScale, image=gradient_image, upscale_method=method, width=12, height=8, crop="disabled")
    assert out.shape == (1, 8, 12, 3)
    # corners keep their colours (roughly) whatever the filter
    assert out[0, 0, 0].tolist() == pytest.approx(gradient_image[0, 0, 0].tolist(), abs=0.15)
    assert out[0, -1, -1].tolist() == pytest.approx(gradient_image[0, -1, -1].tolist(), abs=0.15)


def test_image_scale_zero_keeps_aspect_and_center_crop(gradient_image):
    (out,) = run(ImageScale, image=gradient_image, upscale_method="nearest-exact", width=12, height=0, crop="disabled")
    assert out.shape == (1, 8, 12, 3)
    (out,) = run(ImageScale, image=gradient_image, upscale_method="nearest-exact", width=0, height=2, crop="disabled")
    assert out.shape == (1, 2, 3, 3)
    (same,) = run(ImageScale, image=gradient_image, upscale_method="bilinear", width=0, height=0, crop="disabled")
    assert same is gradient_image
    # 6x4 -> 4x4 with centre crop drops one column on each side
    (sq,) = run(ImageScale, image=gradient_image, upscale_method="nearest-exact", width=4, height=4, crop="center")
    assert torch.allclose(sq, gradient_image[:, :, 1:5])


def test_scale_by_and_total_pixels(gradient_image):
    (out,) = run(ImageScaleBy, image=gradient_image, upscale_method="bilinear", scale_by=2.5)
    assert out.shape == (1, 10, 15, 3)
    img = torch.rand(1, 64, 128, 3)
    (out,) = run(ImageScaleToTotalPixels, image=img, upscale_method="area", megapixels=0.25)
    h, w = out.shape[1:3]
    assert (h, w) == (362, 724)  # 2:1 kept, ~0.25 * 1024 * 1024 pixels


def test_invert_and_empty_image():
    (img,) = run(EmptyImage, width=3, height=2, batch_size=2, color=0xFF8000)
    assert img.shape == (2, 2, 3, 3)
    assert img[1, 1, 2].tolist() == pytest.approx([1.0, 128 / 255, 0.0])
    (inv,) = run(ImageInvert, image=img)
    assert inv[0, 0, 0].tolist() == pytest.approx([0.0, 127 / 255, 1.0])


def test_image_batch_resizes_second_image(gradient_image):
    other = torch.ones(2, 8, 12, 3)
    (out,) = run(ImageBatch, image1=gradient_image, image2=other)
    assert out.shape == (3, 4, 6, 3)
    assert torch.equal(out[0], gradient_image[0]) and out[1:].min() == 1.0
    rgba = torch.zeros(1, 4, 6, 4)
    (mixed,) = run(ImageBatch, image1=gradient_image, image2=rgba)
    assert mixed.shape == (2, 4, 6, 4) and mixed[0, ..., 3].min() == 1.0


def test_batch_images_node_batches_any_number_like_the_first(gradient_image):
    images = {"image0": gradient_image, "image1": torch.ones(2, 8, 12, 3), "image2": torch.zeros(1, 4, 6, 4)}
    (out,) = BatchImagesNode.execute(images=images).result
    assert out.shape == (4, 4, 6, 4)   # resized to the first, RGB given an opaque alpha
    assert torch.equal(out[0, ..., :3], gradient_image[0]) and out[:3, ..., 3].min() == 1.0
    assert out[1:3, ..., :3].min() == 1.0 and out[3].max() == 0.0
    with pytest.raises(ValueError, match="image1"):
        BatchImagesNode.execute(images={"image0": gradient_image, "image1": torch.ones(8, 12, 3)})


def test_pad_for_outpaint_feathering():
    img = torch.rand(1, 20, 30, 3)
    new, mask = run(ImagePadForOutpaint, image=img, left=8, top=0, right=0, bottom=16, feathering=5)
    assert new.shape == (1, 36, 38, 3) and mask.shape == (1, 36, 38)
    assert torch.equal(new[:, 0:20, 8:38], img)
    assert new[0, 30, 0].tolist() == [0.5, 0.5, 0.5]  # padding is mid grey
    assert mask[0, 25, 20] == 1.0 and mask[0, 10, 3] == 1.0  # padded area fully masked
    # inside: ((feathering - d) / feathering) ** 2 with d = distance to a padded edge
    assert mask[0, 10, 8] == pytest.approx(1.0)          # d=0 at the left edge
    assert mask[0, 10, 8 + 2] == pytest.approx((3 / 5) ** 2)
    assert mask[0, 19, 20] == pytest.approx((4 / 5) ** 2)  # d = 20 - 19 = 1 from the bottom edge
    assert mask[0, 0, 20] == 0.0  # top has no padding -> no feathering there
    assert mask[0, 10, 8 + 5] == 0.0
    # feathering too large for the image: no feather at all
    _, m2 = run(ImagePadForOutpaint, image=img, left=8, top=0, right=0, bottom=0, feathering=10)
    assert m2[0, :, 8:].max() == 0.0


def test_crop_batch_and_transforms(gradient_image):
    (c,) = run(ImageCrop, image=gradient_image, width=2, height=3, x=4, y=1)
    assert torch.equal(c, gradient_image[:, 1:4, 4:6])
    (edge,) = run(ImageCrop, image=gradient_image, width=5, height=5, x=100, y=100)
    assert edge.shape == (1, 1, 1, 3)  # origin clamped to the last pixel
    (rep,) = run(RepeatImageBatch, image=gradient_image, amount=3)
    assert rep.shape == (3, 4, 6, 3)
    batch = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 2, 2, 3)
    (sub,) = run(ImageFromBatch, image=batch, batch_index=3, length=4)
    assert sub[:, 0, 0, 0].tolist() == [3.0, 4.0]
    (last,) = run(ImageFromBatch, image=batch, batch_index=4000, length=1)
    assert last[:, 0, 0, 0].tolist() == [4.0]
    (rot,) = run(ImageRotate, image=gradient_image, rotation="90 degrees")
    assert rot.shape == (1, 6, 4, 3)
    assert torch.equal(rot[0, 0, -1], gradient_image[0, 0, 0])  # clockwise: top-left goes top-right
    (fl,) = run(ImageFlip, image=gradient_image, flip_method="y-axis: horizontally")
    assert torch.equal(fl[0, :, 0], gradient_image[0, :, -1])
    assert run(GetImageSize, image=rep) == (6, 4, 3)
    (pad,) = run(ResizeAndPadImage, image=gradient_image, target_width=12, target_height=12, padding_color="white", interpolation="bilinear")
    assert pad.shape == (1, 12, 12, 3) and pad[0, 0, 0].tolist() == [1.0, 1.0, 1.0]


def test_image_stitch():
    a = torch.zeros(1, 4, 6, 3)
    b = torch.ones(2, 8, 4, 3)
    (right,) = run(ImageStitch, image1=a, direction="right", match_image_size=True, spacing_width=0, spacing_color="white", image2=b)
    assert right.shape == (2, 4, 8, 3)  # b scaled to height 4 -> width 2; batch padded with a's last
    assert right[:, :, :6].max() == 0.0 and right[:, :, 6:].min() > 0.9
    (up,) = run(ImageStitch, image1=a, direction="up", match_image_size=False, spacing_width=3, spacing_color="red", image2=b)
    # widths padded to 6, spacing rounded up to 4 rows, image2 on top
    assert up.shape == (2, 8 + 4 + 4, 6, 3)
    assert up[0, 9, 0].tolist() == [1.0, 0.0, 0.0]
    assert up[0, 0, 0].tolist() == [0.0, 0.0, 0.0] and up[0, 0, 2].tolist() == [1.0, 1.0, 1.0]
    (alone,) = run(ImageStitch, image1=a, direction="left", match_image_size=True, spacing_width=0, spacing_color="white")
    assert alone is a


def test_composite_masked():
    dst = torch.zeros(1, 6, 6, 3)
    src = torch.ones(1, 2, 2, 3)
    (out,) = run(ImageCompositeMasked, destination=dst, source=src, x=3, y=1, resize_source=False)
    assert out[0, 1:3, 3:5].min() == 1.0 and out.sum() == 12
    assert dst.sum() == 0  # input untouched
    mask = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
    (out,) = run(ImageCompositeMasked, destination=dst, source=src, x=5, y=0, resize_source=False, mask=mask)
    assert out[0, 0, 5, 0] == 1.0 and out[0, 1, 5, 0] == 0.5 and out.sum() == 4.5  # clipped at the edge
    (full,) = run(ImageCompositeMasked, destination=dst, source=src, x=0, y=0, resize_source=True)
    assert full.min() == 1.0


def test_blend_modes():
    a = torch.full((1, 2, 2, 3), 0.4)
    b = torch.full((1, 2, 2, 3), 0.5)
    expected = {"normal": 0.5, "multiply": 0.2, "screen": 0.7, "overlay": 0.4, "difference": 0.0}
    for mode, v in expected.items():
        (out,) = run(Blend, image1=a, image2=b, blend_factor=1.0, blend_mode=mode)
        assert out[0, 0, 0, 0].item() == pytest.approx(v, abs=1e-6), mode
    (half,) = run(Blend, image1=a, image2=torch.ones(1, 4, 4, 3), blend_factor=0.5, blend_mode="normal")
    assert half.shape == a.shape and half[0, 0, 0, 0].item() == pytest.approx(0.7)


def test_blur_and_sharpen():
    flat = torch.full((1, 8, 8, 3), 0.3)
    (b,) = run(Blur, image=flat, blur_radius=3, sigma=1.0)
    assert torch.allclose(b, flat, atol=1e-6)
    dot = torch.zeros(1, 9, 9, 1)
    dot[0, 4, 4] = 1.0
    (b,) = run(Blur, image=dot, blur_radius=1, sigma=1.0)
    assert b.shape == dot.shape
    assert b.sum().item() == pytest.approx(1.0, abs=1e-5) and 0 < b[0, 4, 4, 0] < 1 and b[0, 3, 4, 0] > 0
    (s,) = run(Sharpen, image=flat, sharpen_radius=2, sigma=1.0, alpha=1.0)
    assert torch.allclose(s, flat, atol=1e-5)
    step = torch.zeros(1, 6, 6, 3)
    step[:, :, 3:] = 0.6
    (s,) = run(Sharpen, image=step, sharpen_radius=1, sigma=1.0, alpha=1.0)
    assert s[0, 2, 3, 0] > 0.6 and s[0, 2, 2, 0] == 0.0  # overshoot on the bright side, clamped dark side


def test_quantize_limits_colours():
    img = torch.rand(1, 16, 16, 3)
    for dither in ["none", "floyd-steinberg", "bayer-4"]:
        (q,) = run(Quantize, image=img, colors=4, dither=dither)
        assert q.shape == img.shape
        assert len(torch.unique(q.reshape(-1, 3), dim=0)) <= 4


def test_split_and_join_alpha():
    rgba = torch.rand(2, 3, 4, 4)
    rgb, mask = run(SplitImageWithAlpha, image=rgba)
    assert torch.equal(rgb, rgba[..., :3]) and torch.allclose(mask, 1 - rgba[..., 3])
    (joined,) = run(JoinImageWithAlpha, image=rgb, alpha=mask)
    assert torch.allclose(joined, rgba, atol=1e-6)
    _, opaque = run(SplitImageWithAlpha, image=rgb)
    assert opaque.abs().max() == 0
    (resized,) = run(JoinImageWithAlpha, image=rgb, alpha=torch.ones(1, 6, 8))
    assert resized.shape == (1, 3, 4, 4) and resized[..., 3].max() == 0


def test_porter_duff_src_over():
    src = torch.ones(1, 2, 2, 3)
    dst = torch.zeros(1, 2, 2, 3)
    src_mask = torch.tensor([[[0.0, 1.0], [0.5, 1.0]]])  # 1 = transparent
    dst_mask = torch.zeros(1, 2, 2)
    img, m = run(PorterDuffImageComposite, source=src, source_alpha=src_mask, destination=dst,
                 destination_alpha=dst_mask, mode="SRC_OVER")
    assert img[0, 0, 0, 0] == 1.0 and img[0, 0, 1, 0] == 0.0 and img[0, 1, 0, 0] == pytest.approx(0.5)
    assert m.abs().max() == 0


def test_canny_finds_square_outline():
    # A one-pixel half-step border puts each edge's gradient peak on a pixel centre: a sharp step
    # between two pixels gives both the same magnitude, and which one survives non-maximum
    # suppression (strict, as kornia's) would then depend on float rounding.
    img = torch.zeros(1, 32, 32, 3)
    img[:, 7:25, 7:25] = 0.5
    img[:, 8:24, 8:24] = 1.0
    (edges,) = run(Canny, image=img, low_threshold=0.4, high_threshold=0.8)
    assert edges.shape == (1, 32, 32, 3)
    assert set(torch.unique(edges).tolist()) <= {0.0, 1.0}
    e = edges[0, ..., 0]
    assert e[16, 6:10].sum() >= 1 and e[16, 22:26].sum() >= 1  # left and right sides
    assert e[6:10, 16].sum() >= 1 and e[22:26, 16].sum() >= 1  # top and bottom
    assert e[12:20, 12:20].sum() == 0 and e[:3, :3].sum() == 0  # flat areas have none
    assert e[16, :].sum() <= 4  # thin edges after non-maximum suppression
    (none,) = run(Canny, image=torch.full((1, 16, 16, 3), 0.5), low_threshold=0.1, high_threshold=0.2)
    assert none.sum() == 0
    with pytest.raises(ValueError):
        run(Canny, image=img, low_threshold=0.9, high_threshold=0.2)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        run(ImageScale, image=torch.zeros(4, 4), upscale_method="bilinear", width=2, height=2, crop="disabled")
    with pytest.raises(ValueError, match="upscale method"):
        run(ImageScale, image=torch.zeros(1, 4, 4, 3), upscale_method="magic", width=2, height=2, crop="disabled")
