import pytest
import torch

from comfyui.nodes.builtin.mask import (
    CropMask,
    FeatherMask,
    GrowMask,
    ImageColorToMask,
    ImageToMask,
    InvertMask,
    MaskComposite,
    MaskToImage,
    SolidMask,
    ThresholdMask,
)


def run(node_cls, **kwargs):
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


def test_solid_invert_threshold():
    (m,) = run(SolidMask, value=0.25, width=5, height=3)
    assert m.shape == (1, 3, 5) and m.max() == 0.25 and m.min() == 0.25
    (inv,) = run(InvertMask, mask=m)
    assert inv.min() == 0.75
    (t,) = run(ThresholdMask, mask=torch.tensor([[[0.2, 0.5, 0.51]]]), value=0.5)
    assert t.tolist() == [[[0.0, 0.0, 1.0]]]


def test_crop_mask_accepts_2d_and_3d():
    m = torch.arange(20, dtype=torch.float32).view(4, 5)
    (c,) = run(CropMask, mask=m, x=1, y=2, width=3, height=10)
    assert c.shape == (1, 2, 3) and c[0, 0, 0] == 11.0


def test_image_mask_conversions():
    img = torch.zeros(2, 2, 3, 4)
    img[..., 1] = 0.5
    img[..., 3] = 0.25
    (g,) = run(ImageToMask, image=img, channel="green")
    assert g.shape == (2, 2, 3) and g.max() == 0.5
    (a,) = run(ImageToMask, image=img, channel="alpha")
    assert a.min() == 0.25
    with pytest.raises(ValueError, match="alpha"):
        run(ImageToMask, image=img[..., :3], channel="alpha")
    (back,) = run(MaskToImage, mask=g)
    assert back.shape == (2, 2, 3, 3) and torch.equal(back[..., 0], g) and torch.equal(back[..., 2], g)
    (single,) = run(MaskToImage, mask=torch.ones(4, 5))
    assert single.shape == (1, 4, 5, 3)


def test_image_color_to_mask():
    img = torch.zeros(1, 2, 2, 3)
    img[0, 0, 1] = torch.tensor([1.0, 128 / 255, 0.0])
    (m,) = run(ImageColorToMask, image=img, color=0xFF8000)
    assert m.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]


@pytest.mark.parametrize(
    "op,expected",
    [
        ("multiply", [0.6 * 0.8, 0.0]),
        ("add", [1.0, 0.8]),  # clamped to 1
        ("subtract", [0.0, 0.0]),
        ("and", [1.0, 0.0]),
        ("or", [1.0, 1.0]),
        ("xor", [0.0, 1.0]),
    ],
)
def test_mask_composite_operations(op, expected):
    dst = torch.tensor([[[0.6, 0.0, 0.3]]])  # 1x3
    src = torch.tensor([[[0.8, 0.8]]])  # 1x2, placed at x=0
    (out,) = run(MaskComposite, destination=dst, source=src, x=0, y=0, operation=op)
    assert out[0, 0, :2].tolist() == pytest.approx(expected)
    assert out[0, 0, 2] == pytest.approx(0.3)  # outside the source: unchanged


def test_mask_composite_offset_clips_to_destination():
    dst = torch.zeros(1, 4, 4)
    src = torch.ones(1, 3, 3)
    (out,) = run(MaskComposite, destination=dst, source=src, x=2, y=3, operation="add")
    assert out.sum() == 2 and out[0, 3, 2:].tolist() == [1.0, 1.0]
    (none,) = run(MaskComposite, destination=dst, source=src, x=10, y=10, operation="add")
    assert none.sum() == 0


def test_feather_mask_ramps():
    m = torch.ones(1, 6, 8)
    (out,) = run(FeatherMask, mask=m, left=4, top=0, right=2, bottom=3)
    row = out[0, 0]
    assert row[:4].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert row[-2:].tolist() == pytest.approx([1.0, 0.5])  # outermost right column is 1/2
    col = out[0, :, 5]
    assert col[-3:].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert out[0, -1, 0].item() == pytest.approx(0.25 / 3)  # corners multiply
    assert m.min() == 1.0  # input untouched


def test_grow_mask_tapered_and_square():
    m = torch.zeros(1, 7, 7)
    m[0, 3, 3] = 1.0
    (cross,) = run(GrowMask, mask=m, expand=1, tapered_corners=True)
    assert cross.sum() == 5 and cross[0, 2, 2] == 0
    (square,) = run(GrowMask, mask=m, expand=1, tapered_corners=False)
    assert square.sum() == 9 and square[0, 2, 2] == 1
    (diamond,) = run(GrowMask, mask=m, expand=2, tapered_corners=True)
    assert diamond.sum() == 13
    (shrunk,) = run(GrowMask, mask=square, expand=-1, tapered_corners=False)
    assert torch.equal(shrunk, m)
    (same,) = run(GrowMask, mask=m, expand=0, tapered_corners=True)
    assert torch.equal(same, m)
    # erosion does not eat the mask from the image border (border pixels repeat outward)
    (full,) = run(GrowMask, mask=torch.ones(1, 4, 4), expand=-1, tapered_corners=True)
    assert full.min() == 1.0
