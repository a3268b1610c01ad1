"""CFG++ samplers against steps computed by hand from a closed-form guided model.

The model's conditional and unconditional predictions are exact Gaussian denoisers with
different data means, combined by CFG; the samplers see the unconditional one through the
post-CFG hook as ComfyUI's do. The expected steps below are written from ComfyUI's equations in
sigma-ratio form (no log-time), independently of the sampler code.
"""
import math

import pytest
import torch

from comfyui.sampling import k_diffusion as kd

S2 = 0.25  # data variance
CFG = 4.0


def _gaussian(x, sigma, mu):
    sg = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return (S2 * x + sg * sg * mu) / (S2 + sg * sg)


def cond_pred(x, sigma):
    return _gaussian(x, sigma, torch.linspace(-1.0, 1.0, x.shape[-1]))


def uncond_pred(x, sigma):
    return _gaussian(x, sigma, 0.5 * torch.tanh(x))


def guided(x, sigma):
    u = uncond_pred(x, sigma)
    return u + CFG * (cond_pred(x, sigma) - u)


def guided_model(x, sigma, model_options=None, **_):
    """What the sampler's model wrapper does: CFG, then the post-CFG hooks."""
    denoised = guided(x, sigma)
    for hook in (model_options or {}).get("sampler_post_cfg_function", []):
        denoised = hook({"denoised": denoised, "cond_denoised": cond_pred(x, sigma),
                         "uncond_denoised": uncond_pred(x, sigma), "sigma": sigma, "input": x})
    return denoised


def fixed_noise(shape, count=16):
    draws = iter(torch.randn((count, *shape), generator=torch.Generator().manual_seed(11), dtype=torch.float64))
    return lambda sigma, sigma_next: next(draws)


def ancestral_split(sigma, sigma_next, eta):
    up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - up ** 2), up


def expected_dpmpp_2s_ancestral_cfg_pp(x, sigmas, eta, noise):
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        down, up = ancestral_split(sigma, sigma_next, eta)
        d = guided(x, sigma)
        if down == 0:
            x = d
        else:
            mid = math.sqrt(sigma * down)  # half-way in log sigma
            x_mid = (mid / sigma) * (x + d - uncond_pred(x, sigma)) + (1 - mid / sigma) * d
            d_mid = guided(x_mid, mid)
            x = (down / sigma) * (x + d - uncond_pred(x_mid, mid)) + (1 - down / sigma) * d_mid
        if sigma_next > 0:
            x = x + noise(sigma, sigma_next) * up
    return x


X0 = torch.randn(1, 2, 3, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 6.0


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpmpp_2s_ancestral_cfg_pp_follows_comfyui_equation(eta):
    sigmas = [6.0, 3.0, 1.2, 0.4, 0.0]
    out = kd.sample_dpmpp_2s_ancestral_cfg_pp(
        guided_model, X0.clone(), torch.tensor(sigmas, dtype=torch.float64), extra_args={"model_options": {}},
        eta=eta, noise_sampler=fixed_noise(X0.shape))
    expected = expected_dpmpp_2s_ancestral_cfg_pp(X0.clone(), sigmas, eta, fixed_noise(X0.shape))
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_dpmpp_2s_ancestral_cfg_pp_single_step_by_hand():
    """One deterministic step 2 -> 1, every quantity spelled out."""
    x = X0.clone()
    d0, u0 = guided(x, 2.0), uncond_pred(x, 2.0)
    mid = math.sqrt(2.0)
    x_mid = (mid / 2.0) * (x + d0 - u0) + (1 - mid / 2.0) * d0
    expected = 0.5 * (x + d0 - uncond_pred(x_mid, mid)) + 0.5 * guided(x_mid, mid)
    out = kd.sample_dpmpp_2s_ancestral_cfg_pp(guided_model, x.clone(), torch.tensor([2.0, 1.0], dtype=torch.float64),
                                              extra_args={"model_options": {}}, eta=0.0)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def _expected_euler_ancestral_cfg_pp(x, sigmas, eta, noise):
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = guided(x, sigma)
        if sigma_next == 0:
            x = d
            continue
        down, up = ancestral_split(sigma, sigma_next, eta)
        # the state's noise direction comes from the unconditional prediction
        x = d + down * (x - uncond_pred(x, sigma)) / sigma + noise(sigma, sigma_next) * up
    return x


def _expected_dpmpp_2m_cfg_pp(x, sigmas):
    old_u, old_h = None, None
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        d, u = guided(x, sigma), uncond_pred(x, sigma)
        ratio = sigma_next / sigma
        x_new = d + ratio * (x - u)
        if old_u is not None and sigma_next > 0:
            r = math.log(sigmas[i - 1] / sigma) / math.log(sigma / sigma_next)
            x_new = x_new + (1 - ratio) / (2 * r) * (d - old_u)
        x, old_u = x_new, u
    return x


def test_other_cfg_pp_samplers_follow_comfyui_equations():
    sigmas = [6.0, 3.0, 1.2, 0.4, 0.0]
    t = torch.tensor(sigmas, dtype=torch.float64)
    out = kd.sample_euler_ancestral_cfg_pp(guided_model, X0.clone(), t, extra_args={"model_options": {}},
                                           noise_sampler=fixed_noise(X0.shape))
    torch.testing.assert_close(out, _expected_euler_ancestral_cfg_pp(X0.clone(), sigmas, 1.0, fixed_noise(X0.shape)))
    out = kd.sample_euler_cfg_pp(guided_model, X0.clone(), t, extra_args={"model_options": {}})
    torch.testing.assert_close(out, _expected_euler_ancestral_cfg_pp(X0.clone(), sigmas, 0.0, fixed_noise(X0.shape)))
    out = kd.sample_dpmpp_2m_cfg_pp(guided_model, X0.clone(), t, extra_args={"model_options": {}})
    torch.testing.assert_close(out, _expected_dpmpp_2m_cfg_pp(X0.clone(), sigmas))
