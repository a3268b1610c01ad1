"""SD3 / SD3.5: the MMDiT against diffusers' SD3Transformer2DModel on the same tiny random
weights (converted with our diffusers -> native key map, which diffusers' own native ->
diffusers converter must invert), detection, the timestep scale and the velocity sign."""
from __future__ import annotations

import pytest
import torch

from . import sd3_fixtures as fx

pytest.importorskip("diffusers")

from comfyui.models.registry import detect_family  # noqa: E402
from comfyui.models.sd3.detection import detect, variant  # noqa: E402
from comfyui.models.sd3.mmdit import MMDiT  # noqa: E402

VARIANTS = {
    "sd3": dict(),
    "sd3.5-large": dict(qk_norm=True),
    "sd3.5-medium": dict(qk_norm=True, dual_layers=(0,)),
}


def _ours(dm) -> MMDiT:
    native = fx.native_sd(dm)
    model = MMDiT(**detect(native)).eval()
    model.load_state_dict(native, strict=True)
    return model


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_key_map_is_the_inverse_of_diffusers_converter(name):
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
    dm = fx.diffusers_sd3(seed=3, **VARIANTS[name])
    native = fx.native_sd(dm)
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(native))
    expected = dm.state_dict()
    assert set(back) == set(expected)
    for k, v in expected.items():
        assert torch.equal(back[k], v), k


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_matches_diffusers(name):
    dm = fx.diffusers_sd3(seed=1, **VARIANTS[name])
    ours = _ours(dm)
    config = detect(fx.native_sd(dm))
    assert variant(config) == name
    assert config["x_block_self_attn_layers"] == list(VARIANTS[name].get("dual_layers", ()))
    b, h, w, t = 2, 8, 12, 7  # a latent smaller than the 32x32 table: the centre crop is used
    g = torch.Generator().manual_seed(0)
    x, ctx, pooled = torch.randn(b, 16, h, w, generator=g), torch.randn(b, t, 64, generator=g), torch.randn(b, 48, generator=g)
    sigma = torch.tensor([0.7, 0.25])
    with torch.no_grad():
        ref = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled,
                 timestep=sigma * 1000).sample  # diffusers takes the timestep scaled by 1000
        out = ours(x, sigma * 1000, context=ctx, y=pooled)
    assert out.shape == ref.shape == x.shape
    assert (out - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


def test_through_the_family_velocity_sign_and_timestep_scale(tmp_path):
    """The loaded family model's denoised output is x - sigma * v with diffusers' v at timestep
    sigma*1000; the input is not scaled (flow: calculate_input is the identity)."""
    dm = fx.diffusers_sd3(seed=2, qk_norm=True)
    native = {"model.diffusion_model." + k: v for k, v in fx.native_sd(dm).items()}
    family, config = detect_family(native, "model.diffusion_model.")
    assert family.name == "sd3" and family.sampling == {"type": "flow", "shift": 3.0, "multiplier": 1000}
    model = family.model_class(config, family).eval()
    model.diffusion_model.load_state_dict({k[len("model.diffusion_model."):]: v for k, v in native.items()})
    g = torch.Generator().manual_seed(4)
    x, ctx, pooled = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 5, 64, generator=g), torch.randn(1, 48, generator=g)
    sigma = torch.tensor([0.6])
    conds = model.extra_conds(cross_attn=ctx, pooled_output=pooled, noise=x)
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds)
        v = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma * 1000).sample
    torch.testing.assert_close(denoised, x - 0.6 * v, atol=1e-5, rtol=1e-5)
    # shift 3: sigma(t) = 3t / (1 + 2t) over 1000 steps, sigma_max 1
    ms = model.model_sampling
    assert ms.sigma_max.item() == pytest.approx(1.0)
    assert ms.sigma(torch.tensor([500.0])).item() == pytest.approx(1.5 / 2.0, abs=1e-4)
    # the network's timestep is sigma * 1000 (not the unshifted schedule time)
    assert ms.timestep(torch.tensor([0.75])).item() == pytest.approx(750.0)


def test_a_diffusers_layout_file_loads_through_unet_loader():
    """UNETLoader's path: a diffusers-layout SD3.5 medium transformer is mapped to native keys
    and gives the same velocity as diffusers."""
    from comfyui.models import sd as sdm
    dm = fx.diffusers_sd3(seed=5, qk_norm=True, dual_layers=(0,))
    patcher = sdm.load_diffusion_model_state_dict({k: v.clone() for k, v in dm.state_dict().items()},
                                                  torch.float32)
    model = patcher.model
    assert model.model_config.name == "sd3.5-medium"
    g = torch.Generator().manual_seed(6)
    x, ctx, pooled = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 4, 64, generator=g), torch.randn(1, 48, generator=g)
    with torch.no_grad():
        ours = model.diffusion_model(x, torch.tensor([300.0]), context=ctx, y=pooled)
        ref = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled,
                 timestep=torch.tensor([300.0])).sample
    assert (ours - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


def test_latent_larger_than_the_position_table_is_a_clear_error():
    dm = fx.diffusers_sd3(seed=1)
    ours = _ours(dm)
    with pytest.raises(ValueError, match="patch positions"):
        ours(torch.zeros(1, 16, 40, 8), torch.tensor([500.0]), context=torch.zeros(1, 3, 64), y=torch.zeros(1, 48))
