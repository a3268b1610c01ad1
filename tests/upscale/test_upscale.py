"""Upscale models: file layouts, output against spandrel's own call, tiling, OOM fallback,
progress and interrupts, the nodes through the engine."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from comfyui.engine import progress
from comfyui.models import memory
from comfyui.models import upscale as up
from comfyui.models.loading import ModelFileError
from comfyui.nodes.builtin import upscale as nodes

from .esrgan_fixtures import write_esrgan


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _spandrel(sd):
    from spandrel import ModelLoader
    return ModelLoader().load_from_state_dict(sd).eval()


@pytest.mark.parametrize("name,layout", [("4x-ESRGAN.pth", "old"), ("RealESRGAN_x4plus.pth", "realesrgan"),
                                         ("4x_new.safetensors", "new")])
def test_loader_node_and_upscale_match_spandrel(workspace, name, layout):
    sd = write_esrgan(os.path.join(workspace, "models", "upscale_models", name), layout=layout)
    assert name in nodes.UpscaleModelLoader.INPUT_TYPES()["required"]["model_name"][0]
    (model,) = nodes.UpscaleModelLoader().load_model(name)
    assert model.scale == 4 and model.architecture.name == "ESRGAN"
    image = torch.rand(2, 20, 28, 3, generator=torch.Generator().manual_seed(1))
    (out,) = nodes.ImageUpscaleWithModel().upscale(model, image)
    assert out.shape == (2, 80, 112, 3) and out.dtype == torch.float32
    ref = _spandrel(sd)  # spandrel's own model call on the whole image, original weights
    for b in range(2):
        want = ref(image[b:b + 1].movedim(-1, 1)).movedim(1, -1)[0]
        torch.testing.assert_close(out[b], want, rtol=1e-4, atol=1e-4)
    assert out.std() > 0.01  # not a constant image


def test_tiles_cover_the_image_evenly():
    pos, length = up.tile_positions(1024, 512, 32)
    assert len(pos) == 3 and pos[0] == 0 and pos[-1] + length == 1024 and length <= 512
    assert all(b - a <= length - 32 for a, b in zip(pos, pos[1:]))
    assert up.tile_positions(300, 512, 32) == ([0], 300)


class _Pointwise:
    """A descriptor-like 'model' without spatial context: tiled output must equal the untiled one."""

    def __init__(self, scale=2, fail_above=None):
        self.scale = scale
        self.model = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.model.weight.copy_(torch.tensor([[0.5, 0.2, 0.1], [0.0, 1.0, 0.0], [0.3, 0.3, 0.3]])[:, :, None, None])
            self.model.bias.fill_(0.05)
        self.fail_above = fail_above
        self.sizes = []

    def to(self, *a, **k):
        self.model.to(*a, **k)
        return self

    def __call__(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        if self.fail_above and max(x.shape[-2:]) > self.fail_above:
            raise torch.OutOfMemoryError("fake OOM")
        return F.interpolate(self.model(x), scale_factor=self.scale, mode="nearest").clamp(0, 1)

    def full(self, image):
        return F.interpolate(self.model(image.movedim(-1, 1)), scale_factor=self.scale, mode="nearest").clamp(0, 1).movedim(1, -1)


def test_tiled_blend_is_exact_for_a_pointwise_model():
    m = _Pointwise()
    image = torch.rand(2, 45, 70, 3, generator=torch.Generator().manual_seed(3))
    out = up.upscale_image(m, image, tile=16, overlap=4)
    assert max(max(s) for s in m.sizes) <= 16 and len(m.sizes) > 10
    torch.testing.assert_close(out, m.full(image), rtol=1e-5, atol=1e-5)


def test_oom_halves_the_tile_and_still_gives_the_full_result():
    m = _Pointwise(fail_above=64)
    image = torch.rand(1, 150, 130, 3, generator=torch.Generator().manual_seed(4))
    out = up.upscale_image(m, image, tile=256, overlap=8)
    assert m.sizes[0] == (150, 130)  # first try: one tile, fails
    assert max(max(s) for s in m.sizes[-4:]) <= 64
    torch.testing.assert_close(out, m.full(image), rtol=1e-5, atol=1e-5)
    m2 = _Pointwise(fail_above=10)
    with pytest.raises(torch.OutOfMemoryError):
        up.upscale_image(m2, image, tile=256, overlap=8)


def test_progress_per_tile_and_interrupt():
    events = []
    ctx = progress.NodeContext("p", "7", "7", "7", None, on_progress=lambda v, t, prev, nid: events.append((v, t)))
    token = progress.set_context(ctx)
    try:
        up.upscale_image(_Pointwise(), torch.rand(1, 40, 40, 3), tile=16, overlap=4)
        assert events[-1][0] == events[-1][1] == len(events) and len(events) >= 9
        m = _Pointwise()
        ctx.interrupt_flag.set()
        with pytest.raises(progress.InterruptProcessingException):
            up.upscale_image(m, torch.rand(1, 40, 40, 3), tile=16, overlap=4)
        assert len(m.sizes) <= 1
    finally:
        progress.reset_context(token)


def test_large_real_model_tiled_matches_untiled_away_from_seams(workspace):
    sd = write_esrgan(os.path.join(workspace, "m.pth"), nb=1)
    model = up.load_upscale_model(os.path.join(workspace, "m.pth"))
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))
    tiled = up.upscale_image(model, image, tile=40, overlap=16)
    full = _spandrel(sd)(image.movedim(-1, 1)).movedim(1, -1)
    assert tiled.shape == full.shape == (1, 256, 256, 3)
    # same network, overlapping tiles: differences only from the limited context at tile borders
    assert (tiled - full).abs().mean() < 0.05 * full.std()
    torch.testing.assert_close(tiled[0, :80, :80], full[0, :80, :80], rtol=1e-3, atol=1e-3)


def test_not_an_upscale_model_is_a_clear_error(workspace):
    p = os.path.join(workspace, "bad.safetensors")
    from safetensors.torch import save_file
    save_file({"foo.weight": torch.zeros(2, 2)}, p)
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        up.load_upscale_model(p)
