"""Context windows: the window schedules and fuse weights equal upstream's (reference values
recorded by running comfy/context_windows.py, data/upstream_patch_refs.json), and on a tiny SD1
model windows over the batch axis give what sampling the whole batch gives (the UNet treats
batch items independently, so any blend of their windows is the same prediction)."""
import json
import os
from pathlib import Path

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.nodes.builtin.context_windows import ContextWindowsManual, WanContextWindowsManual
from comfyui.sampling import context_windows as cw
from comfyui.sampling.samplers import common_ksampler

from models import fixtures as fx

REFS = json.loads((Path(__file__).parent / "data" / "upstream_patch_refs.json").read_text())
NAMES = {"create_windows_uniform_looped": cw.UNIFORM_LOOPED, "create_windows_uniform_standard": cw.UNIFORM_STANDARD,
         "create_windows_static_standard": cw.STATIC_STANDARD, "create_windows_batched": cw.BATCHED}


def test_schedules_match_upstream():
    assert len(REFS["context_windows"]) == 80
    for key, want in REFS["context_windows"].items():
        name, frames, length, overlap, stride, closed, step = key.split("/")
        h = cw.ContextHandler(NAMES[name], cw.PYRAMID, int(length), int(overlap), int(stride), closed == "True", 0)
        assert h.windows(int(frames), int(step)) == want, key


def test_weights_match_upstream():
    assert [cw.weights_pyramid(n) for n in (1, 4, 5, 8)] == REFS["context_weights"]["pyramid"]
    got = [cw.weights_overlap_linear(6, full_length=20, idxs=idxs, overlap=2)
           for idxs in (list(range(0, 6)), list(range(7, 13)), list(range(14, 20)))]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(REFS["context_weights"]["overlap_linear"]))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="context_overlap"):
        ContextWindowsManual().apply(object(), 4, 4, cw.STATIC_STANDARD, 1, False, cw.PYRAMID, 0)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    from comfyui.models import sd as sdm
    from comfyui.nodes.builtin.text import CLIPTextEncode
    memory.configure(None, cpu=True)
    path = fx.make_sd1_checkpoint(os.path.join(tmp_path_factory.mktemp("sd1"), "sd1.safetensors"))
    model, clip, _ = sdm.load_checkpoint_guess_config(path)
    yield {"model": model, "pos": CLIPTextEncode().encode(clip, "a cat")[0],
           "neg": CLIPTextEncode().encode(clip, "")[0]}
    runtime.current().model_files.clear()
    memory.configure(None)


def _sample(env, model):
    lat = {"samples": torch.zeros(5, 4, 8, 8)}
    return common_ksampler(model, 2, 2, 4.0, "euler", "normal", env["pos"], env["neg"], lat)[0]["samples"]


@pytest.mark.parametrize("schedule,fuse", [(cw.STATIC_STANDARD, cw.PYRAMID), (cw.UNIFORM_STANDARD, cw.RELATIVE),
                                           (cw.UNIFORM_LOOPED, cw.OVERLAP_LINEAR), (cw.BATCHED, cw.FLAT)])
def test_batch_windows_on_sd1_equal_the_whole_batch(sd1, schedule, fuse):
    if "base" not in sd1:
        sd1["base"] = _sample(sd1, sd1["model"])
    (m,) = ContextWindowsManual().apply(sd1["model"], 2, 1, schedule, 1, False, fuse, 0)
    seen = []
    m.add_wrapper_with_key("calc_cond_batch", "spy", lambda ex, model, conds, x, *a: seen.append(x.shape[0]) or
                           ex(model, conds, x, *a))
    out = _sample(sd1, m)
    assert seen and max(seen) <= 2  # the model only ever saw windows of at most 2 batch items
    torch.testing.assert_close(out, sd1["base"], atol=1e-3, rtol=1e-3)  # batch-size float noise only


def test_wan_node_converts_frames_to_latent_frames():
    class M:
        model_options = {}

        def clone(self):
            return M()

    (m,) = WanContextWindowsManual().apply(M(), 81, 30, cw.STATIC_STANDARD, 1, False, cw.PYRAMID)
    h = m.model_options["context_handler"]
    assert (h.context_length, h.context_overlap, h.dim) == (21, 8, 2)
