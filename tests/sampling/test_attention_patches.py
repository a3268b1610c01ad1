"""Self-Attention Guidance, ToMe, HyperTile and Deep Shrink: their math against reference
values recorded by running upstream ComfyUI's own functions (data/upstream_patch_refs.json,
made by data/record_upstream_patch_refs.py at the upstream commit stored in it), and their
effect through the UNet hooks on a tiny random-weight SD1 checkpoint."""
import json
import math
import os
from pathlib import Path

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models.stable_diffusion.unet import attention
from comfyui.nodes.builtin import attention_patches as A
from comfyui.nodes.builtin import unet_patches as U
from comfyui.sampling.samplers import common_ksampler

from models import fixtures as fx

REFS = json.loads((Path(__file__).parent / "data" / "upstream_patch_refs.json").read_text())


def pattern(*shape, k=0.37):  # the record script's inputs
    n = math.prod(shape)
    return torch.sin(torch.arange(n, dtype=torch.float32) * k + 0.1).reshape(shape)


def ref(name, like):
    return torch.tensor(REFS[name], dtype=torch.float32).reshape(like.shape)


def test_sag_math_matches_upstream():
    q, k, v = pattern(1, 16, 8, k=0.31) * 3, pattern(1, 16, 8, k=0.17) * 3, pattern(1, 16, 8, k=0.23)
    out, scores = A.attention_with_scores(q, k, v, 2)
    torch.testing.assert_close(out, ref("sag_attention_out", out), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(scores, ref("sag_scores", scores), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out, attention(q, k, v, 2), atol=1e-5, rtol=1e-5)
    x0 = pattern(1, 2, 8, 8, k=0.53)
    blurred = A.gaussian_blur(x0, 9, 1.5)
    torch.testing.assert_close(blurred, ref("sag_gaussian_blur", blurred), atol=2e-6, rtol=1e-5)
    degraded = A.sag_degrade(x0, scores, 2.0)
    torch.testing.assert_close(degraded, ref("sag_blur_map", degraded), atol=2e-6, rtol=1e-5)
    changed = (degraded != x0).float().mean()
    assert 0 < changed < 1  # some tokens over the threshold, some not


def test_tome_merge_unmerge_match_upstream():
    x = pattern(2, 36, 4, k=0.71)
    torch.manual_seed(7)
    merge, unmerge = A.bipartite_soft_matching(x, 6, 6, 2, 2, 10)
    merged = merge(x)
    assert merged.shape == (2, 26, 4)
    torch.testing.assert_close(merged, ref("tome_merged", merged), atol=2e-6, rtol=1e-5)
    unmerged = unmerge(merged * 2.0)
    torch.testing.assert_close(unmerged, ref("tome_unmerged", unmerged), atol=2e-6, rtol=1e-5)
    # only the full-resolution transformer is merged
    m, _ = A.tome_functions(torch.zeros(1, 16, 4), 0.5, [1, 4, 8, 8])
    assert m(torch.ones(1, 16, 4)).shape == (1, 16, 4)


def test_hypertile_divisor_draws_match_upstream():
    torch.manual_seed(3)
    got = [A.random_divisor(v, m, s) for v, m, s in [(64, 32, 2), (96, 16, 4), (96, 16, 1), (7, 32, 2),
                                                    (128, 8, 3), (128, 8, 3)]]
    assert got == REFS["hypertile_divisors"]


def test_hypertile_attends_within_tiles():
    """The patch pair tiles a 1:2 token map into 2x4 tiles; attention on the tiles, untiled,
    equals attention computed separately on each spatial tile."""
    (m,) = A.HyperTile().patch(_RecordingModel(), 32, 1, 0, False)
    tile_in = m.patches["attn1_patch"][0]
    tile_out = m.patches["attn1_output_patch"][0]
    h, w, c = 8, 16, 4
    x = pattern(1, h * w, c, k=0.13)
    opts = {"original_shape": [1, 4, h, w]}
    q, k, v = tile_in(x, x, x, opts)
    assert q.shape == (2 * 4, 4 * 4, c)  # nh = 8 // 4 = 2, nw = 16 // 4 = 4 tiles of 4x4 tokens
    got = tile_out(attention(q, k, v, 1), opts)
    grid = x.reshape(h, w, c)
    want = torch.empty_like(grid)
    for i in range(2):
        for j in range(4):
            t = grid[i * 4:(i + 1) * 4, j * 4:(j + 1) * 4].reshape(1, 16, c)
            want[i * 4:(i + 1) * 4, j * 4:(j + 1) * 4] = attention(t, t, t, 1).reshape(4, 4, c)
    torch.testing.assert_close(got, want.reshape(1, h * w, c))
    q2, _, _ = tile_in(pattern(1, 32, c), x, x, opts)  # a coarser level (max_depth 0): untouched
    assert q2.shape == (1, 32, c) and tile_out(q2, opts) is q2


class _RecordingModel:
    def __init__(self):
        self.patches = {}

    def clone(self):
        return self

    def set_model_attn1_patch(self, fn):
        self.patches.setdefault("attn1_patch", []).append(fn)

    def set_model_attn1_output_patch(self, fn):
        self.patches.setdefault("attn1_output_patch", []).append(fn)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    from comfyui.models import sd as sdm
    from comfyui.nodes.builtin.text import CLIPTextEncode
    memory.configure(None, cpu=True)
    path = fx.make_sd1_checkpoint(os.path.join(tmp_path_factory.mktemp("sd1"), "sd1.safetensors"))
    model, clip, _ = sdm.load_checkpoint_guess_config(path)
    pos = CLIPTextEncode().encode(clip, "a photo of a cat")[0]
    neg = CLIPTextEncode().encode(clip, "")[0]
    yield {"model": model, "pos": pos, "neg": neg}
    runtime.current().model_files.clear()
    memory.configure(None)


def _sample(env, model, steps=2, size=8):
    lat = {"samples": torch.zeros(1, 4, size, size)}
    return common_ksampler(model, 3, steps, 4.0, "euler", "normal", env["pos"], env["neg"], lat)[0]["samples"]


def _count_calls(model):
    calls = []
    m = model.clone()
    m.add_wrapper_with_key("apply_model", "count", lambda ex, *a, **k: calls.append(a[0].shape[0]) or ex(*a, **k))
    return m, calls


def test_sag_on_sd1(sd1):
    base_model, base_calls = _count_calls(sd1["model"])
    base = _sample(sd1, base_model)
    assert base_calls == [2, 2]  # cond and uncond batched, 2 steps
    (zero,) = A.SelfAttentionGuidance().patch(base_model, 0.0, 2.0)
    torch.testing.assert_close(_sample(sd1, zero), base, atol=1e-4, rtol=1e-4)
    (sag,) = A.SelfAttentionGuidance().patch(sd1["model"], 0.5, 2.0)
    sag, calls = _count_calls(sag)
    out = _sample(sd1, sag)
    assert not torch.allclose(out, base, atol=1e-3)
    assert calls == [2, 1, 2, 1]  # one extra uncond pass per step, on the blurred image


def test_tome_on_sd1(sd1):
    base = _sample(sd1, sd1["model"])
    (none,) = A.TomePatchModel().patch(sd1["model"], 0.0)
    torch.testing.assert_close(_sample(sd1, none), base, atol=1e-5, rtol=1e-5)
    (tome,) = A.TomePatchModel().patch(sd1["model"], 0.5)
    lengths = []
    inner = tome.model_options["transformer_options"]["patches"]["attn1_patch"][0]
    tome.model_options["transformer_options"]["patches"]["attn1_patch"] = [
        lambda q, k, v, o: (lambda r: lengths.append((q.shape[1], r[0].shape[1])) or r)(inner(q, k, v, o))]
    torch.manual_seed(0)
    out = _sample(sd1, tome)
    assert (64, 32) in lengths and (16, 16) in lengths  # 8x8 level halved, 4x4 level untouched
    assert not torch.allclose(out, base, atol=1e-3)


def test_hypertile_on_sd1(sd1):
    base = _sample(sd1, sd1["model"], size=16)
    (one_tile,) = A.HyperTile().patch(sd1["model"], 2048, 1, 0, False)  # tiles as big as the latent
    torch.testing.assert_close(_sample(sd1, one_tile, size=16), base, atol=1e-5, rtol=1e-5)
    (tiled,) = A.HyperTile().patch(sd1["model"], 32, 1, 1, True)
    assert not torch.allclose(_sample(sd1, tiled, size=16), base, atol=1e-3)


def test_deep_shrink_on_sd1(sd1):
    model = sd1["model"]
    base = _sample(sd1, model, steps=4)
    (same,) = U.PatchModelAddDownscale().patch(model, 1, 1.0, 0.0, 1.0, True, "bicubic", "bicubic")
    torch.testing.assert_close(_sample(sd1, same, steps=4), base)
    for after_skip in (True, False):
        (m,) = U.PatchModelAddDownscale().patch(model, 1, 2.0, 0.0, 0.5, after_skip, "bislerp", "bilinear")
        sizes = []  # input block 2 (the downsample) sees 4x4 instead of 8x8 during the first half
        m.set_model_input_block_patch(lambda h, to: (sizes.append((to["block"][1], h.shape[-1])) or h))
        out = _sample(sd1, m, steps=4)
        block1 = [s for b, s in sizes if b == 1]
        block2 = [s for b, s in sizes if b == 2]
        shrunk = block2.count(2)  # the steps with sigma in the first half: input 2 runs on 4x4 -> 2x2
        assert len(block2) == 4 and 0 < shrunk < 4 and block2 == [2] * shrunk + [4] * (4 - shrunk)
        # before the skip is taken: the skip itself is shrunk (the patch that sees it runs after)
        assert block1 == ([8] * 4 if after_skip else [4] * shrunk + [8] * (4 - shrunk))
        assert not torch.allclose(out, base, atol=1e-3)
