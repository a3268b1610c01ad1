"""Flux.1: the transformer against diffusers' FluxTransformer2DModel on the same tiny random
weights (converted with our diffusers -> BFL key map), detection on the real layouts, and
the sign / scale conventions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from . import flux_fixtures as fx

pytest.importorskip("diffusers")

from comfyui.models.flux.convert import diffusers_to_native, is_diffusers_flux  # noqa: E402
from comfyui.models.flux.detection import detect, variant  # noqa: E402
from comfyui.models.flux.model import Flux  # noqa: E402

SHAPES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "model-families-shapes.json"
if not SHAPES.exists():
    SHAPES = Path("/work/shared/spec/model-families-shapes.json")


def _pack(x: torch.Tensor) -> torch.Tensor:
    """diffusers' 2x2 packing: [B, C, H, W] -> [B, H/2 * W/2, C*4]."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)


def _unpack(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = t.shape[0]
    return t.view(b, h // 2, w // 2, -1, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, h, w)


def _ids(h: int, w: int, index: int = 0) -> torch.Tensor:
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def _ours(dm) -> Flux:
    native = diffusers_to_native(dm.state_dict())
    model = Flux(**detect(native)).eval()
    model.load_state_dict(native, strict=True)
    return model


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_matches_diffusers(guidance):
    dm = fx.diffusers_flux(seed=1, guidance=guidance, depth=2, depth_single=2)
    ours = _ours(dm)
    b, h, w, t = 2, 8, 12, 5
    g = torch.Generator().manual_seed(0)
    x, ctx, pooled = torch.randn(b, 16, h, w, generator=g), torch.randn(b, t, 32, generator=g), torch.randn(b, 24, generator=g)
    sigma = torch.tensor([0.7, 0.25])
    gvalue = torch.tensor([3.5, 1.0]) if guidance else None
    with torch.no_grad():
        v = ours(x, sigma, ctx, y=pooled, guidance=gvalue)
        # diffusers scales timestep and guidance by 1000 inside too: the same sigma goes in
        ref = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma,
                 img_ids=_ids(h, w), txt_ids=torch.zeros(t, 3), guidance=gvalue).sample
    assert torch.allclose(v, _unpack(ref, h, w), atol=2e-5), (v - _unpack(ref, h, w)).abs().max()


def test_guidance_changes_the_output_of_dev_only():
    ours = _ours(fx.diffusers_flux(seed=2))
    x, ctx = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 32)
    with torch.no_grad():
        a = ours(x, torch.tensor([0.5]), ctx, guidance=torch.tensor([3.5]))
        b = ours(x, torch.tensor([0.5]), ctx, guidance=torch.tensor([7.0]))
    assert (a - b).abs().max() > 1e-3


def test_fill_and_control_inputs_match_diffusers():
    """96-channel Fill (noise + masked image + 64-channel mask) and 32-channel Canny/Depth."""
    for in_channels, name in ((96, "flux-fill"), (32, "flux-control")):
        dm = fx.diffusers_flux(seed=3, in_channels=in_channels)
        ours = _ours(dm)
        assert variant(detect(diffusers_to_native(dm.state_dict()))) == name
        x, ctx, pooled = torch.randn(1, in_channels, 6, 4), torch.randn(1, 4, 32), torch.randn(1, 24)
        with torch.no_grad():
            v = ours(x, torch.tensor([0.4]), ctx, y=pooled, guidance=torch.tensor([30.0]))
            ref = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled,
                     timestep=torch.tensor([0.4]), img_ids=_ids(6, 4), txt_ids=torch.zeros(4, 3),
                     guidance=torch.tensor([30.0])).sample
        assert v.shape == (1, 16, 6, 4)
        assert torch.allclose(v, _unpack(ref, 6, 4), atol=2e-5)


def test_kontext_reference_latents_match_diffusers():
    """A reference latent becomes extra image tokens with position index 1 (FluxKontextPipeline's
    layout); the output covers the noise latent only."""
    dm = fx.diffusers_flux(seed=4)
    ours = _ours(dm)
    x, ref, ctx, pooled = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 6, 10), torch.randn(1, 4, 32), torch.randn(1, 24)
    with torch.no_grad():
        v = ours(x, torch.tensor([0.6]), ctx, y=pooled, guidance=torch.tensor([2.5]), ref_latents=[ref])
        out = dm(hidden_states=torch.cat([_pack(x), _pack(ref)], dim=1), encoder_hidden_states=ctx,
                 pooled_projections=pooled, timestep=torch.tensor([0.6]),
                 img_ids=torch.cat([_ids(8, 8), _ids(6, 10, index=1)]), txt_ids=torch.zeros(4, 3),
                 guidance=torch.tensor([2.5])).sample
    assert torch.allclose(v, _unpack(out[:, :16], 8, 8), atol=2e-5)
    with torch.no_grad():
        plain = ours(x, torch.tensor([0.6]), ctx, y=pooled, guidance=torch.tensor([2.5]))
    assert (plain - v).abs().max() > 1e-4


def test_odd_latent_sizes_are_padded():
    ours = _ours(fx.diffusers_flux(seed=5))
    with torch.no_grad():
        v = ours(torch.randn(1, 16, 5, 7), torch.tensor([0.5]), torch.randn(1, 2, 32))
    assert v.shape == (1, 16, 5, 7) and torch.isfinite(v).all()


def test_diffusers_layout_is_recognised():
    dm = fx.diffusers_flux(seed=6)
    sd = {"transformer." + k: v for k, v in dm.state_dict().items()}
    assert is_diffusers_flux(sd, "transformer.") and not is_diffusers_flux(sd)
    native = diffusers_to_native(sd, "transformer.")
    assert set(native) == set(Flux(**detect(native)).state_dict())


def _real_entries():
    spec = json.loads(SHAPES.read_text())
    return {k: v for k, v in spec.items() if k.startswith("flux1")}


@pytest.mark.parametrize("name", sorted(_real_entries()))
def test_detection_on_real_layouts(name):
    """On the real key -> shape maps detection gives upstream's config exactly, and the module
    built from it has exactly the file's keys and shapes."""
    entry = _real_entries()[name]
    sd = {k: torch.empty(shape, device="meta") for k, shape in entry["shapes"].items()}
    config = detect(sd)
    assert config == entry["upstream_detected_config"]
    with torch.device("meta"):
        model = Flux(**config)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: list(v) for k, v in entry["shapes"].items()}
    # the all-in-one checkpoint layout: the same keys under model.diffusion_model.
    assert detect({"model.diffusion_model." + k: v for k, v in sd.items()}, "model.diffusion_model.") == config


# ------------------------------------------------------------------------ the 16-channel VAE
def test_vae16_without_quant_convs_matches_diffusers():
    from comfyui.models.vae import VAE, convert_vae_state_dict
    dm = fx.diffusers_vae16(seed=7)
    ldm = convert_vae_state_dict(dm.state_dict())
    assert not any("quant_conv" in k for k in ldm)
    vae = VAE(sd=ldm, device=torch.device("cpu"), dtype=torch.float32)
    assert vae.latent_channels == 16
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 6, 5, generator=g)
    pixels = torch.rand(1, 48, 40, 3, generator=g)
    with torch.no_grad():
        ref_img = dm.decode(z).sample
        ref_latent = dm.encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mean
    torch.testing.assert_close(vae.decode(z), ((ref_img + 1) / 2).clamp(0, 1).movedim(1, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vae.encode(pixels), ref_latent, atol=1e-5, rtol=1e-5)


def test_vae16_real_layout_builds_exactly():
    from comfyui.models.vae import AutoencoderKL, vae_config_from_state_dict
    shapes = json.loads(SHAPES.read_text())["flux ae.safetensors (16ch KL, no quant convs)"]["shapes"]
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    config = vae_config_from_state_dict(sd)
    assert config["z_channels"] == 16 and not config["quant_conv"]
    with torch.device("meta"):
        model = AutoencoderKL(**config)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    # LDM files store the attention projections as 1x1 convolutions, as ours are
    assert ours == {k: list(v) for k, v in shapes.items()}


def test_key_map_round_trip():
    from comfyui.models.flux.convert import native_to_diffusers
    dm = fx.diffusers_flux(seed=8, depth=2, depth_single=2)
    theirs = dm.state_dict()
    back = native_to_diffusers(diffusers_to_native(theirs))
    assert set(back) == set(theirs)
    assert all(torch.equal(back[k], theirs[k]) for k in theirs)


# ---------------------------------------------------------------- the model through the loaders
@pytest.fixture
def cpu_fp32():
    from comfyui.models import memory
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _load(sd):
    from comfyui.models import sd as sdm
    return sdm.load_diffusion_model_state_dict(dict(sd), source="test").model


def test_sign_and_scale_conventions_against_diffusers(cpu_fp32):
    """apply_model's denoised = x - sigma * v with v the diffusers transformer's output at
    timestep = sigma (diffusers multiplies timestep and guidance by 1000 inside, as BFL's
    embedding does), and one Euler step equals FlowMatchEulerDiscreteScheduler's."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    dm = fx.diffusers_flux(seed=9)
    model = _load(diffusers_to_native(dm.state_dict()))
    assert model.family.name == "flux" and model.model_config.sampling_settings == {"type": "flux", "shift": 1.15}
    g = torch.Generator().manual_seed(3)
    x, ctx, pooled = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 6, 32, generator=g), torch.randn(1, 24, generator=g)
    sigma = torch.tensor([0.8])
    conds = model.extra_conds(cross_attn=ctx, pooled_output=pooled, guidance=4.0, noise=x)
    assert conds["guidance"].tolist() == [4.0]
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds)
        v = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma,
               img_ids=_ids(8, 8), txt_ids=torch.zeros(6, 3), guidance=torch.tensor([4.0])).sample
    v = _unpack(v, 8, 8)
    torch.testing.assert_close(denoised, x - 0.8 * v, atol=2e-5, rtol=1e-5)
    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(sigmas=[0.8, 0.5], device="cpu")
    theirs = sched.step(_pack(v), sched.timesteps[0], _pack(x)).prev_sample
    sigma_next = float(sched.sigmas[1])
    ours = x + (x - denoised) / 0.8 * (sigma_next - 0.8)  # k-diffusion Euler on our denoised
    torch.testing.assert_close(_pack(ours), theirs, atol=2e-5, rtol=1e-5)


def test_guidance_defaults_and_schnell_sampling(cpu_fp32):
    dev = _load(diffusers_to_native(fx.diffusers_flux(seed=10).state_dict()))
    assert dev.extra_conds(cross_attn=torch.zeros(1, 2, 32), noise=torch.zeros(1, 16, 4, 4))["guidance"].tolist() == [3.5]
    schnell = _load(diffusers_to_native(fx.diffusers_flux(seed=11, guidance=False).state_dict()))
    assert schnell.family.name == "flux_schnell"
    assert schnell.model_config.sampling_settings == {"type": "flow", "shift": 1.0, "multiplier": 1.0}
    # flow with multiplier 1: the network's timestep is sigma itself, as for dev
    s = torch.tensor([0.3])
    assert torch.allclose(schnell.model_sampling.timestep(s), s) and torch.allclose(dev.model_sampling.timestep(s), s)


def test_diffusers_layout_file_loads_like_the_bfl_one(cpu_fp32):
    dm = fx.diffusers_flux(seed=12)
    native, diff = _load(diffusers_to_native(dm.state_dict())), _load(dm.state_dict())
    x, ctx = torch.randn(1, 16, 4, 6), torch.randn(1, 3, 32)
    with torch.no_grad():
        a = native.apply_model(x, torch.tensor([0.5]), c_crossattn=ctx)
        b = diff.apply_model(x, torch.tensor([0.5]), c_crossattn=ctx)
    assert torch.equal(a, b)


def test_fill_conditioning_layout(cpu_fp32):
    """Fill's 80 extra channels: the masked image latent (in model space) and the pixel mask
    folded 8x8 -> 64 channels, channel = row-in-cell * 8 + column-in-cell."""
    model = _load(diffusers_to_native(fx.diffusers_flux(seed=13, in_channels=96).state_dict()))
    noise = torch.zeros(1, 16, 4, 6)
    image = torch.randn(1, 16, 4, 6)
    mask = torch.zeros(1, 32, 48)
    mask[0, 8 + 3, 16 + 5] = 1.0  # latent cell (1, 2), pixel (3, 5) inside it
    c = model.extra_conds(noise=noise, concat_latent_image=image, concat_mask=mask, cross_attn=torch.zeros(1, 2, 32))["c_concat"]
    assert c.shape == (1, 80, 4, 6)
    torch.testing.assert_close(c[:, :16], model.process_latent_in(image))
    assert c[0, 16 + 3 * 8 + 5, 1, 2] == 1.0 and c[:, 16:].sum() == 1.0
    control = _load(diffusers_to_native(fx.diffusers_flux(seed=14, in_channels=32).state_dict()))
    c = control.extra_conds(noise=noise, concat_latent_image=image, cross_attn=torch.zeros(1, 2, 32))["c_concat"]
    torch.testing.assert_close(c, control.process_latent_in(image))
    assert "c_concat" not in _load(diffusers_to_native(fx.diffusers_flux(seed=15).state_dict())).extra_conds(
        noise=noise, cross_attn=torch.zeros(1, 2, 32))


def test_latent_format_matches_diffusers_pipeline():
    from comfyui.models.latent_formats import Flux as FluxLatent
    vae = fx.diffusers_vae16()
    raw = torch.randn(1, 16, 4, 4)
    fmt = FluxLatent()
    # FluxPipeline: model latents = (vae latents - shift) * scale, decoded as latents / scale + shift
    torch.testing.assert_close(fmt.process_in(raw), (raw - vae.config.shift_factor) * vae.config.scaling_factor)
    torch.testing.assert_close(fmt.process_out(fmt.process_in(raw)), raw)
