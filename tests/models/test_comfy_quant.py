"""ComfyUI's per-layer quantization (``<layer>.comfy_quant``): int8 ConvRot weights load as the
dequantization formula says, fp8 "mixed" layers load as scaled fp8 (fp8 storage, computed with
their scale), and a format we cannot read is refused with the layer's name."""
import pytest
import torch
from safetensors.torch import save_file

from comfyui.models import ops
from comfyui.models.loading import ModelFileError, load_torch_file

from .quant_fixtures import fp8_mixed_file, hadamard, int8_convrot_file, quant_conf


def test_regular_hadamard():
    for size in (4, 16, 64, 256):
        h = ops.regular_hadamard(size)
        assert torch.equal(h, hadamard(size))
        assert torch.allclose(h @ h.T, torch.eye(size), atol=1e-6) and torch.equal(h, h.T)
    with pytest.raises(ValueError, match="power of 4"):
        ops.regular_hadamard(32)


def _save(tmp_path, sd, name="m.safetensors"):
    path = str(tmp_path / name)
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return path


def test_int8_convrot_weights_dequantize_by_the_formula(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = {"a.weight": torch.randn(24, 32, generator=g), "a.bias": torch.randn(24, generator=g),
            "b.weight": torch.randn(8, 24, generator=g),          # 24 inputs: not a multiple of 16, plain int8
            "norm.weight": torch.randn(24, generator=g)}
    stored = int8_convrot_file(real, group=16)
    assert stored["a.weight"].dtype == torch.int8 and stored["a.weight_scale"].shape == (24, 1)
    loaded = load_torch_file(_save(tmp_path, stored))
    assert set(loaded) == set(real)
    # the formula, written out: per output row scale, then each group of 16 inputs times H
    q, s = stored["a.weight"].float(), stored["a.weight_scale"]
    h = hadamard(16)
    expected_a = torch.cat([(q[:, i:i + 16] * s) @ h for i in range(0, 32, 16)], dim=1)
    assert loaded["a.weight"].dtype == torch.float32        # the file's unquantized dtype
    assert torch.allclose(loaded["a.weight"], expected_a, atol=1e-6)
    assert torch.allclose(loaded["b.weight"], stored["b.weight"].float() * stored["b.weight_scale"], atol=1e-7)
    # and they are the real weights, up to int8 rounding (half a step in the rotated basis)
    for k in ("a.weight", "b.weight"):
        step = stored[k + "_scale"].max().item()
        assert (loaded[k] - real[k]).abs().max() <= 2 * step
        assert (loaded[k] - real[k]).abs().max() > 0
    assert torch.equal(loaded["a.bias"], real["a.bias"])


def test_int8_scale_as_scalar_or_nested_params(tmp_path):
    q = torch.randint(-127, 128, (4, 16), dtype=torch.int8)
    sd = {"l.weight": q, "l.weight_scale": torch.tensor(0.5),
          "l.comfy_quant": quant_conf(format="int8_tensorwise"),
          "r.weight": q.clone(), "r.weight_scale": torch.full((4,), 0.25),
          "r.comfy_quant": quant_conf(format="int8_tensorwise", params={"convrot": True, "convrot_groupsize": 4}),
          "other": torch.zeros(2, dtype=torch.bfloat16)}
    loaded = load_torch_file(_save(tmp_path, sd))
    assert loaded["l.weight"].dtype == torch.bfloat16
    assert torch.equal(loaded["l.weight"], (q.float() * 0.5).to(torch.bfloat16))
    h = hadamard(4)
    expected = torch.cat([(q[:, i:i + 4].float() * 0.25) @ h for i in range(0, 16, 4)], dim=1)
    assert torch.allclose(loaded["r.weight"].float(), expected.to(torch.bfloat16).float())


def test_fp8_mixed_layers_compute_with_their_scale(tmp_path):
    g = torch.Generator().manual_seed(1)
    real = {"fc.weight": torch.randn(6, 8, generator=g), "fc.bias": torch.randn(6, generator=g),
            "keep.weight": torch.randn(6, 6, generator=g)}
    stored = fp8_mixed_file(real, keep=lambda k: k.startswith("keep."))
    loaded = load_torch_file(_save(tmp_path, stored))
    assert loaded["fc.weight"].dtype == torch.float8_e4m3fn and "fc.scale_weight" in loaded
    assert ops.scaled_fp8_dtype(loaded) == torch.float8_e4m3fn

    with torch.device("meta"):
        net = torch.nn.Sequential()
        net.add_module("fc", ops.Linear(8, 6))
        net.add_module("keep", ops.Linear(6, 6, bias=False))
    missing, unexpected = ops.assign_state_dict(net, loaded, torch.float32)
    assert missing == [] and unexpected == []
    assert net.fc.weight.dtype == torch.float8_e4m3fn and net.keep.weight.dtype == torch.float32
    ops.set_manual_cast(net, True)
    x = torch.randn(3, 8, generator=g)
    w = stored["fc.weight"].float() * stored["fc.weight_scale"]
    expected = torch.nn.functional.linear(torch.nn.functional.linear(x, w, real["fc.bias"]), real["keep.weight"])
    assert torch.allclose(net(x), expected, atol=1e-5)
    assert torch.allclose(w, real["fc.weight"], rtol=0.07, atol=0.02)


def test_unknown_format_is_refused_with_the_layer(tmp_path):
    sd = {"blocks.0.ff.weight": torch.zeros(4, 4, dtype=torch.uint8),
          "blocks.0.ff.weight_scale": torch.tensor(1.0),
          "blocks.0.ff.comfy_quant": quant_conf(format="nvfp4")}
    with pytest.raises(ModelFileError, match=r"blocks\.0\.ff.*'nvfp4' is not supported"):
        load_torch_file(_save(tmp_path, sd))
