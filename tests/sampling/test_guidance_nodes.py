"""CFG-level guidance patches (CFGZeroStar, CFGNorm, Mahiro, TCFG, APG, FreSca, Epsilon
Scaling): their formulas on hand-computed inputs, and their effect through the sampler."""
import math

import pytest
import torch

from comfyui.nodes.builtin import guidance as G
from comfyui.nodes.builtin import sampling as S
from comfyui.nodes.builtin import wan as W

from sampling_toy import GaussianModel, ToyPatcher, cond


def v(*vals):
    """[1, C, 1, 1] from channel values."""
    return torch.tensor(vals, dtype=torch.float32).reshape(1, -1, 1, 1)


def post_args(x, c, u, scale):
    return {"input": x, "cond_denoised": c, "uncond_denoised": u, "cond_scale": scale,
            "denoised": u + scale * (c - u)}


def _fn(patched, kind):
    return patched.model_options[f"sampler_{kind}_function"][-1]


def _sample(p, cfg=3.0, steps=4, seed=2):
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return S.KSampler().sample(p, seed, steps, cfg, "euler", "normal", cond(0.5), cond(-0.5), latent, 1.0)[0]["samples"]


def test_cfg_zero_star_formula():
    # x = 0: noise predictions -c, -u; s* = <c, u> / |u|^2 = 2 / 4
    x, c, u = v(0.0, 0.0), v(1.0, 2.0), v(2.0, 0.0)
    (m,) = W.CFGZeroStar.execute(ToyPatcher(GaussianModel())).result  # the node lives in wan
    out = _fn(m, "post_cfg")(post_args(x, c, u, 3.0))
    # cfg (-1, 6) + u (s* - 1) + 3 u (1 - s*) = (-1 - 1 + 3, 6)
    torch.testing.assert_close(out, v(1.0, 6.0))


def test_cfg_norm_formula():
    (m,) = G.CFGNorm().patch(ToyPatcher(GaussianModel()), 0.5)
    fn = _fn(m, "post_cfg")
    c = v(3.0, 4.0)  # |c| = 5
    args = {"cond_denoised": c, "denoised": v(6.0, 8.0)}  # |cfg| = 10: scaled to 5, then x0.5
    torch.testing.assert_close(fn(args), v(1.5, 2.0))
    args = {"cond_denoised": c, "denoised": v(0.3, 0.4)}  # shorter than cond: scale clamps to 1
    torch.testing.assert_close(fn(args), v(0.15, 0.2))


def test_mahiro_formula():
    (m,) = G.Mahiro().patch(ToyPatcher(GaussianModel()))
    fn = _fn(m, "post_cfg")
    a = v(1.0, 2.0)
    # cond, uncond and cfg all along a: similarity 1, the CFG result is kept
    out = fn(post_args(v(0.0, 0.0), a, a, 2.0))
    torch.testing.assert_close(out, a)
    # uncond opposite to cond: similarity -1, the result is the cond scaled by cfg ("leap")
    out = fn(post_args(v(0.0, 0.0), a, -a, 2.0))  # cfg = 3a, merge = 2.5a, uncond leap = -2a
    torch.testing.assert_close(out, 2 * a)


def test_tcfg_drops_the_tangential_part_of_the_uncond_score():
    (m,) = G.TCFG().patch(ToyPatcher(GaussianModel()))
    fn = _fn(m, "pre_cfg")
    x = v(5.0, 5.0)
    cond_pred, uncond_pred = x - v(0.0, 2.0), x - v(1.0, 0.0)  # scores (0, 2) and (1, 0)
    # [u; c] = [[1, 0], [0, 2]]: first right-singular vector (0, 1); u projects to 0
    out = fn({"input": x, "conds_out": [cond_pred, uncond_pred], "conds": [[{}], [{}]]})
    torch.testing.assert_close(out[0], cond_pred)
    torch.testing.assert_close(out[1], x)
    # an uncond score along the cond score is kept
    par = x - v(0.0, 1.0)
    out = fn({"input": x, "conds_out": [cond_pred, par], "conds": [[{}], [{}]]})
    torch.testing.assert_close(out[1], par)
    # no uncond pass: untouched
    assert fn({"input": x, "conds_out": [cond_pred, None], "conds": [[{}], None]})[1] is None


def test_apg_formula_and_sampling():
    p = ToyPatcher(GaussianModel())
    # eta 1, no clipping, no momentum: upstream's rewrite gives cond + cfg * (cond - uncond),
    # i.e. CFG at cfg + 1
    (plain_apg,) = G.APG().patch(p, 1.0, 0.0, 0.0)
    torch.testing.assert_close(_sample(plain_apg, cfg=3.0), _sample(p, cfg=4.0))
    (m,) = G.APG().patch(p, 0.0, 0.0, 0.0)
    fn = _fn(m, "pre_cfg")
    c = torch.zeros(1, 2, 2, 2)
    c[0, 0] = 1.0  # cond along channel 0
    u = torch.zeros(1, 2, 2, 2)
    u[0, 1] = 1.0
    sig = torch.tensor([1.0])
    out = fn({"conds_out": [c, u], "sigma": sig, "cond_scale": 2.0})
    # guidance c - u; eta 0 keeps its part orthogonal to c: -u; new cond = u - u + (c - u) / 2
    torch.testing.assert_close(out[0], (c - u) / 2)
    torch.testing.assert_close(out[1], u)
    # norm clipping: |c - u| = sqrt(8) clipped to 1
    (mc,) = G.APG().patch(p, 1.0, 1.0, 0.0)
    out = _fn(mc, "pre_cfg")({"conds_out": [c, u], "sigma": sig, "cond_scale": 2.0})
    torch.testing.assert_close(out[0], u + (c - u) / math.sqrt(8) + (c - u) / 2)
    # momentum: the second call (lower sigma) adds the running average; a higher sigma resets it
    (mm,) = G.APG().patch(p, 1.0, 0.0, 0.5)
    fm = _fn(mm, "pre_cfg")
    first = fm({"conds_out": [c, u], "sigma": torch.tensor([2.0]), "cond_scale": 1.0})[0]
    second = fm({"conds_out": [c, u], "sigma": torch.tensor([1.0]), "cond_scale": 1.0})[0]
    torch.testing.assert_close(first, u + 2 * (c - u))
    torch.testing.assert_close(second, u + 2.5 * (c - u))  # 0.5 g + g, plus g / 1
    reset = fm({"conds_out": [c, u], "sigma": torch.tensor([3.0]), "cond_scale": 1.0})[0]
    torch.testing.assert_close(reset, first)


def test_fresca_fourier_filter():
    g = torch.zeros(1, 1, 8, 8)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0  # Nyquist frequency
    g[0, 0] = 0.5 + checker
    # cutoff 1: the centred 2x2 block (the DC term and its neighbours) is "low"
    out = G.fourier_filter(g, scale_low=1.0, scale_high=0.0, freq_cutoff=1)
    torch.testing.assert_close(out, torch.full_like(g, 0.5), atol=1e-5, rtol=1e-5)
    out = G.fourier_filter(g, scale_low=3.0, scale_high=2.0, freq_cutoff=1)
    torch.testing.assert_close(out[0, 0], 1.5 + 2 * checker, atol=1e-5, rtol=1e-5)
    p = ToyPatcher(GaussianModel())
    (ident,) = G.FreSca().patch(p, 1.0, 1.0, 20)
    torch.testing.assert_close(_sample(ident), _sample(p), atol=1e-5, rtol=1e-5)
    (f,) = G.FreSca().patch(p, 2.0, 1.25, 20)  # every frequency of an 8x8 latent is "low": CFG x2
    fn = _fn(f, "pre_cfg")
    c, u = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    out = fn({"conds_out": [c, u], "conds": [[{}], [{}]]})
    torch.testing.assert_close(out[0], u + 2 * (c - u), atol=1e-5, rtol=1e-5)


def test_epsilon_scaling():
    (m,) = G.EpsilonScaling().patch(ToyPatcher(GaussianModel()), 1.25)
    out = _fn(m, "post_cfg")({"input": v(1.0), "denoised": v(0.5)})
    torch.testing.assert_close(out, v(0.6))  # noise 0.5 / 1.25 = 0.4


@pytest.mark.parametrize("make", [
    lambda p: W.CFGZeroStar.execute(p).result, lambda p: G.CFGNorm().patch(p, 0.9), lambda p: G.Mahiro().patch(p),
    lambda p: G.TCFG().patch(p), lambda p: G.APG().patch(p, 0.5, 5.0, -0.5),
    lambda p: G.FreSca().patch(p, 1.5, 1.25, 2), lambda p: G.EpsilonScaling().patch(p, 1.05)])
def test_patches_change_sampling_and_leave_the_input_model(make):
    p = ToyPatcher(GaussianModel())
    before = dict(p.model_options)
    (m,) = make(p)
    assert p.model_options == before
    a, b = _sample(m), _sample(p)
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
