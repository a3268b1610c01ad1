"""Weight storage dtypes: fp8 (e4m3fn / e5m2) storage computed in a wider dtype, and the
"scaled fp8" convention, through the real loader (UNETLoader) on a tiny SD1 UNet."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from comfyui.models import ops, sd as sdm
from comfyui.nodes.builtin.loaders import UNETLoader

from . import fixtures as fx

FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}


def _quantizable(key: str, t: torch.Tensor) -> bool:
    return key.endswith(".weight") and t.ndim in (2, 4)  # Linear and Conv weights


def scaled_fp8(sd: dict[str, torch.Tensor], fp8=torch.float8_e4m3fn, with_input_scale=False):
    """(the file ComfyUI's scaled-fp8 convention makes of ``sd``, its dequantised weights)."""
    stored: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=fp8)}
    real: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if _quantizable(k, v):
            scale = v.abs().max().float() / FP8_MAX[fp8]
            q = (v / scale).to(fp8)
            stored[k] = q
            stored[k[:-len("weight")] + "scale_weight"] = scale.reshape(())
            if with_input_scale:
                stored[k[:-len("weight")] + "scale_input"] = torch.tensor(1.0)
            real[k] = q.float() * scale
        else:
            stored[k] = v
            real[k] = v
    return stored, real


def _out(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 5, 32, generator=g)
    return model.model.apply_model(x, torch.tensor([3.0]), c_crossattn=ctx)


@pytest.fixture
def unet():
    return fx.unet_sd(fx.SD1_UNET, seed=3)


@pytest.mark.parametrize("input_scale", [False, True])
def test_scaled_fp8_gives_its_dequantised_weights_output(tmp_path, unet, input_scale):
    stored, real = scaled_fp8(unet, with_input_scale=input_scale)
    save_file(stored, str(tmp_path / "scaled.safetensors"))
    save_file(real, str(tmp_path / "real.safetensors"))
    scaled_model = sdm.load_diffusion_model(str(tmp_path / "scaled.safetensors"))
    real_model = sdm.load_diffusion_model(str(tmp_path / "real.safetensors"), "default")
    # the loader took the scaled path from the file alone: fp8 storage plus per-layer scales
    layer = scaled_model.model.diffusion_model.input_blocks[0][0]
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert float(layer.scale_weight) == pytest.approx(float(unet["input_blocks.0.0.weight"].abs().max()) / 448)
    assert scaled_model.model.manual_cast_dtype in (torch.float32, torch.float16, torch.bfloat16)
    a, b = _out(scaled_model), _out(real_model)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
    # and it differs from the unquantised model only by fp8 rounding
    save_file(unet, str(tmp_path / "orig.safetensors"))
    c = _out(sdm.load_diffusion_model(str(tmp_path / "orig.safetensors")))
    err = float((a - c).abs().max() / c.abs().max())
    assert 1e-5 < err < 0.25  # e4m3 keeps 3 mantissa bits: a few % per weight


@pytest.mark.parametrize("option,fp8", [("fp8_e4m3fn", torch.float8_e4m3fn), ("fp8_e4m3fn_fast", torch.float8_e4m3fn),
                                        ("fp8_e5m2", torch.float8_e5m2)])
def test_unet_loader_fp8_storage_computes_in_a_wider_dtype(tmp_path, unet, option, fp8, monkeypatch):
    save_file(unet, str(tmp_path / "unet.safetensors"))
    monkeypatch.setattr("comfyui.paths.get_full_path_or_raise", lambda folder, name: str(tmp_path / name))
    (model,) = UNETLoader().load_unet("unet.safetensors", option)
    assert model.model.diffusion_model.input_blocks[0][0].weight.dtype == fp8
    assert model.model.manual_cast_dtype is not None and model.model.manual_cast_dtype.itemsize >= 2
    # reference: the same weights rounded through fp8, stored in fp32
    rounded = {k: (v.to(fp8).float() if v.is_floating_point() else v) for k, v in unet.items()}
    save_file(rounded, str(tmp_path / "rounded.safetensors"))
    ref = sdm.load_diffusion_model(str(tmp_path / "rounded.safetensors"))
    a, b = _out(model), _out(ref)
    assert torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())


def test_unet_loader_weight_dtype_options_are_upstreams():
    options = UNETLoader.INPUT_TYPES()["required"]["weight_dtype"][0]
    assert options == ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]


def test_scaled_fp8_marker_is_what_selects_the_path():
    layer = ops.Linear(4, 3)
    w = torch.randn(3, 4)
    q = (w / 0.01).to(torch.float8_e4m3fn)
    with torch.device("meta"):
        meta = ops.Linear(4, 3)
    sd = {"weight": q, "bias": torch.zeros(3), "scale_weight": torch.tensor(0.01)}
    # without the marker the scale is not part of this layer and the fp8 values are taken as real
    missing, _ = ops.assign_state_dict(meta, sd, torch.float32)
    assert meta.weight.dtype == torch.float32 and getattr(meta, "scale_weight", None) is None
    with torch.device("meta"):
        meta = ops.Linear(4, 3)
    ops.assign_state_dict(meta, {**sd, "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, torch.float32)
    meta.cast_weights = True
    x = torch.randn(2, 4)
    assert torch.allclose(meta(x), x @ (q.float() * 0.01).T, atol=1e-6)
    del layer


def test_lora_on_scaled_fp8_patches_real_values(tmp_path, unet):
    stored, real = scaled_fp8(unet)
    save_file(stored, str(tmp_path / "scaled.safetensors"))
    save_file(real, str(tmp_path / "real.safetensors"))
    models = [sdm.load_diffusion_model(str(tmp_path / n)) for n in ("scaled.safetensors", "real.safetensors")]
    key = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    shape = models[1].model.state_dict()[key].shape
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(shape, generator=g) * 0.02
    base = _out(models[1])
    outs = []
    for m in models:
        p = m.clone()
        p.add_patches({key: ("diff", (delta,))}, 1.0)
        from comfyui.models import memory
        memory.load_models_gpu([p])
        outs.append(_out(p))
        memory.unload_all_models()
    assert float((outs[1] - base).abs().max()) > 1e-3  # the patch took effect
    # fp8 re-quantisation of the patched layer is the only difference
    assert torch.allclose(outs[0], outs[1], atol=5e-3, rtol=5e-2), float((outs[0] - outs[1]).abs().max())
