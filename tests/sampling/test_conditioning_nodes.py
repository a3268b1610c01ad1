import torch

from comfyui.nodes.builtin import conditioning as C


def c(val, tokens=3, **opts):
    return [[torch.full((1, tokens, 4), float(val)), dict(opts)]]


def test_combine_and_concat():
    (out,) = C.ConditioningCombine().combine(c(1), c(2))
    assert len(out) == 2 and float(out[1][0][0, 0, 0]) == 2
    (cat,) = C.ConditioningConcat().concat(c(1, pooled_output=torch.ones(1, 2)), c(2, tokens=5))
    assert cat[0][0].shape == (1, 8, 4)
    assert float(cat[0][0][0, 4, 0]) == 2 and "pooled_output" in cat[0][1]


def test_average_tensors_and_pooled():
    to = c(1, pooled_output=torch.full((1, 2), 1.0))
    frm = c(3, tokens=2, pooled_output=torch.full((1, 2), 3.0))
    (out,) = C.ConditioningAverage().addWeighted(to, frm, 0.25)
    t = out[0][0]
    assert t.shape == (1, 3, 4)
    assert torch.allclose(t[:, :2], torch.tensor(0.25 * 1 + 0.75 * 3))
    assert torch.allclose(t[:, 2], torch.tensor(0.25))  # from is zero-padded
    assert torch.allclose(out[0][1]["pooled_output"], torch.tensor(2.5))
    (no_pool,) = C.ConditioningAverage().addWeighted(c(1), frm, 0.5)
    assert torch.allclose(no_pool[0][1]["pooled_output"], torch.tensor(3.0))  # to falls back to from's pooled


def test_set_area_variants_do_not_mutate_input():
    src = c(1)
    (a,) = C.ConditioningSetArea().append(src, 256, 128, 64, 32, 0.5)
    assert a[0][1] == {"area": (16, 32, 4, 8), "strength": 0.5, "set_area_to_bounds": False}
    assert src[0][1] == {}
    (p,) = C.ConditioningSetAreaPercentage().append(src, 0.5, 0.25, 0.1, 0.2, 1.5)
    assert p[0][1]["area"] == ("percentage", 0.25, 0.5, 0.2, 0.1)
    (s,) = C.ConditioningSetAreaStrength().append(a, 2.0)
    assert s[0][1]["strength"] == 2.0 and s[0][1]["area"] == (16, 32, 4, 8)


def test_set_mask_timestep_range_zero_out():
    mask = torch.ones(8, 8)
    (m,) = C.ConditioningSetMask().append(c(1), mask, "mask bounds", 0.7)
    assert m[0][1]["mask"].shape == (1, 8, 8)
    assert m[0][1]["set_area_to_bounds"] is True and m[0][1]["mask_strength"] == 0.7
    (r,) = C.ConditioningSetTimestepRange().set_range(c(1), 0.2, 0.6)
    assert r[0][1]["start_percent"] == 0.2 and r[0][1]["end_percent"] == 0.6
    (z,) = C.ConditioningZeroOut().zero_out(c(5, pooled_output=torch.ones(1, 2)))
    assert torch.count_nonzero(z[0][0]) == 0 and torch.count_nonzero(z[0][1]["pooled_output"]) == 0


def test_node_definitions_match_comfyui_names():
    assert set(C.NODE_CLASS_MAPPINGS) == {
        "ConditioningCombine", "ConditioningAverage", "ConditioningConcat", "ConditioningSetArea",
        "ConditioningSetAreaPercentage", "ConditioningSetAreaStrength", "ConditioningSetMask",
        "ConditioningZeroOut", "ConditioningSetTimestepRange"}
    req = C.ConditioningSetMask.INPUT_TYPES()["required"]
    assert list(req) == ["conditioning", "mask", "strength", "set_cond_area"]
    assert C.NODE_DISPLAY_NAME_MAPPINGS["ConditioningSetArea"] == "Conditioning (Set Area)"
