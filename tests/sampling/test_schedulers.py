import math

import pytest
import torch

from comfyui.nodes.builtin import sampling as nodes
from comfyui.sampling import k_diffusion as kd
from comfyui.sampling.model_sampling import model_sampling
from comfyui.sampling.schedulers import SCHEDULER_NAMES, calculate_sigmas

from sampling_toy import GaussianModel, ToyPatcher

MS = model_sampling("eps")
SMAX = float(MS.sigma_max)
SMIN = float(MS.sigma_min)


def test_scheduler_names_in_comfyui_order():
    assert SCHEDULER_NAMES == ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                               "linear_quadratic", "kl_optimal"]


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@pytest.mark.parametrize("steps", [1, 7, 20])
def test_every_scheduler_shape_and_monotone(name, steps):
    s = calculate_sigmas(MS, name, steps)
    if name == "ddim_uniform":  # every (1000 // steps)-th timestep, as ComfyUI: can be a few more
        assert len(s) == len(range(1, 1000, 1000 // steps)) + 1
    elif name != "beta":  # beta merges repeated timesteps
        assert len(s) == steps + 1
    assert float(s[-1]) == 0.0
    assert torch.all(s[:-1] > 0)
    assert torch.all(s[1:] <= s[:-1])
    if name not in ("ddim_uniform",):
        assert float(s[0]) == pytest.approx(SMAX, rel=1e-4)


def test_karras_values():
    n, rho = 10, 7.0
    s = calculate_sigmas(MS, "karras", n)
    for i in range(n):
        expect = (SMAX ** (1 / rho) + i / (n - 1) * (SMIN ** (1 / rho) - SMAX ** (1 / rho))) ** rho
        assert float(s[i]) == pytest.approx(expect, rel=1e-4)
    assert float(s[n - 1]) == pytest.approx(SMIN, rel=1e-4)


def test_exponential_is_geometric():
    s = calculate_sigmas(MS, "exponential", 8)[:-1]
    ratios = s[1:] / s[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)
    assert float(ratios[0]) == pytest.approx((SMIN / SMAX) ** (1 / 7), rel=1e-4)


def test_simple_normal_sgm_ddim_values():
    simple = calculate_sigmas(MS, "simple", 4)
    # every 250th discrete sigma from the top
    expect = [MS.sigmas[999], MS.sigmas[749], MS.sigmas[499], MS.sigmas[249]]
    torch.testing.assert_close(simple[:4], torch.stack(expect))
    normal = calculate_sigmas(MS, "normal", 4)
    t = torch.linspace(999, 0, 4)
    torch.testing.assert_close(normal[:4], MS.sigma(t), rtol=1e-5, atol=1e-6)
    sgm = calculate_sigmas(MS, "sgm_uniform", 4)
    torch.testing.assert_close(sgm[:4], MS.sigma(torch.linspace(999, 0, 5)[:-1]), rtol=1e-5, atol=1e-6)
    ddim = calculate_sigmas(MS, "ddim_uniform", 4)
    torch.testing.assert_close(ddim[:4], MS.sigmas[torch.tensor([751, 501, 251, 1])])


def test_kl_optimal_and_linear_quadratic_and_beta():
    kl = calculate_sigmas(MS, "kl_optimal", 5)
    for i in range(5):
        a = i / 4
        assert float(kl[i]) == pytest.approx(math.tan(a * math.atan(SMIN) + (1 - a) * math.atan(SMAX)), rel=1e-4)
    lq = calculate_sigmas(MS, "linear_quadratic", 10)
    # first half is linear from 1 down to 1 - threshold_noise (0.025), scaled by sigma_max
    assert float(lq[1]) == pytest.approx(SMAX * (1 - 0.025 / 5), rel=1e-5)
    assert float(lq[5]) == pytest.approx(SMAX * (1 - 0.025), rel=1e-5)
    beta = calculate_sigmas(MS, "beta", 10)
    assert float(beta[0]) == pytest.approx(SMAX, rel=1e-5)
    # beta(0.6, 0.6) is symmetric: the middle step sits at the middle timestep
    assert float(beta[5]) == pytest.approx(float(MS.sigmas[500]), rel=0.05)


def test_karras_exponential_polyexponential_vp_nodes():
    (k,) = nodes.KarrasScheduler().get_sigmas(5, 10.0, 0.1, 7.0)
    assert len(k) == 6 and float(k[0]) == pytest.approx(10.0) and float(k[4]) == pytest.approx(0.1, rel=1e-5)
    (e,) = nodes.ExponentialScheduler().get_sigmas(3, 10.0, 0.1)
    torch.testing.assert_close(e, torch.tensor([10.0, 1.0, 0.1, 0.0]), rtol=1e-5, atol=1e-6)
    (p,) = nodes.PolyexponentialScheduler().get_sigmas(3, 10.0, 0.1, 1.0)
    torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    (v,) = nodes.VPScheduler().get_sigmas(4, 19.9, 0.1, 0.001)
    assert float(v[0]) == pytest.approx(math.sqrt(math.exp(19.9 / 2 + 0.1) - 1), rel=1e-4)
    assert float(v[-1]) == 0.0 and len(v) == 5


def test_basic_scheduler_denoise_trims_like_comfyui():
    p = ToyPatcher(GaussianModel())
    (full,) = nodes.BasicScheduler().get_sigmas(p, "normal", 20, 1.0)
    assert len(full) == 21
    (half,) = nodes.BasicScheduler().get_sigmas(p, "normal", 10, 0.5)
    torch.testing.assert_close(half, calculate_sigmas(MS, "normal", 20)[-11:])
    (odd,) = nodes.BasicScheduler().get_sigmas(p, "karras", 7, 0.3)
    torch.testing.assert_close(odd, calculate_sigmas(MS, "karras", int(7 / 0.3))[-8:])
    (none,) = nodes.BasicScheduler().get_sigmas(p, "normal", 10, 0.0)
    assert none.numel() == 0


def test_sdturbo_and_beta_nodes():
    p = ToyPatcher(GaussianModel())
    (s,) = nodes.SDTurboScheduler().get_sigmas(p, 2, 1.0)
    torch.testing.assert_close(s, torch.stack([MS.sigmas[999], MS.sigmas[899], torch.tensor(0.0)]))
    (s,) = nodes.SDTurboScheduler().get_sigmas(p, 1, 0.5)
    torch.testing.assert_close(s, torch.stack([MS.sigmas[499], torch.tensor(0.0)]))
    (b,) = nodes.BetaSamplingScheduler().get_sigmas(p, 10, 0.6, 0.6)
    torch.testing.assert_close(b, calculate_sigmas(MS, "beta", 10))


def test_split_and_flip_sigmas():
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    hi, lo = nodes.SplitSigmas().get_sigmas(s, 2)
    assert hi.tolist() == [5.0, 4.0, 3.0] and lo.tolist() == [3.0, 2.0, 1.0, 0.0]
    hi, lo = nodes.SplitSigmasDenoise().get_sigmas(s, 0.4)
    assert hi.tolist() == [5.0, 4.0, 3.0, 2.0] and lo.tolist() == [2.0, 1.0, 0.0]
    (f,) = nodes.FlipSigmas().get_sigmas(s.clone())
    assert f.tolist()[0] == pytest.approx(0.0001) and f.tolist()[1:] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_get_sigmas_helpers_known_values():
    s = kd.get_sigmas_karras(3, 1.0, 16.0, rho=2.0)
    # sqrt interpolated linearly: 4, 2.5, 1 -> squares
    torch.testing.assert_close(s, torch.tensor([16.0, 6.25, 1.0, 0.0]))
