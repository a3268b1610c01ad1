import pytest
import torch

from comfyui.nodes.builtin import latent as L


def lat(t, **kw):
    return {"samples": t, **kw}


def test_empty_latent_image():
    (out,) = L.EmptyLatentImage().generate(512, 768, 3)
    assert out["samples"].shape == (3, 4, 96, 64)
    assert torch.count_nonzero(out["samples"]) == 0
    assert L.EmptyLatentImage.INPUT_TYPES()["required"]["width"][1]["default"] == 512


@pytest.mark.parametrize("method", L.UPSCALE_METHODS)
def test_latent_upscale_methods(method):
    x = torch.randn(2, 4, 8, 12)
    (out,) = L.LatentUpscale().upscale(lat(x), method, 192, 128, "disabled")
    assert out["samples"].shape == (2, 4, 16, 24)
    (by,) = L.LatentUpscaleBy().upscale(lat(x), method, 1.5)
    assert by["samples"].shape == (2, 4, 12, 18)
    # upscaling a constant latent keeps it constant
    (c,) = L.LatentUpscaleBy().upscale(lat(torch.full((1, 4, 4, 4), 0.7)), method, 2.0)
    assert torch.allclose(c["samples"], torch.tensor(0.7), atol=1e-5)


def test_latent_upscale_zero_dims_and_crop():
    x = torch.randn(1, 4, 8, 16)
    (same,) = L.LatentUpscale().upscale(lat(x), "bilinear", 0, 0, "disabled")
    assert same["samples"] is x
    (w0,) = L.LatentUpscale().upscale(lat(x), "bilinear", 0, 128, "disabled")
    assert w0["samples"].shape == (1, 4, 16, 32)
    (crop,) = L.LatentUpscale().upscale(lat(x), "nearest-exact", 64, 64, "center")
    assert crop["samples"].shape == (1, 4, 8, 8)
    torch.testing.assert_close(crop["samples"], x[..., 4:12])


def test_bislerp_preserves_norm_between_orthogonal_vectors():
    a = torch.zeros(1, 2, 1, 2)
    a[0, 0, 0, 0] = 1.0
    a[0, 1, 0, 1] = 1.0
    out = L.bislerp(a, 3, 1)
    v = out[0, :, 0, 1]
    # a slerp keeps unit norm where a lerp would give 1/sqrt(2)
    assert float(torch.linalg.vector_norm(v)) == pytest.approx(1.0, abs=1e-4)
    assert float(v[0]) == pytest.approx(float(v[1]), abs=1e-4)


def test_latent_composite_and_feather():
    to = torch.zeros(1, 4, 16, 16)
    src = torch.ones(1, 4, 8, 8)
    (out,) = L.LatentComposite().composite(lat(to), lat(src), 32, 16, feather=0)
    s = out["samples"]
    assert torch.all(s[:, :, 2:10, 4:12] == 1) and float(s.sum()) == 4 * 64
    assert torch.count_nonzero(to) == 0
    (f,) = L.LatentComposite().composite(lat(to), lat(src), 32, 16, feather=16)
    s = f["samples"]
    assert float(s[0, 0, 2, 4]) == pytest.approx(0.25)  # corner: two ramps of 1/2
    assert float(s[0, 0, 5, 7]) == pytest.approx(1.0)
    # source hanging over the edge is clipped
    (edge,) = L.LatentComposite().composite(lat(to), lat(src), 96, 96, feather=0)
    assert float(edge["samples"][0, 0].sum()) == 16


def test_latent_composite_masked():
    dst = torch.zeros(1, 4, 8, 8)
    src = torch.ones(1, 4, 8, 8)
    mask = torch.zeros(1, 8, 8)
    mask[:, :, :4] = 1.0
    (out,) = L.LatentCompositeMasked().composite(lat(dst), lat(src), 0, 0, False, mask=mask)
    assert torch.all(out["samples"][..., :4] == 1) and torch.all(out["samples"][..., 4:] == 0)
    (off,) = L.LatentCompositeMasked().composite(lat(dst), lat(torch.ones(1, 4, 2, 2)), 8, 16, False)
    assert float(off["samples"][0, 0].sum()) == 4 and float(off["samples"][0, 0, 2, 1]) == 1


def test_latent_blend():
    a = torch.ones(1, 4, 4, 4)
    b = torch.zeros(1, 4, 4, 4)
    (out,) = L.LatentBlend().blend(lat(a), lat(b), 0.25)
    assert torch.allclose(out["samples"], torch.tensor(0.25))
    (resized,) = L.LatentBlend().blend(lat(a), lat(torch.zeros(1, 4, 8, 8)), 0.5)
    assert resized["samples"].shape == (1, 4, 4, 4)


def test_latent_from_batch_and_repeat_and_batch():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 4, 2, 2).clone()
    masks = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 2, 2).clone()
    (fb,) = L.LatentFromBatch().frombatch(lat(x, noise_mask=masks), 1, 2)
    assert fb["samples"][:, 0, 0, 0].tolist() == [1.0, 2.0]
    assert fb["batch_index"] == [1, 2]
    assert fb["noise_mask"][:, 0, 0, 0].tolist() == [1.0, 0.0]  # masks repeat to the batch
    (clip,) = L.LatentFromBatch().frombatch(lat(x), 10, 5)
    assert clip["samples"].shape[0] == 1 and clip["batch_index"] == [3]
    (rep,) = L.RepeatLatentBatch().repeat(fb, 3)
    assert rep["samples"].shape[0] == 6
    assert rep["batch_index"] == [1, 2, 3, 4, 5, 6]
    (b,) = L.LatentBatch().batch(lat(x[:2]), lat(torch.zeros(3, 4, 4, 4)))
    assert b["samples"].shape == (5, 4, 2, 2)
    assert b["batch_index"] == [0, 1, 0, 1, 2]


def test_rotate_flip_crop():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    (r,) = L.LatentRotate().rotate(lat(x), "90 degrees")
    torch.testing.assert_close(r["samples"], torch.rot90(x, 1, dims=[3, 2]))
    (r0,) = L.LatentRotate().rotate(lat(x), "none")
    torch.testing.assert_close(r0["samples"], x)
    (fx,) = L.LatentFlip().flip(lat(x), "x-axis: vertically")
    torch.testing.assert_close(fx["samples"], x.flip(2))
    (fy,) = L.LatentFlip().flip(lat(x), "y-axis: horizontally")
    torch.testing.assert_close(fy["samples"], x.flip(3))
    big = torch.randn(1, 4, 32, 32)
    (c,) = L.LatentCrop().crop(lat(big), 64, 128, 16, 8)
    torch.testing.assert_close(c["samples"], big[:, :, 1:17, 2:10])
    (c2,) = L.LatentCrop().crop(lat(big), 512, 512, 1000, 1000)
    assert c2["samples"].shape[-2:] == (8, 8)


def test_set_latent_noise_mask():
    m = torch.ones(2, 16, 16)
    (out,) = L.SetLatentNoiseMask().set_mask(lat(torch.zeros(2, 4, 2, 2)), m)
    assert out["noise_mask"].shape == (2, 1, 16, 16)


def test_save_and_load_latent(workspace):
    from comfyui import paths

    x = torch.randn(1, 4, 8, 8)
    node = L.SaveLatent()
    res = node.save(lat(x), "latents/test", prompt={"1": {}}, extra_pnginfo={"workflow": {"a": 1}})
    info = res["ui"]["latents"][0]
    assert info["type"] == "output" and info["filename"].endswith(".latent")
    path = f"{paths.get_output_directory()}/{info['subfolder']}/{info['filename']}"
    import safetensors

    with safetensors.safe_open(path, "pt") as f:
        assert "prompt" in f.metadata() and "workflow" in f.metadata()
    import shutil

    shutil.copy(path, paths.get_input_directory())
    assert info["filename"] in L.LoadLatent.INPUT_TYPES()["required"]["latent"][0]
    (loaded,) = L.LoadLatent().load(info["filename"])
    torch.testing.assert_close(loaded["samples"], x)
    assert L.LoadLatent.VALIDATE_INPUTS("nope.latent") != True  # noqa: E712
    assert isinstance(L.LoadLatent.IS_CHANGED(info["filename"]), str)
    # legacy files without the version marker are rescaled
    import safetensors.torch

    safetensors.torch.save_file({"latent_tensor": x}, f"{paths.get_input_directory()}/old.latent")
    (old,) = L.LoadLatent().load("old.latent")
    torch.testing.assert_close(old["samples"], x / 0.18215)
