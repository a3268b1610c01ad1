"""LoRA on the DiT families (Flux, SD3/SD3.5, Z-Image): every file layout in use lands on the
native fused weights, checked against diffusers + PEFT (``load_lora_adapter``, adapter weight =
strength) on the same tiny random weights in the real single-file layouts; alpha and strength
scaling; unpatching restores the weights bit for bit; the Flux depth control LoRA
(``reshape_weight``) widens the input projection to 32 channels through LoraLoaderModelOnly
and a sampling step, and back.

diffusers' own converters for kohya / BFL Flux LoRAs hard-code the real widths (3072), so the
relation between those layouts and the diffusers one is written here: a fused native weight's
LoRA is the stacked per-projection LoRAs (down = the A's one above the other, up = the B's
block-diagonal), and the final modulation's rows are (shift, scale) natively, (scale, shift) in
diffusers.
"""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from comfyui.models import lora as lora_mod
from comfyui.models import memory
from comfyui.models import sd as sdm

from . import flux_fixtures as ffx
from . import lumina2_fixtures as lfx
from . import sd3_fixtures as sfx

pytest.importorskip("diffusers")
pytest.importorskip("peft")

RANK = 4


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    memory.unload_all_models()
    yield
    memory.unload_all_models()
    memory.configure(None)


def _save(sd: dict[str, torch.Tensor], path) -> str:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def _linear_names(dm) -> list[str]:
    return [n for n, m in dm.named_modules() if isinstance(m, torch.nn.Linear)]


def random_factors(dm, names, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{diffusers module name: (A [rank, in], B [out, rank])}, the delta B @ A about a fifth of
    the weight's size."""
    g = torch.Generator().manual_seed(seed)
    mods = dict(dm.named_modules())
    out = {}
    for n in names:
        w = mods[n].weight
        a = torch.randn(RANK, w.shape[1], generator=g) / w.shape[1] ** 0.5
        b = torch.randn(w.shape[0], RANK, generator=g) * 0.2 * w.detach().std().item() * w.shape[1] ** 0.5 / RANK ** 0.5
        out[n] = (a, b)
    return out


def peft_form(factors, prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    sd = {}
    for n, (a, b) in factors.items():
        sd[f"{prefix}{n}.lora_A.weight"] = a
        sd[f"{prefix}{n}.lora_B.weight"] = b
    return sd


def updown_form(factors, key, alpha: float = 3.0) -> dict[str, torch.Tensor]:
    """kohya-style up/down with ``.alpha``: the file's down is divided by alpha/rank, so the
    loader's scaling must bring it back."""
    sd = {}
    for n, (a, b) in factors.items():
        k = key(n)
        sd[k + ".lora_down.weight"] = a * (a.shape[0] / alpha)
        sd[k + ".lora_up.weight"] = b
        sd[k + ".alpha"] = torch.tensor(alpha)
    return sd


def with_diffusers_lora(dm, factors, strength: float):
    dm.load_lora_adapter(peft_form(factors), prefix="transformer", adapter_name="test")
    dm.set_adapters(["test"], weights=[strength])
    return dm


def swap_rows(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat((b, a), dim=0)


def stack(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One LoRA equal to the per-part LoRAs on the parts' rows of a fused weight."""
    return torch.cat([a for a, _ in parts], dim=0), torch.block_diag(*[b for _, b in parts])


def load(patcher, lora, strength: float, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="comfyui.models.lora"):
        patched, _ = lora_mod.load_lora_for_models(patcher, None, lora, strength, 0.0)
    assert not [r for r in caplog.records if "not loaded" in r.getMessage() or "NOT LOADED" in r.getMessage()]
    return patched


def assert_unpatched(patcher, original: dict[str, torch.Tensor]):
    memory.load_models_gpu([patcher])
    sd = patcher.model.diffusion_model.state_dict()
    for k, v in original.items():
        assert sd[k].shape == v.shape and torch.equal(sd[k], v), k


# --------------------------------------------------------------------------------------- Flux
FLUX_PLAIN = {  # diffusers module -> BFL module (the modules the test LoRA touches)
    "x_embedder": "img_in", "context_embedder": "txt_in", "norm_out.linear": "final_layer.adaLN_modulation.1",
    "transformer_blocks.0.attn.to_out.0": "double_blocks.0.img_attn.proj",
    "transformer_blocks.0.attn.to_add_out": "double_blocks.0.txt_attn.proj",
    "transformer_blocks.0.ff.net.0.proj": "double_blocks.0.img_mlp.0",
    "transformer_blocks.0.ff_context.net.2": "double_blocks.0.txt_mlp.2",
    "transformer_blocks.0.norm1_context.linear": "double_blocks.0.txt_mod.lin",
    "single_transformer_blocks.0.proj_out": "single_blocks.0.linear2",
    "single_transformer_blocks.0.norm.linear": "single_blocks.0.modulation.lin",
}
FLUX_FUSED = {
    "double_blocks.0.img_attn.qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                     "transformer_blocks.0.attn.to_v"],
    "double_blocks.0.txt_attn.qkv": ["transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.attn.add_k_proj",
                                     "transformer_blocks.0.attn.add_v_proj"],
    "single_blocks.0.linear1": ["single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k",
                                "single_transformer_blocks.0.attn.to_v", "single_transformer_blocks.0.proj_mlp"],
}


def flux_native_factors(factors):
    out = {}
    for d, n in FLUX_PLAIN.items():
        a, b = factors[d]
        out[n] = (a, swap_rows(b) if d == "norm_out.linear" else b)
    for n, parts in FLUX_FUSED.items():
        out[n] = stack([factors[p] for p in parts])
    return out


def flux_file(factors, form: str) -> dict[str, torch.Tensor]:
    if form == "diffusers":
        return peft_form(factors)
    if form == "onetrainer":  # and kohya's names for diffusers modules
        return updown_form(factors, lambda n: "lora_transformer_" + n.replace(".", "_"))
    native = flux_native_factors(factors)
    if form == "bfl":
        return peft_form(native, prefix="diffusion_model.")
    if form == "bfl_updown":
        return updown_form(native, lambda n: "diffusion_model." + n)
    assert form == "kohya"
    return updown_form(native, lambda n: "lora_unet_" + n.replace(".", "_"))


@pytest.fixture(scope="module")
def flux_file_path(tmp_path_factory):
    dm = ffx.diffusers_flux(seed=11)
    return _save(__import__("comfyui.models.flux.convert", fromlist=["x"]).diffusers_to_native(dm.state_dict()),
                 tmp_path_factory.mktemp("flux") / "flux1-dev.safetensors")


def _flux_io(seed: int = 0, channels: int = 16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, channels, 4, 6, generator=g), torch.randn(1, 5, 32, generator=g),
            torch.randn(1, 24, generator=g), torch.tensor([0.6]), torch.tensor([3.5]))


def _flux_diffusers_out(dm, x, ctx, pooled, sigma, guidance):
    from .test_flux import _ids, _pack, _unpack
    h, w = x.shape[-2:]
    with torch.no_grad():
        ref = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma,
                 img_ids=_ids(h, w), txt_ids=torch.zeros(ctx.shape[1], 3), guidance=guidance).sample
    return _unpack(ref, h, w)


@pytest.mark.parametrize("form", ["diffusers", "onetrainer", "bfl", "bfl_updown", "kohya"])
def test_flux_lora_layouts_match_diffusers_peft(flux_file_path, form, caplog):
    dm = ffx.diffusers_flux(seed=11)
    names = list(FLUX_PLAIN) + [p for parts in FLUX_FUSED.values() for p in parts]
    factors = random_factors(dm, names, seed=12)
    base = sdm.load_diffusion_model(flux_file_path)
    original = {k: v.clone() for k, v in base.model.diffusion_model.state_dict().items()}
    strength = 0.75
    patched = load(base, flux_file(factors, form), strength, caplog)
    # one patch per LoRA entry in the file, q/k/v slices on the fused weights
    assert len(patched.patches) == len(FLUX_PLAIN) + len(FLUX_FUSED)

    x, ctx, pooled, sigma, guidance = _flux_io()
    memory.load_models_gpu([patched])
    with torch.no_grad():
        ours = patched.model.diffusion_model(x, sigma, ctx, y=pooled, guidance=guidance)
    plain = _flux_diffusers_out(dm, x, ctx, pooled, sigma, guidance)
    want = _flux_diffusers_out(with_diffusers_lora(dm, factors, strength), x, ctx, pooled, sigma, guidance)
    assert (want - plain).abs().max() > 0.05  # the LoRA matters
    torch.testing.assert_close(ours, want, atol=5e-5, rtol=1e-4)
    assert_unpatched(base, original)


def test_flux_kohya_file_matches_diffusers_own_kohya_converter(flux_file_path, caplog):
    """A kohya sd-scripts Flux LoRA (one dense LoRA over each fused qkv, alpha), read by
    diffusers' own converter (``FluxPipeline.lora_state_dict``; its double-block path works at
    any width) and loaded with PEFT, against ours reading the file as it is."""
    from diffusers import FluxPipeline
    dm = ffx.diffusers_flux(seed=11)
    native = dict(sdm.load_diffusion_model(flux_file_path).model.diffusion_model.state_dict())
    g = torch.Generator().manual_seed(14)
    lora = {}
    for n in ("double_blocks.0.img_attn.qkv", "double_blocks.0.txt_attn.qkv", "double_blocks.0.img_attn.proj",
              "double_blocks.0.img_mlp.0", "double_blocks.0.txt_mod.lin", "double_blocks.0.txt_mlp.2"):
        out_f, in_f = native[n + ".weight"].shape
        k = "lora_unet_" + n.replace(".", "_")
        lora[k + ".lora_down.weight"] = torch.randn(RANK, in_f, generator=g) / in_f ** 0.5
        lora[k + ".lora_up.weight"] = torch.randn(out_f, RANK, generator=g) * 0.3 / RANK ** 0.5
        lora[k + ".alpha"] = torch.tensor(2.0)
    base = sdm.load_diffusion_model(flux_file_path)
    patched = load(base, dict(lora), 1.0, caplog)
    x, ctx, pooled, sigma, guidance = _flux_io(seed=2)
    memory.load_models_gpu([patched])
    with torch.no_grad():
        ours = patched.model.diffusion_model(x, sigma, ctx, y=pooled, guidance=guidance)
    plain = _flux_diffusers_out(dm, x, ctx, pooled, sigma, guidance)
    converted = FluxPipeline.lora_state_dict({k: v.clone() for k, v in lora.items()})
    dm.load_lora_adapter(converted, prefix="transformer", adapter_name="kohya")
    want = _flux_diffusers_out(dm, x, ctx, pooled, sigma, guidance)
    assert (want - plain).abs().max() > 0.05
    torch.testing.assert_close(ours, want, atol=5e-5, rtol=1e-4)


def test_flux_strength_is_linear_and_zero_is_identity(flux_file_path, caplog):
    dm = ffx.diffusers_flux(seed=11)
    factors = random_factors(dm, list(FLUX_PLAIN), seed=13)
    base = sdm.load_diffusion_model(flux_file_path)
    lora = flux_file(factors, "diffusers")
    key = "diffusion_model.final_layer.adaLN_modulation.1.weight"
    w0 = base.model.state_dict()[key].clone()
    deltas = {}
    for s in (0.0, 1.0, -2.0):
        p = load(base, lora, s, caplog)
        deltas[s] = p.patched_weight(key) - w0
    assert torch.equal(deltas[0.0], torch.zeros_like(w0))
    a, b = factors["norm_out.linear"]
    torch.testing.assert_close(deltas[1.0], swap_rows(b @ a), atol=1e-6, rtol=1e-5)  # diffusers' order swapped
    torch.testing.assert_close(deltas[-2.0], -2.0 * deltas[1.0], atol=1e-6, rtol=1e-5)


def test_flux_text_encoder_lora_keys(tmp_path, caplog):
    """kohya's lora_te1_ (CLIP-L) and lora_te2_ (T5, as OneTrainer names it for Flux) reach the
    encoders of a DualCLIPLoader(type=flux) CLIP; alpha / rank and the strength scale the delta."""
    from . import fixtures
    clip_l = _save(fixtures.hf_text_sd(fixtures.hf_text_model(64, 2, 64, "quick_gelu", seed=21)), tmp_path / "l.safetensors")
    t5 = _save(ffx.t5_sd(ffx.hf_t5(seed=22)), tmp_path / "t5.safetensors")
    clip = sdm.load_clip([clip_l, t5], clip_type="flux")
    g = torch.Generator().manual_seed(3)
    targets = {"lora_te1_text_model_encoder_layers_1_self_attn_q_proj":
               "clip_l.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight",
               "lora_te1_text_model_encoder_layers_0_mlp_fc2": "clip_l.transformer.text_model.encoder.layers.0.mlp.fc2.weight",
               "lora_te2_encoder_block_1_layer_0_SelfAttention_q": "t5xxl.transformer.encoder.block.1.layer.0.SelfAttention.q.weight",
               "lora_te2_encoder_block_0_layer_1_DenseReluDense_wi_0":
               "t5xxl.transformer.encoder.block.0.layer.1.DenseReluDense.wi_0.weight"}
    sd = clip.cond_stage_model.state_dict()
    lora = {}
    for name, key in targets.items():
        out_f, in_f = sd[key].shape
        lora[name + ".lora_down.weight"] = torch.randn(RANK, in_f, generator=g)
        lora[name + ".lora_up.weight"] = torch.randn(out_f, RANK, generator=g)
        lora[name + ".alpha"] = torch.tensor(2.0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="comfyui.models.lora"):
        _, c2 = lora_mod.load_lora_for_models(None, clip, lora, 0.0, 0.6)
    assert not caplog.records
    for name, key in targets.items():
        want = sd[key].float() + 0.6 * (2.0 / RANK) * lora[name + ".lora_up.weight"] @ lora[name + ".lora_down.weight"]
        torch.testing.assert_close(c2.patcher.patched_weight(key).float(), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------- Flux depth control LoRA
def _diffusers_depth_reference(dm, lora):
    """diffusers' Flux with the depth LoRA merged by hand (its BFL control converter assumes
    width 3072): x_embedder widened with zeros then + B A, biases + the B biases, q/k/v rows
    + their slices, norms replaced."""
    from diffusers import FluxTransformer2DModel
    cfg = dict(dm.config)
    cfg["in_channels"] = dm.config.in_channels * 2
    ref = FluxTransformer2DModel(**{k: v for k, v in cfg.items() if not k.startswith("_")}).eval()
    sd = {k: v.clone() for k, v in dm.state_dict().items()}
    w = sd["x_embedder.weight"]
    sd["x_embedder.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1) + lora["img_in.lora_B.weight"] @ lora["img_in.lora_A.weight"]
    sd["x_embedder.bias"] = sd["x_embedder.bias"] + lora["img_in.lora_B.bias"]
    delta = lora["double_blocks.0.img_attn.qkv.lora_B.weight"] @ lora["double_blocks.0.img_attn.qkv.lora_A.weight"]
    bias = lora["double_blocks.0.img_attn.qkv.lora_B.bias"]
    for i, p in enumerate(("to_q", "to_k", "to_v")):
        rows = slice(i * w.shape[0], (i + 1) * w.shape[0])
        sd[f"transformer_blocks.0.attn.{p}.weight"] = sd[f"transformer_blocks.0.attn.{p}.weight"] + delta[rows]
        sd[f"transformer_blocks.0.attn.{p}.bias"] = sd[f"transformer_blocks.0.attn.{p}.bias"] + bias[rows]
    sd["transformer_blocks.0.attn.norm_q.weight"] = lora["double_blocks.0.img_attn.norm.query_norm.scale"]
    sd["single_transformer_blocks.0.attn.norm_k.weight"] = lora["single_blocks.0.norm.key_norm.scale"]
    ref.load_state_dict(sd, strict=True)
    return ref


def test_flux_depth_lora_widens_img_in_through_the_loader_node_and_sampler(tmp_path, caplog):
    from comfyui import paths
    from comfyui.models.flux.convert import diffusers_to_native
    from comfyui.nodes.builtin.loaders import LoraLoaderModelOnly
    from comfyui.nodes.builtin.sampling import KSampler

    dm = ffx.diffusers_flux(seed=31)
    paths.configure(base_directory=tmp_path, create_directories=True)
    try:
        unet = _save(diffusers_to_native(dm.state_dict()), tmp_path / "flux1-dev.safetensors")
        hidden, pin = dm.x_embedder.weight.shape
        lora = ffx.depth_lora_sd(hidden, pin, seed=32)
        _save(lora, tmp_path / "models" / "loras" / "flux1-depth-dev-lora.safetensors")
        paths.invalidate_cache()
        base = sdm.load_diffusion_model(unet)
        original = {k: v.clone() for k, v in base.model.diffusion_model.state_dict().items()}
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="comfyui.models.lora"):
            (depth,) = LoraLoaderModelOnly().load_lora_model_only(base, "flux1-depth-dev-lora.safetensors", 1.0)
        assert not caplog.records
        memory.load_models_gpu([depth])
        net = depth.model.diffusion_model
        assert tuple(net.img_in.weight.shape) == (hidden, 2 * pin) and net.in_channels == 32

        x, ctx, pooled, sigma, guidance = _flux_io(seed=5, channels=32)
        with torch.no_grad():
            ours = net(x, sigma, ctx, y=pooled, guidance=guidance)
        want = _flux_diffusers_out(_diffusers_depth_reference(dm, lora), x, ctx, pooled, sigma, guidance)
        torch.testing.assert_close(ours, want, atol=5e-5, rtol=1e-4)

        # streamed (low-VRAM) loading: the widened weight is patched in place, the result is the same
        depth.unpatch_model(torch.device("cpu"))
        depth.patch_model(torch.device("cpu"), lowvram_budget=20_000)
        assert depth.model._patcher_state["lowvram"] and net.in_channels == 32
        with torch.no_grad():
            torch.testing.assert_close(net(x, sigma, ctx, y=pooled, guidance=guidance), ours, atol=1e-5, rtol=1e-5)
        depth.unpatch_model(torch.device("cpu"))

        # a sampling step: the control image reaches the model as 16 concatenated channels
        def sample(model, control):
            cond = [[ctx, {"pooled_output": pooled, "concat_latent_image": control}]]
            latent = {"samples": torch.zeros(1, 16, 4, 6)}
            return KSampler().sample(model, 7, 1, 1.0, "euler", "simple", cond, cond, latent, 1.0)[0]["samples"]

        g = torch.Generator().manual_seed(9)
        c1, c2 = torch.randn(1, 16, 4, 6, generator=g), torch.randn(1, 16, 4, 6, generator=g)
        s1, s2 = sample(depth, c1), sample(depth, c2)
        assert s1.shape == (1, 16, 4, 6) and torch.isfinite(s1).all()
        assert (s1 - s2).abs().max() > 1e-3
        plain = sample(base, c1)  # the base model ignores the control image and takes 16 channels
        torch.testing.assert_close(plain, sample(base, c2))
        assert_unpatched(base, original)
        assert base.model.diffusion_model.in_channels == 16
    finally:
        paths.configure(base_directory=None)


def test_diff_and_set_weight_entries(flux_file_path, caplog):
    base = sdm.load_diffusion_model(flux_file_path)
    sd = base.model.state_dict()
    g = torch.Generator().manual_seed(4)
    k = "diffusion_model.final_layer.linear"
    lora = {k + ".diff": torch.randn(sd[k + ".weight"].shape, generator=g),
            k + ".diff_b": torch.randn(sd[k + ".bias"].shape, generator=g),
            "diffusion_model.single_blocks.0.norm.key_norm.scale.set_weight": torch.full_like(
                sd["diffusion_model.single_blocks.0.norm.key_norm.scale"], 0.5)}
    p = load(base, lora, 0.5, caplog)
    torch.testing.assert_close(p.patched_weight(k + ".weight"), sd[k + ".weight"] + 0.5 * lora[k + ".diff"])
    torch.testing.assert_close(p.patched_weight(k + ".bias"), sd[k + ".bias"] + 0.5 * lora[k + ".diff_b"])
    assert torch.equal(p.patched_weight("diffusion_model.single_blocks.0.norm.key_norm.scale"),
                       torch.full_like(sd["diffusion_model.single_blocks.0.norm.key_norm.scale"], 0.5))


# ---------------------------------------------------------------------------------------- SD3
@pytest.mark.parametrize("form", ["diffusers", "onetrainer"])
def test_sd35_lora_matches_diffusers_peft(tmp_path, form, caplog):
    """SD3.5 medium (MMDiT-X: a second image attention): diffusers' q/k/v (and add_*_proj,
    attn2) land on the native qkv slices, the last text block's and the final modulation's
    rows are swapped."""
    dm = sfx.diffusers_sd3(seed=41, qk_norm=True, dual_layers=(0,))
    base = sdm.load_diffusion_model(_save(sfx.native_sd(dm), tmp_path / "sd3.5_medium.safetensors"))
    original = {k: v.clone() for k, v in base.model.diffusion_model.state_dict().items()}
    names = [n for n in _linear_names(dm) if n.startswith(("transformer_blocks", "norm_out", "context_embedder"))]
    assert "transformer_blocks.1.norm1_context.linear" in names and "transformer_blocks.0.attn2.to_k" in names
    factors = random_factors(dm, names, seed=42)
    lora = peft_form(factors) if form == "diffusers" else \
        updown_form(factors, lambda n: "lora_transformer_" + n.replace(".", "_"))
    strength = 0.8
    patched = load(base, lora, strength, caplog)
    g = torch.Generator().manual_seed(6)
    x, ctx, pooled = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 4, 64, generator=g), torch.randn(1, 48, generator=g)
    t = torch.tensor([300.0])
    memory.load_models_gpu([patched])
    with torch.no_grad():
        ours = patched.model.diffusion_model(x, t, context=ctx, y=pooled)
        plain = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t).sample
        with_diffusers_lora(dm, factors, strength)
        want = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t).sample
    assert (want - plain).abs().max() > 0.05
    torch.testing.assert_close(ours, want, atol=5e-5, rtol=1e-4)
    assert_unpatched(base, original)


# ------------------------------------------------------------------------------------ Z-Image
@pytest.mark.parametrize("form", ["diffusers", "lycoris"])
def test_z_image_lora_matches_diffusers_peft(tmp_path, form, caplog):
    from .test_lumina2 import diffusers_prediction
    dm = lfx.diffusers_z_image(seed=51)
    base = sdm.load_diffusion_model(_save(lfx.z_image_diffusers_to_native(dm.state_dict()),
                                          tmp_path / "z_image_turbo_bf16.safetensors"))
    original = {k: v.clone() for k, v in base.model.diffusion_model.state_dict().items()}
    names = _linear_names(dm)
    assert "layers.1.attention.to_v" in names and "all_final_layer.2-1.linear" in names
    factors = random_factors(dm, names, seed=52)
    lora = peft_form(factors) if form == "diffusers" else \
        updown_form(factors, lambda n: "lycoris_" + n.replace(".", "_"))
    strength = 0.9
    patched = load(base, lora, strength, caplog)
    g = torch.Generator().manual_seed(7)
    x, text = torch.randn(1, 16, 8, 6, generator=g), torch.randn(1, 7, 32, generator=g)
    sigma = 0.55
    memory.load_models_gpu([patched])
    with torch.no_grad():
        ours = patched.model.diffusion_model(x, torch.tensor([sigma]), text)
        plain = diffusers_prediction(dm, x, sigma, text)
        with_diffusers_lora(dm, factors, strength)
        want = diffusers_prediction(dm, x, sigma, text)
    assert (want - plain).abs().max() > 0.05
    torch.testing.assert_close(ours, -want, atol=5e-5, rtol=1e-4)  # ComfyUI's sign: the negated prediction
    assert_unpatched(base, original)


def test_sd3_text_encoder_lora_keys():
    """An SD3.5 checkpoint's CLIP: kohya / OneTrainer lora_te1_ (CLIP-L), lora_te2_ (CLIP-G, also
    its text projection), lora_te3_ (T5), diffusers text_encoder(_2).*, text_encoders.<key>."""
    _, clip, _ = sdm.load_state_dict_guess_config(sfx.checkpoint_sd(seed=3), output_vae=False)
    key_map = lora_mod.model_lora_keys_clip(clip.cond_stage_model)
    sd = clip.cond_stage_model.state_dict()
    expect = {
        "lora_te1_text_model_encoder_layers_0_self_attn_k_proj": "clip_l.transformer.text_model.encoder.layers.0.self_attn.k_proj.weight",
        "text_encoder.text_model.encoder.layers.1.mlp.fc1": "clip_l.transformer.text_model.encoder.layers.1.mlp.fc1.weight",
        "lora_te2_text_model_encoder_layers_1_self_attn_out_proj": "clip_g.transformer.text_model.encoder.layers.1.self_attn.out_proj.weight",
        "lora_te2_text_projection": "clip_g.transformer.text_projection.weight",
        "text_encoder_2.text_model.encoder.layers.0.mlp.fc2": "clip_g.transformer.text_model.encoder.layers.0.mlp.fc2.weight",
        "lora_te3_encoder_block_0_layer_0_SelfAttention_o": "t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.o.weight",
        "text_encoders.t5xxl.transformer.encoder.block.0.layer.1.DenseReluDense.wo":
            "t5xxl.transformer.encoder.block.0.layer.1.DenseReluDense.wo.weight",
    }
    for name, key in expect.items():
        assert key in sd and key_map.get(name) == key, name
    assert not any(k.startswith("lora_te2_encoder_block") for k in key_map)  # T5 is te3 here, te2 in Flux


# ------------------------------------------------------------- key maps at the real widths
class _Stub:
    """Just what the key maps read: a state dict (meta tensors of the real shapes) and a family."""

    def __init__(self, shapes: dict, family_name: str):
        from comfyui.models import registry
        self._sd = {"diffusion_model." + k: torch.empty(s, device="meta") for k, s in shapes.items()}
        self.family = next(f for f in registry.FAMILIES if f.name == family_name)

    def state_dict(self):
        return self._sd


def _real_shapes(entry: str) -> dict:
    import gzip
    import json
    from pathlib import Path
    path = Path(__file__).with_name("data") / "model-families-shapes.json.gz"
    return json.loads(gzip.open(path).read())[entry]["shapes"]


def test_key_maps_on_the_real_layouts_give_upstreams_slices():
    """On the real files' shapes the slices are upstream ComfyUI's (flux_to_diffusers with
    hidden 3072 and an MLP of 4 x 3072; mmdit_to_diffusers with 64 x depth; z_image_to_diffusers
    with dim 3840)."""
    flux = lora_mod.model_lora_keys_unet(_Stub(_real_shapes("flux1-dev (diffusion_models/flux1-dev.safetensors, bare keys)"),
                                               "flux"))
    p = "diffusion_model."
    assert flux["transformer.transformer_blocks.18.attn.add_v_proj"] == (p + "double_blocks.18.txt_attn.qkv.weight", (0, 6144, 3072), None)
    assert flux["transformer.single_transformer_blocks.37.proj_mlp"] == (p + "single_blocks.37.linear1.weight", (0, 9216, 12288), None)
    assert flux["lora_transformer_single_transformer_blocks_0_attn_to_k"] == (p + "single_blocks.0.linear1.weight", (0, 3072, 3072), None)
    assert flux["lycoris_transformer_blocks_0_ff_context_net_0_proj"] == p + "double_blocks.0.txt_mlp.0.weight"
    assert flux["transformer.norm_out.linear"][:2] == (p + "final_layer.adaLN_modulation.1.weight", None)
    assert flux[p + "single_blocks.5.linear1_qkv"] == (p + "single_blocks.5.linear1.weight", (0, 0, 9216), None)
    assert flux["lora_unet_double_blocks_3_img_attn_qkv"] == p + "double_blocks.3.img_attn.qkv.weight"
    assert flux[p + "img_in.bias"] == p + "img_in.bias"  # .diff_b / .set_weight names

    sd3 = lora_mod.model_lora_keys_unet(_Stub(_real_shapes("sd3.5-large (model.diffusion_model. in sd3.5_large*.safetensors)"),
                                              "sd3"))
    assert sd3["transformer.transformer_blocks.37.attn.to_k"] == (p + "joint_blocks.37.x_block.attn.qkv.weight", (0, 2432, 2432), None)
    assert sd3["base_model.model.transformer_blocks.0.attn.add_v_proj"] == \
        (p + "joint_blocks.0.context_block.attn.qkv.weight", (0, 4864, 2432), None)
    assert sd3["lora_transformer_transformer_blocks_37_norm1_context_linear"][1:] == (None, lora_mod.swap_scale_shift)
    assert sd3["transformer.transformer_blocks.36.norm1_context.linear"] == p + "joint_blocks.36.context_block.adaLN_modulation.1.weight"

    dim, layer = 3840, "layers.29."
    z = {layer + "attention.qkv.weight": [3 * dim, dim], layer + "attention.out.weight": [dim, dim],
         layer + "attention.q_norm.weight": [128], layer + "feed_forward.w2.weight": [dim, 10240],
         "final_layer.linear.weight": [64, dim], "x_embedder.weight": [dim, 64]}
    zmap = lora_mod.model_lora_keys_unet(_Stub(z, "z_image"))
    assert zmap["transformer.layers.29.attention.to_v"] == (p + layer + "attention.qkv.weight", (0, 2 * dim, dim), None)
    assert zmap["diffusion_model.layers.29.attention.to_out.0"] == p + layer + "attention.out.weight"
    assert zmap["lycoris_layers_29_feed_forward_w2"] == p + layer + "feed_forward.w2.weight"
    assert zmap["all_final_layer.2-1.linear"] == p + "final_layer.linear.weight"
    assert zmap["transformer.all_x_embedder.2-1"] == p + "x_embedder.weight"
