"""Devices, dtypes, flags and model placement bookkeeping; ModelPatcher options."""
from __future__ import annotations

import pytest
import torch

from comfyui.models import memory
from comfyui.models import sd as sdm

from . import fixtures as fx


@pytest.fixture(autouse=True)
def _reset():
    memory.configure(None, cpu=True)
    memory.unload_all_models()
    yield
    memory.unload_all_models()
    memory.configure(None)


def test_flags_from_config_object():
    from comfyui.config import Config
    memory.configure(Config(cpu=True, fp8_e4m3fn_unet=True, fp16_vae=True, fp32_text_enc=True, reserve_vram=1.5))
    assert memory.get_torch_device().type == "cpu"
    assert memory.vram_state == memory.VRAMState.DISABLED
    assert memory.unet_dtype() == torch.float8_e4m3fn
    assert memory.unet_manual_cast(torch.float8_e4m3fn) == torch.float32  # CPU computes in fp32
    assert memory.vae_dtype() == torch.float16
    assert memory.text_encoder_dtype() == torch.float32
    assert memory.extra_reserved_memory() == int(1.5 * 1024 ** 3)
    memory.configure({"cpu": True, "bf16_unet": True, "gpu_only": True})
    assert memory.unet_dtype() == torch.bfloat16
    assert memory.intermediate_device() == memory.get_torch_device()
    memory.configure(None, cpu=True)
    assert memory.unet_dtype() == torch.float32 and memory.vae_dtype() == torch.float32
    assert memory.intermediate_device().type == "cpu"


def test_load_and_unload_bookkeeping(tmp_path):
    m1 = sdm.load_state_dict_guess_config(fx.sd1_state_dict(seed=41), output_vae=False, output_clip=False)[0]
    m2 = m1.clone()
    m2.add_patches({"diffusion_model.out.2.bias": torch.ones(4)}, 0.5)
    memory.load_models_gpu([m1])
    assert memory.loaded_models() == [m1] and m1.is_fully_loaded()
    bias = m1.model.diffusion_model.out[2].bias
    memory.load_models_gpu([m2])  # a clone with other patches takes the shared module over
    assert m2.is_fully_loaded() and not m1.is_fully_loaded()
    assert memory.loaded_models() == [m2]
    torch.testing.assert_close(m1.model.diffusion_model.out[2].bias, bias + 0.5)
    memory.load_models_gpu([m1])
    assert m1.model.diffusion_model.out[2].bias is bias
    # smart memory off: free_memory offloads everything on the device not kept
    memory.configure(None, cpu=True, disable_smart_memory=True)
    unloaded = memory.free_memory(1, torch.device("cpu"))
    assert m1 in unloaded and memory.loaded_models() == []
    memory.load_models_gpu([m1])
    memory.unload_all_models()
    assert memory.loaded_models() == []


def test_patcher_options_and_object_patches():
    m = sdm.load_state_dict_guess_config(fx.sd1_state_dict(seed=41), output_vae=False, output_clip=False)[0]
    c = m.clone()
    fn = lambda args: args["cond"]  # noqa: E731
    c.set_model_sampler_cfg_function(fn)
    c.set_model_sampler_post_cfg_function(fn)
    c.set_model_attn1_patch(lambda q, k, v, o: (q, k, v))
    assert "sampler_cfg_function" not in m.model_options
    assert m.model_options["transformer_options"] == {}
    assert c.model_options["sampler_post_cfg_function"] == [fn]
    from comfyui.sampling.model_sampling import model_sampling
    ms = model_sampling("v_prediction")
    c.add_object_patch("model_sampling", ms)
    assert c.get_model_object("model_sampling") is ms
    assert m.get_model_object("model_sampling") is m.model.model_sampling
    original = m.model.model_sampling
    memory.load_models_gpu([c])
    assert m.model.model_sampling is ms
    # the attn1 patch is called from inside the UNet
    calls = []
    c.model_options["transformer_options"]["patches"]["attn1_patch"] = [lambda q, k, v, o: (calls.append(1), (q, k, v))[1]]
    m.model.apply_model(torch.randn(1, 4, 8, 8), torch.tensor([1.0]), c_crossattn=torch.randn(1, 77, 32),
                        transformer_options=c.model_options["transformer_options"])
    assert calls
    memory.load_models_gpu([m])
    assert m.model.model_sampling is original


def test_memory_required_scales_with_area():
    m = sdm.load_state_dict_guess_config(fx.sd1_state_dict(seed=41), output_vae=False, output_clip=False)[0]
    a = m.model.memory_required((2, 4, 64, 64))
    assert a > 0 and m.model.memory_required((2, 4, 128, 128)) == pytest.approx(4 * a, rel=1e-3)


def test_fp8_text_encoder_storage():
    sd = fx.sd1_state_dict(seed=42)
    _, clip, _ = sdm.load_state_dict_guess_config(sd, output_vae=False)
    memory.configure(None, cpu=True, fp8_e4m3fn_text_enc=True)
    _, clip8, _ = sdm.load_state_dict_guess_config(sd, output_vae=False)
    w = clip8.cond_stage_model.clip_l.transformer.text_model.encoder.layers[0].mlp.fc1.weight
    assert w.dtype == torch.float8_e4m3fn
    toks = clip.tokenize("fp8 storage")
    a = clip.encode_from_tokens(toks)
    b = clip8.encode_from_tokens(toks)
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a - b).norm() / a.norm() < 0.1


X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx f16c avx2 fma\n"
X86_AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
X86_AMX = "processor\t: 0\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n"


def test_native_bf16_from_cpuinfo():
    assert not memory.cpuinfo_has_native_bf16(X86_AVX2)
    assert memory.cpuinfo_has_native_bf16(X86_AVX512_BF16)
    assert memory.cpuinfo_has_native_bf16(X86_AMX)
    assert memory.cpuinfo_has_native_bf16(ARM_BF16)
    assert not memory.cpuinfo_has_native_bf16(ARM)
    assert not memory.cpuinfo_has_native_bf16("")


def test_native_bf16_detection_agrees_with_this_cpu():
    import os
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo")
    with open("/proc/cpuinfo") as f:
        assert memory.cpu_has_native_bf16() == memory.cpuinfo_has_native_bf16(f.read())


@pytest.mark.parametrize("native", [False, True])
def test_cpu_bf16_policy(monkeypatch, native):
    """bf16 weights compute in bf16 only on a CPU that does bf16 natively; bf16 files keep bf16
    storage there; every other dtype keeps upstream's CPU choices (fp32)."""
    monkeypatch.setattr(memory, "cpu_has_native_bf16", lambda: native)
    families = (torch.bfloat16, torch.float16, torch.float32)
    assert memory.cpu_computes_bf16() is native
    assert memory.unet_manual_cast(torch.bfloat16, None, families) == (None if native else torch.float32)
    assert memory.unet_manual_cast(torch.float16, None, families) == torch.float32
    assert memory.unet_manual_cast(torch.float8_e4m3fn, None, families) == torch.float32
    assert memory.unet_manual_cast(torch.float32, None, families) is None
    assert memory.unet_dtype(None, families, file_dtype=torch.bfloat16) == (torch.bfloat16 if native else torch.float32)
    assert memory.unet_dtype(None, families, file_dtype=torch.float16) == torch.float32
    assert memory.unet_dtype(None, families, file_dtype=torch.float32) == torch.float32
    assert memory.unet_dtype(None, (torch.float16, torch.float32), file_dtype=torch.bfloat16) == torch.float32
    memory.configure(None, cpu=True, force_fp32=True)
    assert memory.unet_manual_cast(torch.bfloat16, None, families) == torch.float32
    assert memory.unet_dtype(None, families, file_dtype=torch.bfloat16) == torch.float32


@pytest.mark.parametrize("native", [False, True])
def test_bf16_file_loads_for_the_cpu_policy(monkeypatch, native):
    """A bf16 Wan file through the loader: bf16 weights computing in bf16 on a native-bf16 CPU,
    upcast to fp32 elsewhere (upstream's CPU choice); the predictions agree within bf16
    rounding."""
    pytest.importorskip("diffusers")
    from . import wan_fixtures
    monkeypatch.setattr(memory, "cpu_has_native_bf16", lambda: native)
    sd = {k: v.to(torch.bfloat16) for k, v in wan_fixtures.native_sd(wan_fixtures.diffusers_wan(seed=3)).items()}
    patcher = sdm.load_diffusion_model_state_dict(sd)
    model = patcher.model
    assert model.get_dtype() == (torch.bfloat16 if native else torch.float32)
    assert model.manual_cast_dtype is None
    assert next(model.diffusion_model.parameters()).dtype == model.get_dtype()
    g = torch.Generator().manual_seed(0)
    x, context = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 8, 64, generator=g)
    out = model.apply_model(x, torch.tensor([0.5]), c_crossattn=context)
    assert out.dtype == torch.float32 and out.shape == x.shape
    monkeypatch.setattr(memory, "cpu_has_native_bf16", lambda: False)
    reference = sdm.load_diffusion_model_state_dict(sd).model.apply_model(x, torch.tensor([0.5]), c_crossattn=context)
    torch.testing.assert_close(out, reference, atol=0.1, rtol=0.05)
