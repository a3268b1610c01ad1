"""Custom-sampling nodes of ComfyUI's nodes_custom_sampler / nodes_align_your_steps /
nodes_gits / nodes_optimalsteps / nodes_advanced_samplers: schedules against the published
formulas and tables, sigma edits against hand-computed values, sampler objects against the
KSampler sampler they configure."""
import ast
import math
import os
import subprocess

import pytest
import torch

from comfyui.nodes.builtin import custom_sampling as C
from comfyui.nodes.builtin import sampling as S
from comfyui.sampling import step_tables

from sampling_toy import GaussianModel, ToyPatcher, cond

UPSTREAM = "/work/.mirror/Comfy-Org+ComfyUI/repo"
SD1_MAX, SD1_MIN = 14.614642, 0.0291675


def _custom(p, sampler, sigmas, seed=3, cfg=2.0, latent=None, pos=None, neg=None):
    latent = latent if latent is not None else {"samples": torch.zeros(1, 4, 8, 8)}
    out, _ = S.SamplerCustom().sample(p, True, seed, cfg, pos or cond(0.5), neg or cond(-0.5), sampler, sigmas, latent)
    return out["samples"]


def _sigmas(p, steps=6, scheduler="karras"):
    return S.BasicScheduler().get_sigmas(p, scheduler, steps, 1.0)[0]


# ----------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------
def test_laplace_scheduler_matches_the_formula():
    # x = 0, 1/2, 1: log sigma = -beta sgn(1/2 - x) log(1 - 2|1/2 - x| + 1e-5) -> e^5.76 (clamped), 1, e^-5.76 (clamped)
    (s,) = C.LaplaceScheduler().get_sigmas(3, SD1_MAX, SD1_MIN, 0.0, 0.5)
    torch.testing.assert_close(s, torch.tensor([SD1_MAX, 1.0, SD1_MIN]))
    (s5,) = C.LaplaceScheduler().get_sigmas(5, 100.0, 0.001, 0.5, 1.0)
    x = [0.0, 0.25, 0.5, 0.75, 1.0]
    expected = []
    for xi in x:
        sgn = (0.5 - xi > 0) - (0.5 - xi < 0)
        lam = 0.5 - 1.0 * sgn * math.log(1 - 2 * abs(0.5 - xi) + 1e-5)
        expected.append(min(max(math.exp(lam), 0.001), 100.0))
    torch.testing.assert_close(s5, torch.tensor(expected))
    assert len(s5) == 5  # as upstream: no trailing zero


def test_align_your_steps_tables_and_loglinear_resampling():
    (s10,) = C.AlignYourStepsScheduler().get_sigmas("SD1", 10, 1.0)
    # NVIDIA's published SD1 10-step schedule, last sigma replaced by 0
    published = [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                 0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0]
    torch.testing.assert_close(s10, torch.tensor(published))
    (s20,) = C.AlignYourStepsScheduler().get_sigmas("SDXL", 20, 1.0)
    table = step_tables.AYS_NOISE_LEVELS["SDXL"]
    assert len(s20) == 21 and s20[-1] == 0
    # 20 steps: even entries are the table, odd ones the geometric mean of their neighbours
    for j in range(10):
        assert s20[2 * j].item() == pytest.approx(table[j], rel=1e-6)
        assert s20[2 * j + 1].item() == pytest.approx(math.sqrt(table[j] * table[j + 1]), rel=1e-5)
    (half,) = C.AlignYourStepsScheduler().get_sigmas("SVD", 10, 0.5)
    torch.testing.assert_close(half, torch.tensor([1.789, 0.981, 0.403, 0.173, 0.034, 0.0]))
    assert len(C.AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.0)[0]) == 0


def test_gits_scheduler_published_rows():
    (s2,) = C.GITSScheduler().get_sigmas(0.80, 2, 1.0)
    torch.testing.assert_close(s2, torch.tensor([14.61464119, 7.49001646, 0.0]))
    (s4,) = C.GITSScheduler().get_sigmas(0.85, 4, 1.0)
    torch.testing.assert_close(s4, torch.tensor([14.61464119, 11.54541874, 6.77309084, 1.56271636, 0.0]))
    for coeff in [0.8 + 0.05 * i for i in range(15)]:
        for steps in (2, 10, 20, 30):
            (s,) = C.GITSScheduler().get_sigmas(coeff, steps, 1.0)
            assert len(s) == steps + 1 and s[-1] == 0
            assert s[0].item() == pytest.approx(14.61464119, rel=1e-6)
            assert bool((s[1:] < s[:-1]).all())  # strictly decreasing
    (d,) = C.GITSScheduler().get_sigmas(1.2, 10, 0.3)
    (full,) = C.GITSScheduler().get_sigmas(1.2, 10, 1.0)
    torch.testing.assert_close(d[:-1], full[-4:-1])
    assert len(d) == 4 and d[-1] == 0


def test_optimal_steps_scheduler():
    (s,) = C.OptimalStepsScheduler().get_sigmas("FLUX", 10, 1.0)
    torch.testing.assert_close(s, torch.tensor([0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512,
                                                0.2808, 0.0]))
    (w,) = C.OptimalStepsScheduler().get_sigmas("Wan", 10, 1.0)
    assert len(w) == 11 and w[0].item() == pytest.approx(1.0) and w[-1] == 0


def _upstream_tables(path: str) -> dict:
    try:
        src = subprocess.run(["git", "-C", UPSTREAM, "show", f"HEAD:{path}"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no ComfyUI mirror on this machine")
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "NOISE_LEVELS":
            return ast.literal_eval(node.value)
    raise AssertionError(f"no NOISE_LEVELS in {path}")


@pytest.mark.skipif(not os.path.isdir(UPSTREAM), reason="no ComfyUI mirror on this machine")
def test_tables_equal_upstream_ones():
    assert _upstream_tables("comfy_extras/nodes_align_your_steps.py") == step_tables.AYS_NOISE_LEVELS
    assert _upstream_tables("comfy_extras/nodes_optimalsteps.py") == step_tables.OPTIMAL_NOISE_LEVELS
    gits = _upstream_tables("comfy_extras/nodes_gits.py")
    assert {f"{k:.2f}": v for k, v in gits.items()} == step_tables.gits_noise_levels()


# ----------------------------------------------------------------------------------------
# sigma edits
# ----------------------------------------------------------------------------------------
def test_extend_intermediate_sigmas():
    sig = torch.tensor([10.0, 6.0, 2.0, 0.0])
    (lin,) = C.ExtendIntermediateSigmas().extend(sig, 2, -1.0, 5.0, "linear")
    torch.testing.assert_close(lin, torch.tensor([10.0, 8.0, 6.0, 4.0, 2.0, 0.0]))
    (cos,) = C.ExtendIntermediateSigmas().extend(sig, 3, 8.0, 5.0, "cosine")  # only 6 -> 2 is in [5, 8]
    torch.testing.assert_close(cos, torch.tensor([10.0, 6.0, 6 - 4 * 0.5, 6 - 4 * math.sin(math.pi / 3), 2.0, 0.0]))
    (sine,) = C.ExtendIntermediateSigmas().extend(sig, 2, -1.0, 12.0, "sine")  # nothing at or above 12
    torch.testing.assert_close(sine, sig)
    (sine2,) = C.ExtendIntermediateSigmas().extend(sig, 2, -1.0, 9.0, "sine")
    torch.testing.assert_close(sine2, torch.tensor([10.0, 10 - 4 * (1 - math.cos(math.pi / 4)), 6.0, 2.0, 0.0]))


def test_set_first_sigma_and_percent_to_sigma():
    sig = torch.tensor([14.6, 3.0, 0.0])
    (out,) = C.SetFirstSigma().set_first_sigma(sig, 136.0)
    assert out.tolist() == [136.0, 3.0, 0.0] and sig[0].item() == pytest.approx(14.6)
    p = ToyPatcher(GaussianModel())
    ms = p.get_model_object("model_sampling")
    (big,) = C.SamplingPercentToSigma().get_sigma(p, 0.0, False)
    assert big == pytest.approx(999999999.9)
    (smax,) = C.SamplingPercentToSigma().get_sigma(p, 0.0, True)
    assert smax == pytest.approx(SD1_MAX, rel=1e-5)
    (smin,) = C.SamplingPercentToSigma().get_sigma(p, 1.0, True)
    assert smin == pytest.approx(SD1_MIN, rel=1e-4)
    (mid,) = C.SamplingPercentToSigma().get_sigma(p, 0.5, False)
    assert mid == pytest.approx(ms.sigma(torch.tensor(499.5)).item())


# ----------------------------------------------------------------------------------------
# sampler objects
# ----------------------------------------------------------------------------------------
SAME_AS_SELECT = [
    (C.SamplerEulerAncestral, (1.0, 1.0), "euler_ancestral"),
    (C.SamplerEulerAncestralCFGPP, (1.0, 1.0), "euler_ancestral_cfg_pp"),
    (C.SamplerLMS, (4,), "lms"),
    (C.SamplerDPMPP_3M_SDE, (1.0, 1.0, "cpu"), "dpmpp_3m_sde"),
    (C.SamplerDPMPP_3M_SDE, (1.0, 1.0, "gpu"), "dpmpp_3m_sde_gpu"),
    (C.SamplerDPMPP_2M_SDE, ("midpoint", 1.0, 1.0, "cpu"), "dpmpp_2m_sde"),
    (C.SamplerDPMPP_2M_SDE, ("heun", 1.0, 1.0, "cpu"), "dpmpp_2m_sde_heun"),
    (C.SamplerDPMPP_SDE, (1.0, 1.0, 0.5, "cpu"), "dpmpp_sde"),
    (C.SamplerDPMPP_2S_Ancestral, (1.0, 1.0), "dpmpp_2s_ancestral"),
    (C.SamplerDPMAdaptative, (3, 0.05, 0.0078, 0.05, 0.0, 1.0, 0.0, 0.81, 0.0, 1.0), "dpm_adaptive"),
    (C.SamplerER_SDE, ("ER-SDE", 3, 1.0, 1.0), "er_sde"),
    (C.SamplerEulerCFGpp, ("regular",), "euler_cfg_pp"),
]


@pytest.mark.parametrize("cls,args,name", SAME_AS_SELECT, ids=[f"{c.__name__}-{n}" for c, _, n in SAME_AS_SELECT])
def test_sampler_node_with_defaults_equals_the_named_sampler(cls, args, name):
    p = ToyPatcher(GaussianModel())
    sig = _sigmas(p)
    (node_sampler,) = cls().get_sampler(*args)
    (named,) = S.KSamplerSelect().get_sampler(name)
    torch.testing.assert_close(_custom(p, node_sampler, sig), _custom(p, named, sig))


def test_sampler_options_reach_the_sampler():
    p = ToyPatcher(GaussianModel())
    sig = _sigmas(p)
    (euler,) = S.KSamplerSelect().get_sampler("euler")
    ref = _custom(p, euler, sig)
    # eta 0: no ancestral noise, plain Euler
    (ea0,) = C.SamplerEulerAncestral().get_sampler(0.0, 1.0)
    torch.testing.assert_close(_custom(p, ea0, sig), ref)
    # LMS of order 1 is Euler
    (lms1,) = C.SamplerLMS().get_sampler(1)
    torch.testing.assert_close(_custom(p, lms1, sig), ref)
    # s_noise scales the injected noise: another result
    (ea,) = C.SamplerEulerAncestral().get_sampler(1.0, 1.0)
    (ea_half,) = C.SamplerEulerAncestral().get_sampler(1.0, 0.5)
    assert not torch.allclose(_custom(p, ea, sig), _custom(p, ea_half, sig))
    # ODE solver types are deterministic: the seed does not matter
    (ode,) = C.SamplerER_SDE().get_sampler("ODE", 3, 1.0, 1.0)
    torch.testing.assert_close(_custom(p, ode, sig, seed=3), _custom(p, ode, sig, seed=3))
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    (rt0,) = C.SamplerER_SDE().get_sampler("Reverse-time SDE", 3, 0.0, 1.0)
    a = S.SamplerCustom().sample(p, False, 1, 2.0, cond(0.5), cond(-0.5), rt0, sig, latent)[0]["samples"]
    b = S.SamplerCustom().sample(p, False, 2, 2.0, cond(0.5), cond(-0.5), rt0, sig, latent)[0]["samples"]
    torch.testing.assert_close(a, b)
    (sde,) = C.SamplerER_SDE().get_sampler("Reverse-time SDE", 3, 1.0, 1.0)
    c = S.SamplerCustom().sample(p, False, 1, 2.0, cond(0.5), cond(-0.5), sde, sig, latent)[0]["samples"]
    d = S.SamplerCustom().sample(p, False, 2, 2.0, cond(0.5), cond(-0.5), sde, sig, latent)[0]["samples"]
    assert not torch.allclose(c, d)
    # SA-Solver with eta 0 is an ODE solver; with eta 1 its noise depends on the seed
    (sa0,) = C.SamplerSASolver().get_sampler(p, 0.0, 0.2, 0.8, 1.0, 3, 4, False, False)
    e = S.SamplerCustom().sample(p, False, 1, 2.0, cond(0.5), cond(-0.5), sa0, sig, latent)[0]["samples"]
    f = S.SamplerCustom().sample(p, False, 2, 2.0, cond(0.5), cond(-0.5), sa0, sig, latent)[0]["samples"]
    torch.testing.assert_close(e, f)
    (sa1,) = C.SamplerSASolver().get_sampler(p, 1.0, 0.0, 1.0, 1.0, 3, 4, True, False)
    g = S.SamplerCustom().sample(p, False, 1, 2.0, cond(0.5), cond(-0.5), sa1, sig, latent)[0]["samples"]
    h = S.SamplerCustom().sample(p, False, 2, 2.0, cond(0.5), cond(-0.5), sa1, sig, latent)[0]["samples"]
    assert not torch.allclose(g, h)


def test_euler_cfgpp_alternative():
    p = ToyPatcher(GaussianModel())
    sig = _sigmas(p)
    (alt,) = C.SamplerEulerCFGpp().get_sampler("alternative")
    (euler,) = S.KSamplerSelect().get_sampler("euler")
    # uncond == cond: the direction is plain Euler's
    torch.testing.assert_close(_custom(p, alt, sig, pos=cond(0.5), neg=cond(0.5)),
                               _custom(p, euler, sig, pos=cond(0.5), neg=cond(0.5)))
    # otherwise it steps with (x - 2 denoised + uncond) / sigma: one step by hand
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    two = torch.tensor([2.0, 1.0])
    out = S.SamplerCustom().sample(p, False, 0, 3.0, cond(0.5), cond(-0.5), alt, two, {"samples": x0})[0]["samples"]
    model = p.model

    def d(x, mu):
        return model.apply_model(x, torch.tensor([2.0]), c_crossattn=torch.full((1, 4, 8), mu))

    xin = x0 + 0 * two[0]  # noise disabled: the latent itself is x at sigma 2
    dc, du = d(xin, 0.5), d(xin, -0.5)
    den = du + 3.0 * (dc - du)
    expected = xin + (xin - 2 * den + du) / 2.0 * (1.0 - 2.0)
    torch.testing.assert_close(out, expected)


def test_lcm_upscale_sampler():
    p = ToyPatcher(GaussianModel())
    sig = _sigmas(p, steps=4)
    (up,) = C.SamplerLCMUpscale().get_sampler(2.0, -1, "bislerp")
    out = _custom(p, up, sig)
    assert out.shape == (1, 4, 16, 16)  # x2 over the first upscale steps
    (up3,) = C.SamplerLCMUpscale().get_sampler(1.5, 1, "bilinear")
    assert _custom(p, up3, sig).shape == (1, 4, 12, 12)
    # ratio 1 is plain LCM
    (same,) = C.SamplerLCMUpscale().get_sampler(1.0, -1, "nearest-exact")
    (lcm,) = S.KSamplerSelect().get_sampler("lcm")
    torch.testing.assert_close(_custom(p, same, sig), _custom(p, lcm, sig))


def test_add_noise_scales_noise_by_the_sigma_span():
    p = ToyPatcher(GaussianModel())
    (noise,) = S.RandomNoise().get_noise(5)
    zeros = {"samples": torch.zeros(1, 4, 8, 8)}
    n = noise.generate_noise(zeros)
    (out,) = C.AddNoise().add_noise(p, noise, torch.tensor([8.0, 2.0, 0.5]), zeros)
    torch.testing.assert_close(out["samples"], n * 7.5)  # |8 - 0.5|
    lat = {"samples": torch.full((1, 4, 8, 8), 0.25), "batch_index": [0]}
    (one,) = C.AddNoise().add_noise(p, noise, torch.tensor([3.0]), lat)
    torch.testing.assert_close(one["samples"], 0.25 + n * 3.0)
    assert one["batch_index"] == [0]
    (none,) = C.AddNoise().add_noise(p, noise, torch.tensor([]), lat)
    assert none is lat
