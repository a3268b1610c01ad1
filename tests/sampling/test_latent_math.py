"""Latent math nodes (ComfyUI's nodes_latent / nodes_rebatch) against hand-computed values,
and chained with the sampler the way workflows use them."""
import math

import pytest
import torch

from comfyui.nodes.builtin import latent_ops as L
from comfyui.nodes.builtin import rebatch as R
from comfyui.nodes.builtin import sampling as S

from sampling_toy import GaussianModel, ToyPatcher, cond


def lat(t, **kw):
    return {"samples": t, **kw}


def pixel(*channels):
    """A [1, C, 1, 1] latent holding one pixel vector."""
    return torch.tensor(channels, dtype=torch.float32).reshape(1, -1, 1, 1)


def test_add_subtract_multiply_resize_and_repeat_the_second_latent():
    s1 = torch.arange(3 * 4 * 8 * 8, dtype=torch.float32).reshape(3, 4, 8, 8)
    s2 = torch.ones(1, 4, 4, 4)  # other size and batch: resized to 8x8 and repeated to 3
    (a,) = L.LatentAdd().op(lat(s1, batch_index=[4, 5, 6]), lat(s2))
    torch.testing.assert_close(a["samples"], s1 + 1)
    assert a["batch_index"] == [4, 5, 6]  # samples1's other keys are kept
    (d,) = L.LatentSubtract().op(lat(s1), lat(2 * s2))
    torch.testing.assert_close(d["samples"], s1 - 2)
    (m,) = L.LatentMultiply().op(lat(s1), -0.5)
    torch.testing.assert_close(m["samples"], s1 * -0.5)
    # a larger batch in samples2 is cut to samples1's
    (a2,) = L.LatentAdd().op(lat(torch.zeros(2, 4, 8, 8)), lat(torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 4, 8, 8)))
    assert a2["samples"].shape == (2, 4, 8, 8)
    assert a2["samples"][:, 0, 0, 0].tolist() == [0.0, 1.0]


def test_interpolate_mixes_direction_and_length_separately():
    s1 = pixel(3.0, 4.0, 0.0, 0.0)  # length 5, direction (0.6, 0.8, 0, 0)
    s2 = pixel(0.0, 0.0, 0.0, 2.0)  # length 2, direction (0, 0, 0, 1)
    (half,) = L.LatentInterpolate().op(lat(s1), lat(s2), 0.5)
    # t = (0.3, 0.4, 0, 0.5), |t| = sqrt(0.5); length 0.5 * 5 + 0.5 * 2 = 3.5
    expected = torch.tensor([0.3, 0.4, 0.0, 0.5]) / math.sqrt(0.5) * 3.5
    torch.testing.assert_close(half["samples"].flatten(), expected)
    (one,) = L.LatentInterpolate().op(lat(s1), lat(s2), 1.0)
    torch.testing.assert_close(one["samples"], s1)
    (zero,) = L.LatentInterpolate().op(lat(s1), lat(s2), 0.0)
    torch.testing.assert_close(zero["samples"], s2)
    # a zero vector has no direction: the other one's direction with the mixed length
    (z,) = L.LatentInterpolate().op(lat(pixel(0.0, 0.0, 0.0, 0.0)), lat(s2), 0.5)
    torch.testing.assert_close(z["samples"].flatten(), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # batches stay apart: each sample interpolates with its own partner
    b1 = torch.cat([s1, 2 * s1])
    b2 = torch.cat([s2, s2])
    (b,) = L.LatentInterpolate().op(lat(b1), lat(b2), 0.5)
    torch.testing.assert_close(b["samples"][0], half["samples"][0])
    assert abs(float(torch.linalg.vector_norm(b["samples"][1])) - (0.5 * 10 + 0.5 * 2)) < 1e-5


def test_concat_and_cut():
    s1 = torch.zeros(2, 4, 3, 5)
    s2 = torch.ones(1, 4, 3, 2)
    (x,) = L.LatentConcat().op(lat(s1), lat(s2), "x")
    assert x["samples"].shape == (2, 4, 3, 7)
    assert x["samples"][..., 5:].eq(1).all() and x["samples"][..., :5].eq(0).all()
    (mx,) = L.LatentConcat().op(lat(s1), lat(s2), "-x")
    assert mx["samples"][..., :2].eq(1).all() and mx["samples"][..., 2:].eq(0).all()
    (my,) = L.LatentConcat().op(lat(s1), lat(torch.ones(1, 4, 2, 5)), "-y")
    assert my["samples"].shape == (2, 4, 5, 5) and my["samples"][:, :, :2].eq(1).all()
    video = torch.zeros(1, 4, 3, 2, 2)
    (t,) = L.LatentConcat().op(lat(video), lat(torch.ones(1, 4, 2, 2, 2)), "t")
    assert t["samples"].shape == (1, 4, 5, 2, 2)

    s = torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 4, 2, 5)
    (c,) = L.LatentCut().op(lat(s), "x", 3, 5)  # clipped to the 2 columns left
    assert c["samples"][0, 0, 0].tolist() == [3.0, 4.0]
    (n,) = L.LatentCut().op(lat(s), "x", -2, 5)  # the last two
    assert n["samples"][0, 0, 0].tolist() == [3.0, 4.0]
    (far,) = L.LatentCut().op(lat(s), "x", 10, 3)  # past the end: the last one
    assert far["samples"][0, 0, 0].tolist() == [4.0]
    (y,) = L.LatentCut().op(lat(s), "y", 1, 1)
    assert y["samples"].shape == (1, 4, 1, 5)
    (tc,) = L.LatentCut().op(lat(torch.arange(3.0).reshape(1, 1, 3, 1, 1)), "t", -1, 1)
    assert tc["samples"].flatten().tolist() == [2.0]


def test_batch_seed_behavior():
    s = torch.zeros(3, 4, 8, 8)
    (f,) = L.LatentBatchSeedBehavior().op(lat(s, batch_index=[5, 6, 7]), "fixed")
    assert f["batch_index"] == [5, 5, 5]
    (f0,) = L.LatentBatchSeedBehavior().op(lat(s), "fixed")
    assert f0["batch_index"] == [0, 0, 0]
    (r,) = L.LatentBatchSeedBehavior().op(lat(s, batch_index=[5, 6, 7]), "random")
    assert "batch_index" not in r
    spec = L.LatentBatchSeedBehavior.INPUT_TYPES()["required"]["seed_behavior"]
    assert spec == (["random", "fixed"], {"default": "fixed"})


def test_fixed_seed_behavior_gives_every_batch_member_the_same_image():
    p = ToyPatcher(GaussianModel())
    (fixed,) = L.LatentBatchSeedBehavior().op(lat(torch.zeros(3, 4, 8, 8)), "fixed")
    (out,) = S.KSampler().sample(p, 7, 4, 1.0, "euler", "normal", cond(0.5), cond(0.0), fixed, 1.0)
    x = out["samples"]
    torch.testing.assert_close(x[1], x[0])
    torch.testing.assert_close(x[2], x[0])
    (rand,) = L.LatentBatchSeedBehavior().op(fixed, "random")
    (out2,) = S.KSampler().sample(p, 7, 4, 1.0, "euler", "normal", cond(0.5), cond(0.0), rand, 1.0)
    assert not torch.allclose(out2["samples"][1], out2["samples"][0])
    torch.testing.assert_close(out2["samples"][0], x[0])  # member 0 keeps seed 7's noise


def test_tonemap_reinhard_values():
    (op,) = L.LatentOperationTonemapReinhard().op(1.0)
    # equal lengths: std 0, top = mean = 2, new length 2 * 2 / (2 + 2) = 1; direction kept
    x = torch.zeros(1, 4, 2, 2)
    x[:, 1] = 2.0
    x[0, 2, 0, 0], x[0, 1, 0, 0] = 2.0, 0.0
    y = op(latent=x)
    torch.testing.assert_close(y, x / 2)
    # lengths 1 and 3: mean 2, std sqrt(2), top = 2 + 5 sqrt(2); length m -> m top / (m + top)
    v = torch.tensor([1.0, -3.0]).reshape(1, 1, 1, 2)
    top = 2 + 5 * math.sqrt(2)
    expected = torch.tensor([top / (1 + top), -3 * top / (3 + top)]).reshape(1, 1, 1, 2)
    torch.testing.assert_close(op(latent=v), expected)
    (op2,) = L.LatentOperationTonemapReinhard().op(0.5)  # top halves
    top2 = top / 2
    torch.testing.assert_close(op2(latent=v)[0, 0, 0, 0], torch.tensor(top2 / (1 + top2)))


def test_sharpen_values():
    (identity,) = L.LatentOperationSharpen().op(3, 1.0, 0.0)  # alpha 0: centre 1, rest 0
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(identity(latent=x), x, atol=1e-5, rtol=1e-5)
    (op,) = L.LatentOperationSharpen().op(1, 1.0, 0.1)
    # 3x3 gaussian on a [-1, 1] grid: centre 1, edges e^-1/2, corners e^-1; scaled by -10 alpha = -1
    # and the centre raised so the kernel sums to 1
    g_sum = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1)
    edge, corner = -math.exp(-0.5) / g_sum, -math.exp(-1) / g_sum
    centre = 2 - 1 / g_sum
    # directions (1, 0) everywhere but the centre, which is (0, 2): length 2, direction (0, 1)
    lt = torch.zeros(1, 2, 3, 3)
    lt[0, 0] = 1.0
    lt[0, :, 1, 1] = torch.tensor([0.0, 2.0])
    y = op(latent=lt)
    torch.testing.assert_close(y[0, :, 1, 1], torch.tensor([2 * (4 * edge + 4 * corner), 2 * centre]), atol=1e-5,
                               rtol=1e-5)
    # the same direction everywhere is left as it is (the kernel sums to 1, reflect padding)
    const = torch.tensor([0.6, -0.8]).reshape(1, 2, 1, 1).expand(1, 2, 6, 6) * torch.rand(1, 1, 6, 6).add(0.5)
    torch.testing.assert_close(op(latent=const), const, atol=1e-5, rtol=1e-5)


def test_apply_operation_nodes():
    (op,) = L.LatentOperationTonemapReinhard().op(1.0)
    x = torch.full((1, 4, 2, 2), 1.0)  # lengths 2 -> 1
    (out,) = L.LatentApplyOperation().op(lat(x, batch_index=[3]), op)
    torch.testing.assert_close(out["samples"], x / 2)
    assert out["batch_index"] == [3]


def test_apply_operation_cfg_acts_on_the_guidance_direction():
    p = ToyPatcher(GaussianModel())
    latent = lat(torch.zeros(1, 4, 8, 8))

    def double(latent, **kwargs):
        return latent * 2

    (patched,) = L.LatentApplyOperationCFG().op(p, double)
    assert "sampler_pre_cfg_function" not in p.model_options  # the input model is untouched
    # doubling cond - uncond at cfg 2 is plain CFG at 4
    (a,) = S.KSampler().sample(patched, 1, 4, 2.0, "euler", "normal", cond(0.5), cond(-0.5), latent, 1.0)
    (b,) = S.KSampler().sample(p, 1, 4, 4.0, "euler", "normal", cond(0.5), cond(-0.5), latent, 1.0)
    torch.testing.assert_close(a["samples"], b["samples"])
    # without an uncond pass (cfg 1) the operation acts on the cond prediction
    (c,) = S.KSampler().sample(patched, 1, 1, 1.0, "euler", "normal", cond(0.5), cond(-0.5), latent, 1.0)
    (d,) = S.KSampler().sample(p, 1, 1, 1.0, "euler", "normal", cond(0.5), cond(-0.5), latent, 1.0)
    torch.testing.assert_close(c["samples"], 2 * d["samples"])
    # a real operation chained in: tonemapping the guidance changes the result
    (tm,) = L.LatentOperationTonemapReinhard().op(0.5)
    (tmodel,) = L.LatentApplyOperationCFG().op(p, tm)
    (e,) = S.KSampler().sample(tmodel, 1, 4, 4.0, "euler", "normal", cond(0.5), cond(-0.5), latent, 1.0)
    assert torch.isfinite(e["samples"]).all() and not torch.allclose(e["samples"], b["samples"])


def test_rebatch_latents_regroups_with_indices_and_masks():
    a = lat(torch.full((3, 4, 8, 8), 1.0))
    b = lat(torch.full((2, 4, 8, 8), 2.0))
    c = lat(torch.full((1, 4, 4, 4), 3.0))
    (out,) = R.RebatchLatents().rebatch([a, b, c], [2])
    assert [o["samples"].shape[0] for o in out] == [2, 2, 1, 1]
    assert [o["batch_index"] for o in out] == [[0, 1], [2, 3], [4], [5]]
    assert out[1]["samples"][:, 0, 0, 0].tolist() == [1.0, 2.0]
    assert out[3]["samples"].shape == (1, 4, 4, 4)
    assert all("noise_mask" not in o for o in out)  # all-ones masks are dropped
    # a noise mask travels with its latents; given batch indices are kept
    mask = torch.zeros(1, 64, 64)
    m = lat(torch.zeros(2, 4, 8, 8), noise_mask=mask, batch_index=[10, 11])
    (out2,) = R.RebatchLatents().rebatch([m, lat(torch.zeros(1, 4, 8, 8))], [3])
    assert len(out2) == 1 and out2[0]["batch_index"] == [10, 11, 2]
    nm = out2[0]["noise_mask"]
    assert nm.shape == (3, 1, 64, 64)
    assert nm[:2].eq(0).all() and nm[2].eq(1).all()
    spec = R.RebatchLatents
    assert spec.INPUT_IS_LIST is True and spec.OUTPUT_IS_LIST == (True,)


@pytest.mark.parametrize("cls", [L.LatentApplyOperation, L.LatentApplyOperationCFG, L.LatentOperationSharpen,
                                 L.LatentOperationTonemapReinhard])
def test_operation_nodes_are_experimental(cls):
    assert cls.EXPERIMENTAL is True and cls.CATEGORY == "latent/advanced/operations"


def test_latent_ops_are_registered_with_upstream_specs():
    spec = L.LatentCut.INPUT_TYPES()["required"]
    assert spec["index"][1] == {"default": 0, "min": -16384, "max": 16384, "step": 1}
    assert L.LatentInterpolate.INPUT_TYPES()["required"]["ratio"][1] == {"default": 1.0, "min": 0.0, "max": 1.0,
                                                                        "step": 0.01}
    assert L.LatentMultiply.INPUT_TYPES()["required"]["multiplier"][1]["min"] == -10.0
