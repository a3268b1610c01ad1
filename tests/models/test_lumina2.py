"""Lumina 2 / Z-Image (NextDiT): against diffusers' ``ZImageTransformer2DModel`` on the same tiny
random weights (written in ComfyUI's native layout with the key map of ``lumina2_fixtures``),
detection on the real layouts, and the sign of the model output."""
from __future__ import annotations

import pytest
import torch

from comfyui.models.lumina2 import detect as lumina_detect
from comfyui.models.lumina2.model import NextDiT

from . import lumina2_fixtures as lf

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def tiny_pair():
    ref = lf.diffusers_z_image(seed=1)
    native = lf.z_image_diffusers_to_native(ref.state_dict())
    net = NextDiT(lumina_detect.detect(native, "")).eval()
    net.load_state_dict(native, strict=True)
    return ref, net


def diffusers_prediction(ref, x: torch.Tensor, sigma: float, text: torch.Tensor) -> torch.Tensor:
    """diffusers' output for a [1, C, H, W] latent at noise level sigma (its t = 1 - sigma)."""
    out = ref([x[0].unsqueeze(1)], torch.tensor([1.0 - sigma]), [text[0]], return_dict=False)[0]
    return out[0][:, 0][None]


@pytest.mark.parametrize("shape,text_tokens", [((1, 16, 8, 6), 7), ((1, 16, 4, 4), 32), ((1, 16, 16, 10), 40)])
def test_nextdit_matches_diffusers_z_image_negated(tiny_pair, shape, text_tokens):
    ref, net = tiny_pair
    g = torch.Generator().manual_seed(shape[2] * 100 + text_tokens)
    x, text = torch.randn(shape, generator=g), torch.randn(1, text_tokens, 32, generator=g)
    with torch.no_grad():
        for sigma in (1.0, 0.55, 0.05):
            want = diffusers_prediction(ref, x, sigma, text)
            got = net(x, torch.tensor([sigma]), text)
            assert want.abs().max() > 0.1
            # ComfyUI's convention: the negated prediction (diffusers' pipeline negates it too)
            torch.testing.assert_close(got, -want, atol=1e-5, rtol=1e-5)


def test_nextdit_batch_equals_single_items(tiny_pair):
    _, net = tiny_pair
    g = torch.Generator().manual_seed(5)
    x, text = torch.randn(2, 16, 6, 8, generator=g), torch.randn(2, 9, 32, generator=g)
    sigma = torch.tensor([0.9, 0.3])
    with torch.no_grad():
        both = net(x, sigma, text)
        for i in range(2):
            torch.testing.assert_close(both[i:i + 1], net(x[i:i + 1], sigma[i:i + 1], text[i:i + 1]),
                                       atol=1e-5, rtol=1e-5)


def test_detect_gives_upstream_config_on_the_real_z_image_layout():
    from diffusers import ZImageTransformer2DModel
    with torch.device("meta"):
        real = ZImageTransformer2DModel()  # diffusers' defaults are Z-Image (Turbo)'s real config
    config = lumina_detect.detect_z_image(lf.z_image_diffusers_to_native(real.state_dict()), "")
    assert config is not None
    # upstream ComfyUI's detected config for z_image_turbo_bf16.safetensors
    expected = {"dim": 3840, "cap_feat_dim": 2560, "in_channels": 16, "patch_size": 2, "n_layers": 30,
                "n_noise_refiner": 2, "n_context_refiner": 2, "n_heads": 30, "n_kv_heads": 30, "head_dim": 128,
                "ffn_hidden": 10240, "axes_dims": (32, 48, 48), "rope_theta": 256.0, "time_scale": 1000.0,
                "pad_tokens_multiple": 32, "adaln_dim": 256, "t_hidden": 1024, "silu_modulation": False}
    assert {k: config[k] for k in expected} == expected
    assert lumina_detect.detect_lumina2(lf.z_image_diffusers_to_native(real.state_dict()), "") is None


def lumina2_real_layout(prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """The key -> shape layout of Lumina-Image 2.0 in ComfyUI (upstream's NextDiT with dim 2304,
    24 heads, 8 kv heads, 26 layers, 2 refiners, Gemma-2-2B text features), on meta."""
    dim, hd, heads, kv, ffn = 2304, 96, 24, 8, 9216
    shapes = {"x_embedder.weight": (dim, 64), "x_embedder.bias": (dim,), "cap_embedder.0.weight": (2304,),
              "cap_embedder.1.weight": (dim, 2304), "cap_embedder.1.bias": (dim,),
              "t_embedder.mlp.0.weight": (1024, 256), "t_embedder.mlp.0.bias": (1024,),
              "t_embedder.mlp.2.weight": (1024, 1024), "t_embedder.mlp.2.bias": (1024,),
              "norm_final.weight": (dim,), "final_layer.linear.weight": (64, dim), "final_layer.linear.bias": (64,),
              "final_layer.adaLN_modulation.1.weight": (dim, 1024), "final_layer.adaLN_modulation.1.bias": (dim,)}
    blocks = [f"layers.{i}." for i in range(26)] + [f"noise_refiner.{i}." for i in range(2)]
    for block in blocks + [f"context_refiner.{i}." for i in range(2)]:
        shapes |= {block + "attention.qkv.weight": ((heads + 2 * kv) * hd, dim),
                   block + "attention.out.weight": (dim, heads * hd),
                   block + "attention.q_norm.weight": (hd,), block + "attention.k_norm.weight": (hd,),
                   block + "feed_forward.w1.weight": (ffn, dim), block + "feed_forward.w2.weight": (dim, ffn),
                   block + "feed_forward.w3.weight": (ffn, dim)}
        shapes |= {block + n + ".weight": (dim,) for n in ("attention_norm1", "attention_norm2", "ffn_norm1",
                                                             "ffn_norm2")}
    for block in blocks:
        shapes |= {block + "adaLN_modulation.1.weight": (4 * dim, 1024), block + "adaLN_modulation.1.bias": (4 * dim,)}
    return {prefix + k: torch.empty(s, device="meta") for k, s in shapes.items()}


def test_detect_gives_upstream_config_on_the_real_lumina2_layout():
    config = lumina_detect.detect_lumina2(lumina2_real_layout(), "model.diffusion_model.")
    expected = {"dim": 2304, "cap_feat_dim": 2304, "n_layers": 26, "n_heads": 24, "n_kv_heads": 8, "head_dim": 96,
                "ffn_hidden": 9216, "axes_dims": (32, 32, 32), "rope_theta": 10000.0, "time_scale": 1.0,
                "pad_tokens_multiple": None, "adaln_dim": 1024, "silu_modulation": True}
    assert {k: config[k] for k in expected} == expected
    assert lumina_detect.detect_z_image(lumina2_real_layout(), "model.diffusion_model.") is None
    with torch.device("meta"):
        net = NextDiT(config)
    # every tensor of the file is one of the module's, except upstream's unused ``norm_final``
    layout = {k[len("model.diffusion_model."):]: v.shape for k, v in lumina2_real_layout().items()}
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: s for k, s in layout.items() if k != "norm_final.weight"}


@pytest.fixture
def cpu():
    from comfyui.models import memory
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def test_unet_file_loads_as_z_image_and_denoises_with_upstream_sign(tiny_pair, cpu, tmp_path):
    """UNETLoader's path on a Z-Image file in the native layout: family, sampling settings as
    upstream (flow, shift 3, multiplier 1), and denoised = x - sigma * output = x + sigma *
    (diffusers' prediction)."""
    from safetensors.torch import save_file

    from comfyui.models import sd as sdm
    ref, _ = tiny_pair
    path = tmp_path / "z_image_turbo_bf16.safetensors"
    save_file(lf.z_image_diffusers_to_native(ref.state_dict()), str(path))
    patcher = sdm.load_diffusion_model(str(path))
    model = patcher.model
    assert model.family.name == "z_image" and model.family.clip_type == "lumina2"
    assert model.model_config.sampling_settings == {"type": "flow", "shift": 3.0, "multiplier": 1.0}
    assert model.latent_format.latent_channels == 16 and model.latent_format.scale_factor == 0.3611
    g = torch.Generator().manual_seed(9)
    x, text = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 5, 32, generator=g)
    for sigma in (0.9, 0.4):
        with torch.no_grad():
            (conds,) = [{k: c.cond for k, c in model.extra_conds(cross_attn=text).items()}]
            denoised = model.apply_model(x, torch.tensor([sigma]), **conds)
            want = x + sigma * diffusers_prediction(ref, x, sigma, text)
        torch.testing.assert_close(denoised, want, atol=1e-4, rtol=1e-4)
