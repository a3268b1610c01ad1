"""Wan: the transformer against diffusers' WanTransformer3DModel on the same tiny random weights
(t2v, i2v with CLIP-vision image tokens, first-last frame with its position embedding), the key
map checked against diffusers' own converter, detection from shapes, flow sampling with shift
8, the Wan21 latent format, and the loader path (a native single file through UNETLoader's
loader) with the image-to-video conditioning."""
from __future__ import annotations

import pytest
import torch

from . import wan_fixtures as fx

_threads = pytest.fixture(scope="module", autouse=True)(fx.one_thread)

pytest.importorskip("diffusers")

from comfyui.models.registry import detect_family  # noqa: E402
from comfyui.models.wan.detection import detect, variant  # noqa: E402
from comfyui.models.wan.model import WanModel  # noqa: E402

VARIANTS = {
    "wan21_t2v": dict(),
    "wan21_i2v": dict(i2v=True, in_channels=36),
    "wan21_flf2v": dict(i2v=True, flf=True, in_channels=36),
    "wan21_fun_control": dict(i2v=True, in_channels=48),
    "wan22_5b": dict(in_channels=48, out_channels=48),
}


def _ours(native) -> WanModel:
    model = WanModel(**detect(native, "")).eval()
    model.load_state_dict(native, strict=True)
    return model


@pytest.mark.parametrize("name", ["wan21_t2v", "wan21_i2v"])
def test_key_map_is_the_inverse_of_diffusers_converter(name):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    dm = fx.diffusers_wan(seed=3, **VARIANTS[name])
    back = convert_wan_transformer_to_diffusers(dict(fx.native_sd(dm)))
    expected = dm.state_dict()
    assert set(back) == set(expected)
    for k, v in expected.items():
        assert torch.equal(back[k], v), k


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_matches_diffusers(name):
    opts = VARIANTS[name]
    dm = fx.diffusers_wan(seed=1, **opts)
    native = fx.native_sd(dm)
    config = detect(native, "")
    assert variant(config) == name
    assert config["num_heads"] == 2 and config["text_dim"] == 64 and config["in_dim"] == opts.get("in_channels", 16)
    ours = _ours(native)
    g = torch.Generator().manual_seed(0)
    b, t, h, w = 2, 3, 6, 10
    x = torch.randn(b, opts.get("in_channels", 16), t, h, w, generator=g)
    ctx = torch.randn(b, 512, 64, generator=g)  # diffusers' i2v split assumes 512 text tokens
    sigma = torch.tensor([0.8, 0.3])
    kw, ref_kw = {}, {}
    if opts.get("i2v"):
        images = 2 if opts.get("flf") else 1
        fea = torch.randn(b, 257 * images, 96, generator=g)
        kw["clip_fea"] = fea
        ref_kw["encoder_hidden_states_image"] = fea.reshape(b * images, 257, 96)
    with torch.no_grad():
        ref = dm(hidden_states=x, timestep=sigma * 1000, encoder_hidden_states=ctx, return_dict=False, **ref_kw)[0]
        out = ours(x, sigma * 1000, ctx, **kw)
    assert out.shape == ref.shape == (b, opts.get("out_channels", 16), t, h, w)
    err = (out - ref).abs().max().item()
    assert err < 2e-5 * max(1.0, ref.abs().max().item()), err
    if opts.get("i2v"):  # the image tokens matter
        with torch.no_grad():
            other = ours(x, sigma * 1000, ctx, clip_fea=kw["clip_fea"].flip(-1))
        assert (other - out).abs().max() > 1e-3


def test_odd_sizes_are_padded_to_the_patch_grid():
    dm = fx.diffusers_wan(seed=2)
    ours = _ours(fx.native_sd(dm))
    x = torch.randn(1, 16, 2, 5, 7)
    with torch.no_grad():
        out = ours(x, torch.tensor([500.0]), torch.randn(1, 512, 64))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_per_frame_timesteps_equal_a_shared_timestep_when_equal():
    """Wan 2.2 5B gives each latent frame its own timestep; equal ones are one timestep."""
    dm = fx.diffusers_wan(seed=4, in_channels=48, out_channels=48)
    ours = _ours(fx.native_sd(dm))
    x, ctx = torch.randn(1, 48, 3, 4, 4), torch.randn(1, 512, 64)
    with torch.no_grad():
        shared = ours(x, torch.tensor([600.0]), ctx)
        per_frame = ours(x, torch.tensor([[600.0, 600.0, 600.0]]), ctx)
        first_clean = ours(x, torch.tensor([[0.0, 600.0, 600.0]]), ctx)
    assert torch.allclose(shared, per_frame, atol=1e-6)
    assert (first_clean[:, :, 0] - shared[:, :, 0]).abs().max() > 1e-3


def test_registry_sampling_and_latent_format():
    native = fx.native_sd(fx.diffusers_wan(seed=5))
    family, config = detect_family({"model.diffusion_model." + k: v for k, v in native.items()},
                                   "model.diffusion_model.")
    assert family.name == "wan21" and family.latent_format.__name__ == "Wan21"
    assert family.sampling["type"] == "flow" and family.sampling["shift"] == 8.0
    from comfyui.sampling.model_sampling import model_sampling_from_settings
    ms = model_sampling_from_settings(dict(family.sampling))
    # sigma(t) = shift t / (1 + (shift - 1) t), t = timestep / 1000
    t = torch.tensor([0.25, 0.5])
    expected = 8 * t / (1 + 7 * t)
    assert torch.allclose(ms.sigma(t * 1000), expected, atol=1e-5)
    assert torch.allclose(ms.timestep(expected), expected * 1000)  # the network sees sigma * 1000
    lf = family.latent_format()
    z = torch.randn(1, 16, 2, 3, 3)
    mean = torch.tensor(lf.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(lf.latents_std).view(1, 16, 1, 1, 1)
    assert torch.allclose(lf.process_in(z), (z - mean) / std)
    assert torch.allclose(lf.process_out(lf.process_in(z)), z, atol=1e-6)


@pytest.mark.parametrize("in_channels, out_channels", [(52, 16), (148, 48)])   # Fun 2.2 A14B / 5B Control
def test_fun_reference_image_is_a_frame_before_the_video(in_channels, out_channels):
    """Fun 2.2's ``ref_conv``: the reference latent's tokens come before the video's as frame 0
    (RoPE), the video's frames shifted by one, and are dropped after the head. So, with a
    ref_conv equal to the patch embedding's weights on the first channels, the model with a
    reference R equals diffusers on the video with R (zero elsewhere) as an extra first frame."""
    dm = fx.diffusers_wan(seed=7, in_channels=in_channels, out_channels=out_channels)
    native = fx.native_sd(dm)
    native.update(fx.fun_ref_conv(native, out_channels, seed=8))
    config = detect(native, "")
    assert config["in_dim_ref_conv"] == out_channels and config["in_dim"] == in_channels
    ours = _ours(native)
    with torch.no_grad():
        ours.ref_conv.weight.copy_(ours.patch_embedding.weight[:, :out_channels, 0])
        ours.ref_conv.bias.copy_(ours.patch_embedding.bias)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, in_channels, 2, 4, 6, generator=g), torch.randn(1, 512, 64, generator=g)
    reference = torch.randn(1, out_channels, 4, 6, generator=g)
    first = torch.zeros(1, in_channels, 1, 4, 6)
    first[:, :out_channels, 0] = reference
    t = torch.tensor([600.0])
    with torch.no_grad():
        expected = dm(hidden_states=torch.cat((first, x), dim=2), timestep=t, encoder_hidden_states=ctx,
                      return_dict=False)[0][:, :, 1:]
        out = ours(x, t, ctx, reference_latent=reference)
        plain = ours(x, t, ctx)
    assert out.shape == plain.shape == (1, out_channels, 2, 4, 6)
    assert (out - expected).abs().max() < 2e-5 * max(1.0, expected.abs().max().item())
    assert (out - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="size of the video latent"):
        ours(x, t, ctx, reference_latent=reference[..., :2, :])


def test_fun_camera_adapter_adds_to_the_patch_embedding():
    """Fun Camera's control adapter: per latent frame, the 24-channel Plücker embedding at
    pixel size, unshuffled by 8 (channel c, offset (dy, dx) at 64c + 8dy + dx), patchified by
    a 2x2 stride-2 conv and refined by a residual block (x + conv2(relu(conv1 x))), is added
    to the patch tokens. Checked against that formula written out, and the whole model
    against diffusers with the adapter's output folded into the patch embedding's bias."""
    import torch.nn.functional as F
    dm = fx.diffusers_wan(seed=9, i2v=True, in_channels=36)
    native = fx.native_sd(dm)
    native.update(fx.fun_camera_adapter(native, 24, seed=10))
    config = detect(native, "")
    assert config["in_dim_control_adapter"] == 24 and config["model_type"] == "i2v"
    ours = _ours(native)
    g = torch.Generator().manual_seed(0)
    camera = torch.randn(1, 24, 2, 32, 48, generator=g)
    with torch.no_grad():
        a = ours.control_adapter
        w = a.conv.weight.reshape(-1, 24, 8, 8, 2, 2)                           # o c dy dx ky kx
        patches = camera.reshape(1, 24, 2, 2, 2, 8, 3, 2, 8)                    # b c f r ky dy q kx dx
        conv = torch.einsum("bcfriyqjx,ocyxij->bofrq", patches, w) + a.conv.bias.view(1, -1, 1, 1, 1)
        flat = conv.transpose(1, 2).flatten(0, 1)
        block = a.residual_blocks[0]
        hidden = F.relu(F.conv2d(flat, block.conv1.weight, block.conv1.bias, padding=1))
        expected = (flat + F.conv2d(hidden, block.conv2.weight, block.conv2.bias, padding=1)).unflatten(0, (1, 2))
        assert torch.allclose(a(camera), expected.transpose(1, 2), atol=1e-5)

        # a constant adapter output b equals diffusers with b added to the patch embedding's bias
        bias = torch.randn(a.conv.bias.shape, generator=g) * 0.2
        a.conv.weight.zero_()
        a.conv.bias.copy_(bias)
        for conv_layer in (block.conv1, block.conv2):
            conv_layer.weight.zero_()
            conv_layer.bias.zero_()
        x, ctx = torch.randn(1, 36, 2, 4, 6, generator=g), torch.randn(1, 512, 64, generator=g)
        fea = torch.randn(1, 257, 96, generator=g)
        t = torch.tensor([500.0])
        out = ours(x, t, ctx, clip_fea=fea, camera_conditions=camera)
        dm.patch_embedding.bias.add_(bias)
        expected = dm(hidden_states=x, timestep=t, encoder_hidden_states=ctx, encoder_hidden_states_image=fea,
                      return_dict=False)[0]
        plain = ours(x, t, ctx, clip_fea=fea)
    assert (out - expected).abs().max() < 2e-5 * max(1.0, expected.abs().max().item())
    assert (out - plain).abs().max() > 1e-3


def test_vace_matches_diffusers():
    """VACE: control blocks over the control video's tokens add hints after blocks 0 and 2."""
    dm = fx.diffusers_vace(seed=6)
    native = fx.native_sd(dm)
    config = detect(native, "")
    assert variant(config) == "wan21_vace" and config["vace_layers"] == 2 and config["vace_in_dim"] == 96
    ours = _ours(native)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 16, 2, 4, 6, generator=g), torch.randn(1, 512, 64, generator=g)
    control = torch.randn(1, 96, 2, 4, 6, generator=g)
    t = torch.tensor([700.0])
    with torch.no_grad():
        ref = dm(hidden_states=x, timestep=t, encoder_hidden_states=ctx, control_hidden_states=control,
                 control_hidden_states_scale=torch.tensor([0.7, 0.7]), return_dict=False)[0]
        out = ours(x, t, ctx, vace_context=control[:, None], vace_strength=[0.7])
        plain = ours(x, t, ctx)
    assert (out - ref).abs().max() < 2e-5 * max(1.0, ref.abs().max().item())
    assert (out - plain).abs().max() > 1e-3
