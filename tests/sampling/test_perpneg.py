"""Perp-Neg: the formula by hand, and through the sampler: when the negative's guidance is
parallel to the positive's (as on the toy model, whose prediction is linear in the prompt
mean) its perpendicular part is 0 and Perp-Neg is CFG against the empty prompt."""
import torch

from comfyui.nodes.builtin import perpneg as P
from comfyui.nodes.builtin import sampling as S

from sampling_toy import GaussianModel, ToyPatcher, cond


def v(*vals):
    return torch.tensor(vals, dtype=torch.float32).reshape(1, -1, 1, 1)


def test_perp_neg_formula():
    empty = v(1.0, 1.0)
    pos = empty + v(1.0, 0.0)
    neg = empty + v(1.0, 1.0)  # perpendicular part (0, 1)
    out = P.perp_neg(None, pos, neg, empty, 2.0, 3.0)
    torch.testing.assert_close(out, empty + 3.0 * (v(1.0, 0.0) - 2.0 * v(0.0, 1.0)))


def test_guider_and_patch_equal_cfg_against_the_empty_prompt_on_parallel_guidance():
    p = ToyPatcher(GaussianModel())
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (sigmas,) = S.BasicScheduler().get_sigmas(p, "normal", 5, 1.0)
    (sampler,) = S.KSamplerSelect().get_sampler("euler")
    (noise,) = S.RandomNoise().get_noise(4)
    pos, neg, empty = cond(0.5), cond(-0.7), cond(0.1)
    (g,) = P.PerpNegGuider().get_guider(p, pos, neg, empty, 3.0, 1.0)
    out, _ = S.SamplerCustomAdvanced().sample(noise, g, sampler, sigmas, latent)
    (ref_g,) = S.CFGGuider().get_guider(p, pos, empty, 3.0)
    ref, _ = S.SamplerCustomAdvanced().sample(noise, ref_g, sampler, sigmas, latent)
    torch.testing.assert_close(out["samples"], ref["samples"])
    (m,) = P.PerpNeg().patch(p, empty, 1.0)
    (a,) = S.KSampler().sample(m, 4, 5, 3.0, "euler", "normal", pos, neg, latent, 1.0)
    torch.testing.assert_close(a["samples"], ref["samples"], atol=1e-5, rtol=1e-5)
    # the plain negative would give another picture
    (b,) = S.KSampler().sample(p, 4, 5, 3.0, "euler", "normal", pos, neg, latent, 1.0)
    assert not torch.allclose(b["samples"], ref["samples"])
