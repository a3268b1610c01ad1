import math

import pytest
import torch

from comfyui.sampling import model_sampling as M


def _sd_sigmas():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return ((1 - ac) / ac) ** 0.5


def test_discrete_schedule_matches_sd_scaled_linear_betas():
    ms = M.model_sampling("eps")
    ref = _sd_sigmas()
    assert ms.sigmas.shape == (1000,)
    torch.testing.assert_close(ms.sigmas.double(), ref, rtol=1e-6, atol=1e-7)
    assert float(ms.sigma_min) == pytest.approx(0.0291675, rel=1e-4)
    assert float(ms.sigma_max) == pytest.approx(14.614642, rel=1e-5)


def test_timestep_sigma_roundtrip_and_interpolation():
    ms = M.model_sampling("eps")
    t = torch.tensor([0, 250, 999])
    s = ms.sigma(t)
    torch.testing.assert_close(s, ms.sigmas[t])
    assert ms.timestep(s).tolist() == [0, 250, 999]
    # halfway between two timesteps: geometric mean of the two sigmas
    mid = ms.sigma(torch.tensor(10.5))
    assert float(mid) == pytest.approx(math.sqrt(float(ms.sigmas[10]) * float(ms.sigmas[11])), rel=1e-5)
    # clamped outside the range
    assert float(ms.sigma(torch.tensor(5000.0))) == pytest.approx(float(ms.sigma_max))


def test_percent_to_sigma():
    ms = M.model_sampling("eps")
    assert ms.percent_to_sigma(0.0) == 999999999.9
    assert ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(float(ms.sigma(torch.tensor(499.5))), rel=1e-6)
    assert ms.percent_to_sigma(0.2) > ms.percent_to_sigma(0.8)


def test_prediction_types_denoise_formulas():
    x = torch.randn(2, 4, 3, 3)
    out = torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.5, 3.0])
    sb = sigma.view(2, 1, 1, 1)
    eps = M.model_sampling("eps")
    torch.testing.assert_close(eps.calculate_denoised(sigma, out, x), x - out * sb)
    torch.testing.assert_close(eps.calculate_input(sigma, x), x / torch.sqrt(sb ** 2 + 1))
    v = M.model_sampling("v_prediction")
    expected_v = x / (sb ** 2 + 1) - out * sb / torch.sqrt(sb ** 2 + 1)
    torch.testing.assert_close(v.calculate_denoised(sigma, out, x), expected_v)
    x0 = M.model_sampling("x0")
    torch.testing.assert_close(x0.calculate_denoised(sigma, out, x), out)
    # v-prediction with the true v gives back the true x0
    clean = torch.randn(2, 4, 3, 3)
    noise = torch.randn(2, 4, 3, 3)
    noisy = clean + noise * sb
    alpha = 1 / torch.sqrt(1 + sb ** 2)
    sig_vp = sb * alpha
    v_true = alpha * noise - sig_vp * clean
    torch.testing.assert_close(v.calculate_denoised(sigma, v_true, noisy), clean, rtol=1e-5, atol=1e-5)


def test_noise_scaling():
    ms = M.model_sampling("eps")
    noise = torch.ones(1, 4, 2, 2)
    latent = torch.full((1, 4, 2, 2), 2.0)
    sigma = torch.tensor([3.0])
    assert torch.allclose(ms.noise_scaling(sigma, noise, latent), torch.full_like(latent, 5.0))
    assert torch.allclose(ms.noise_scaling(sigma, noise, latent, max_denoise=True),
                          torch.full_like(latent, 2.0 + math.sqrt(10.0)))
    assert ms.inverse_noise_scaling(sigma, latent) is latent


def test_zsnr_rescale_terminal_sigma():
    ms = M.model_sampling("v_prediction", {"zsnr": True})
    assert float(ms.sigma_max) == pytest.approx(math.sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08),
                                                rel=1e-4)
    # first sigma is unchanged by the rescale
    assert float(ms.sigma_min) == pytest.approx(0.0291675, rel=1e-3)
    plain = M.model_sampling("v_prediction", zsnr=False)
    assert float(plain.sigma_max) == pytest.approx(14.614642, rel=1e-5)


def test_lcm_distilled_schedule():
    ms = M.model_sampling("lcm")
    full = M.model_sampling("eps")
    assert ms.sigmas.shape == (50,)
    torch.testing.assert_close(ms.sigmas[-1], full.sigmas[999])
    torch.testing.assert_close(ms.sigmas[0], full.sigmas[19])
    assert ms.timestep(ms.sigmas[-1:]).tolist() == [999]
    assert ms.timestep(ms.sigmas[:1]).tolist() == [19]
    # boundary condition: at tiny timesteps the LCM denoiser approaches the eps x0
    x = torch.randn(1, 4, 2, 2)
    out = torch.randn(1, 4, 2, 2)
    s = ms.sigmas[-1:]
    d = ms.calculate_denoised(s, out, x)
    t = 999 * 10.0
    c_skip = 0.25 / (t ** 2 + 0.25)
    c_out = t / (t ** 2 + 0.25) ** 0.5
    torch.testing.assert_close(d, c_out * (x - out * s.view(1, 1, 1, 1)) + c_skip * x)


def test_model_config_object_and_unknown_type():
    class Cfg:
        sampling_settings = {"linear_start": 0.0001, "linear_end": 0.02, "beta_schedule": "sqrt_linear"}

    ms = M.model_sampling("eps", Cfg())
    betas = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0)
    assert float(ms.sigma_max) == pytest.approx(float(((1 - ac[-1]) / ac[-1]) ** 0.5), rel=1e-5)
    with pytest.raises(ValueError):
        M.model_sampling("nope")
