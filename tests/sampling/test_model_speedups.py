"""EasyCache / LazyCache (skipped model calls answered with input + the last output-input
difference, decided by the accumulated estimated change), TorchCompileModel (a real
torch.compile of the tiny SD1 UNet on the CPU) and ModelComputeDtype, through the model
wrappers on a tiny random-weight SD1 checkpoint."""
import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.nodes.builtin import model_advanced, model_speedups as S
from comfyui.sampling.samplers import common_ksampler

from models import fixtures as fx

STEPS = 10


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


def _sample(env, model, steps=STEPS):
    lat = {"samples": torch.zeros(1, 4, 16, 16)}
    return common_ksampler(model, 5, steps, 4.0, "euler", "normal", env["pos"], env["neg"], lat)[0]["samples"]


def _check_cache(sd1, node, kind):
    """``node`` on the model between an outer recorder of each ``kind`` call and an inner one
    that marks the calls that really ran."""
    calls = []

    def outer(executor, x, *args, **kwargs):
        entry = {"ran": False}
        calls.append(entry)
        out = executor(x, *args, **kwargs)
        entry["diff"] = (out - x).clone()
        return out

    def inner(executor, *args, **kwargs):
        calls[-1]["ran"] = True
        return executor(*args, **kwargs)

    def patched(threshold):
        m = sd1["model"].clone()
        m.add_wrapper_with_key(kind, "outer", outer)
        (m,) = node().patch(m, threshold, 0.15, 0.95, False)
        m.add_wrapper_with_key(kind, "inner", inner)
        return m

    if "base" not in sd1:
        sd1["base"] = _sample(sd1, sd1["model"])
    base = sd1["base"]
    torch.testing.assert_close(_sample(sd1, patched(0.0)), base)  # threshold 0: every call runs
    assert len(calls) == STEPS and all(c["ran"] for c in calls)
    calls.clear()
    cached = patched(3.0)
    out = _sample(sd1, cached)
    ran = [c["ran"] for c in calls]
    assert len(calls) == STEPS and 2 < sum(ran) < STEPS - 2, ran
    assert ran[:3] == [True] * 3 and ran[-1]  # before start_percent, two to measure; after end_percent
    assert torch.isfinite(out).all() and not torch.allclose(out, base, atol=1e-4)
    last = None
    for c in calls:  # a skipped call answers its input plus the difference of the last call that ran
        if c["ran"]:
            last = c["diff"]
        else:
            torch.testing.assert_close(c["diff"], last, atol=1e-6, rtol=1e-5)
    holder = cached.model_options["transformer_options"]["easycache"]  # each run works on a fresh copy
    assert holder.prev_x is None and holder.skipped == 0


def test_easycache_skips_network_calls(sd1):
    _check_cache(sd1, S.EasyCache, "diffusion_model")


def test_lazycache_skips_guided_predictions(sd1):
    _check_cache(sd1, S.LazyCache, "predict_noise")


@pytest.fixture(scope="module")
def one_level_sd1(tmp_path_factory):
    """An SD1 checkpoint whose UNet has one resolution level: fewer kernels to compile."""
    from comfyui.models import sd as sdm
    cfg = dict(fx.SD1_UNET, num_res_blocks=[1], channel_mult=[1], transformer_depth=[1],
               transformer_depth_output=[1, 1])
    state = {k: v for k, v in fx.sd1_state_dict().items() if not k.startswith("model.diffusion_model.")}
    state.update({"model.diffusion_model." + k: v for k, v in fx.unet_sd(cfg, 0).items()})
    path = os.path.join(tmp_path_factory.mktemp("sd1c"), "sd1c.safetensors")
    fx._save(state, path)
    model, clip, _ = sdm.load_checkpoint_guess_config(path)
    from comfyui.nodes.builtin.text import CLIPTextEncode
    return {"model": model, "pos": CLIPTextEncode().encode(clip, "a cat")[0], "neg": CLIPTextEncode().encode(clip, "")[0]}


def test_torch_compile_model_runs_compiled(one_level_sd1, monkeypatch):
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config, "compile_threads", 1)  # no worker pool on a busy test machine
    env = one_level_sd1
    torch._dynamo.reset()
    base = _sample(env, env["model"], steps=1)
    (m,) = S.TorchCompileModel().patch(env["model"], "inductor")
    seen = []
    m.add_wrapper_with_key("diffusion_model", "spy", lambda ex, *a, **k: seen.append(type(ex.class_obj)) or ex(*a, **k))
    out = _sample(env, m, steps=1)
    assert seen and all(c.__name__ == "OptimizedModule" for c in seen)
    torch.testing.assert_close(out, base, atol=5e-3, rtol=5e-3)  # inductor's fused kernels round differently
    assert type(env["model"].model.diffusion_model).__name__ == "UNetModel"  # swapped back after the call
    assert "torch.compile" not in env["model"].model_options["transformer_options"].get("wrappers", {}).get(
        "apply_model", {})
    torch._dynamo.reset()


def test_model_compute_dtype(sd1):
    base = _sample(sd1, sd1["model"], steps=2)
    (same,) = model_advanced.ModelComputeDtype().patch(sd1["model"], "default")
    torch.testing.assert_close(_sample(sd1, same, steps=2), base)
    (bf16,) = model_advanced.ModelComputeDtype().patch(sd1["model"], "bf16")
    dtypes = []
    bf16.add_wrapper_with_key("diffusion_model", "spy", lambda ex, x, *a, **k: dtypes.append(x.dtype) or ex(x, *a, **k))
    out = _sample(sd1, bf16, steps=2)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert not torch.equal(out, base)
    assert (out - base).abs().mean() < 0.05 * base.abs().mean()  # bf16 rounding only
    torch.testing.assert_close(_sample(sd1, sd1["model"], steps=2), base)  # the original computes in fp32 again
