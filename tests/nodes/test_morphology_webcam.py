import os

import pytest
import torch
from PIL import Image

from comfyui.nodes.builtin.image import WebcamCapture
from comfyui.nodes.builtin.image_transform import RebatchImages
from comfyui.nodes.builtin.morphology import ImageRGBToYUV, ImageYUVToRGB, Morphology


def run(node_cls, **kwargs):
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


def _dot(size=9):
    img = torch.zeros(1, size, size, 3)
    img[0, size // 2, size // 2] = 1.0
    return img


def test_dilate_erode_open_close():
    (d,) = run(Morphology, image=_dot(), operation="dilate", kernel_size=3)
    assert d[0, ..., 0].sum() == 9 and d[0, 3:6, 3:6].min() == 1.0
    (e,) = run(Morphology, image=d, operation="erode", kernel_size=3)
    assert torch.equal(e, _dot())
    (o,) = run(Morphology, image=_dot(), operation="open", kernel_size=3)
    assert o.sum() == 0  # a single pixel does not survive opening
    holed = torch.ones(1, 9, 9, 3)
    holed[0, 4, 4] = 0.0
    (c,) = run(Morphology, image=holed, operation="close", kernel_size=3)
    assert c.min() == 1.0  # a one-pixel hole is closed
    # borders never win: eroding an all-white image keeps it white
    (w,) = run(Morphology, image=torch.ones(1, 5, 5, 3), operation="erode", kernel_size=5)
    assert w.min() == 1.0


def test_gradient_and_hats():
    sq = torch.zeros(1, 11, 11, 1)
    sq[0, 3:8, 3:8] = 1.0
    (g,) = run(Morphology, image=sq, operation="gradient", kernel_size=3)
    assert g[0, 5, 5, 0] == 0 and g[0, 3, 5, 0] == 1 and g[0, 2, 5, 0] == 1 and g[0, 0, 0, 0] == 0
    (th,) = run(Morphology, image=_dot(), operation="top_hat", kernel_size=3)
    assert torch.equal(th, _dot())  # the dot is smaller than the kernel
    (bh,) = run(Morphology, image=torch.ones(1, 9, 9, 3) - _dot(), operation="bottom_hat", kernel_size=3)
    assert torch.equal(bh, _dot())
    with pytest.raises(ValueError, match="operation"):
        run(Morphology, image=_dot(), operation="blur", kernel_size=3)


def test_even_kernel_anchor():
    (d,) = run(Morphology, image=_dot(), operation="dilate", kernel_size=4)
    rows = d[0, :, 4, 0].nonzero().flatten().tolist()
    assert rows == [3, 4, 5, 6]  # window spans 2 before / 1 after the anchor, so the dot spreads 1 up, 2 down


def test_yuv_round_trip():
    img = torch.rand(2, 4, 5, 3)
    y, u, v = run(ImageRGBToYUV, image=img)
    assert y.shape == img.shape and torch.equal(y[..., 0], y[..., 2])
    assert y[0, 0, 0, 0].item() == pytest.approx((0.299 * img[0, 0, 0, 0] + 0.587 * img[0, 0, 0, 1] + 0.114 * img[0, 0, 0, 2]).item())
    grey_u = run(ImageRGBToYUV, image=torch.full((1, 2, 2, 3), 0.3))[1]
    assert grey_u.flatten()[0].item() == pytest.approx(0.5)  # no chroma for greys
    (back,) = run(ImageYUVToRGB, Y=y, U=u, V=v)
    assert torch.allclose(back, img, atol=2e-3)


def test_rebatch_images():
    a = torch.zeros(3, 2, 2, 3)
    b = torch.ones(2, 2, 2, 3)
    (out,) = run(RebatchImages, images=[a, b], batch_size=[2])
    assert [t.shape[0] for t in out] == [2, 2, 1]
    assert out[1][0].max() == 0 and out[1][1].min() == 1
    with pytest.raises(ValueError, match="same size"):
        run(RebatchImages, images=[a, torch.zeros(1, 3, 3, 3)], batch_size=[4])


def test_webcam_capture_loads_snapshot(workspace):
    os.makedirs(os.path.join(workspace, "temp", "webcam"))
    Image.new("RGB", (6, 4), (0, 255, 0)).save(os.path.join(workspace, "temp", "webcam", "snap.png"))
    name = "webcam/snap.png [temp]"
    assert WebcamCapture.VALIDATE_INPUTS(image=name) is True
    out = run(WebcamCapture, image=name, width=0, height=0, capture_on_queue=True)
    assert len(out) == 1 and out[0].shape == (1, 4, 6, 3) and out[0][0, 0, 0, 1] == 1.0
    assert WebcamCapture.IS_CHANGED(image=name, width=0, height=0, capture_on_queue=True)
