"""Chroma: the transformer against diffusers' ChromaTransformer2DModel on tiny random weights
(native single-file keys; the key map in ``chroma_fixtures``), detection on the real layout
(upstream's config exactly), the T5-only ``chroma`` text encoder type and T5TokenizerOptions,
and the Chroma template end to end through the engine on tiny files with its file names."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui.models import memory
from comfyui.models.registry import detect_family

from . import chroma_fixtures as cfx

pytest.importorskip("diffusers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "chroma", "chroma_text_to_image.api.json")


def _pack(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)


def _unpack(t: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    b = t.shape[0]
    return t.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def _diffusers_velocity(m, x, t, ctx):
    b, c, h, w = x.shape
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None]
    with torch.no_grad():
        out = m(hidden_states=_pack(x), encoder_hidden_states=ctx, timestep=t, img_ids=ids.reshape(-1, 3),
                txt_ids=torch.zeros(ctx.shape[1], 3)).sample
    return _unpack(out, c, h, w)


@pytest.fixture(scope="module")
def tiny():
    m = cfx.diffusers_chroma(seed=5)
    return m, cfx.diffusers_to_bfl(m.state_dict())


def test_detected_from_the_native_keys(tiny):
    _, sd = tiny
    family, config = detect_family(sd)
    assert family.name == "chroma" and family.clip_type == "chroma"
    assert config == {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "patch_size": 2,
                      "context_in_dim": 32, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 2,
                      "depth_single_blocks": 2, "axes_dim": [4, 14, 14], "theta": 10000, "qkv_bias": True,
                      "in_dim": 64, "out_dim": 64, "hidden_dim": 48, "n_layers": 2}


def test_velocity_matches_diffusers(tiny):
    from comfyui.models.chroma.model import Chroma
    m, sd = tiny
    _, config = detect_family(sd)
    net = Chroma(**config).eval()
    assert net.load_state_dict(sd, strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 8, 6, generator=g)
    ctx = torch.randn(2, 5, 32, generator=g)
    t = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        ours = net(x, t, ctx)
    ref = _diffusers_velocity(m, x, t, ctx)
    assert ref.abs().max() > 0.5
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    # the timestep reaches the modulation: another sigma, another velocity
    with torch.no_grad():
        assert (net(x, torch.tensor([0.5, 0.5]), ctx) - ours).abs().max() > 1e-2


def test_guidance_changes_the_modulation(tiny):
    """Chroma's guidance input defaults to 0 (diffusers passes 0 always); a non-zero value
    changes every modulation vector."""
    from comfyui.models.chroma.model import Chroma
    _, sd = tiny
    net = Chroma(**detect_family(sd)[1]).eval()
    net.load_state_dict(sd)
    t = torch.tensor([0.4])
    with torch.no_grad():
        zero = net.modulations(t, None, torch.float32)
        torch.testing.assert_close(zero, net.modulations(t, torch.tensor([0.0]), torch.float32))
        assert (net.modulations(t, torch.tensor([4.0]), torch.float32) - zero).abs().min() > 0
    assert zero.shape == (1, 3 * 2 + 12 * 2 + 2, 64)


def test_real_layout_gives_upstreams_config():
    """A real-size Chroma (diffusers' defaults = Chroma1-HD: 19 + 38 blocks, 3072 wide, approximator
    64 -> 5120 x 5 -> 3072) on the meta device, in native keys: detection gives upstream's
    config (comfy/model_detection.py, the Chroma branch) and upstream's sampling / latent."""
    from diffusers import ChromaTransformer2DModel
    with torch.device("meta"):
        m = ChromaTransformer2DModel()
    sd = cfx.diffusers_to_bfl(m.state_dict())
    family, config = detect_family({"model.diffusion_model." + k: v for k, v in sd.items()},
                                   "model.diffusion_model.")
    assert config == {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "patch_size": 2,
                      "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 19,
                      "depth_single_blocks": 38, "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True,
                      "in_dim": 64, "out_dim": 3072, "hidden_dim": 5120, "n_layers": 5}
    assert family.latent_format.__name__ == "Flux"
    assert family.sampling["type"] == "flux" and family.sampling["multiplier"] == 1.0
    assert family.sampling["shift"] == pytest.approx(1.15)
    from comfyui.models.chroma.model import Chroma
    with torch.device("meta"):
        assert Chroma(**config).mod_slots == 344  # upstream's mod_index_length


def test_diffusers_layout_file_loads_and_denoises_like_diffusers(tmp_path):
    """A diffusers-layout Chroma transformer through UNETLoader's path (the family's key map):
    the BaseModel's denoised output is x - sigma * diffusers' velocity (flow matching), with
    the sigma as diffusers' timestep."""
    from safetensors.torch import save_file

    from comfyui.models import sd as sdm
    memory.configure(None, cpu=True)
    m = cfx.diffusers_chroma(seed=6)
    path = tmp_path / "chroma_diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    patcher = sdm.load_diffusion_model(str(path))
    model = patcher.model
    assert model.family.name == "chroma"
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 8, 8, generator=g)
    ctx = torch.randn(1, 4, 32, generator=g)
    sigma = torch.tensor([0.6])
    conds = model.extra_conds(cross_attn=ctx, noise=x, device=torch.device("cpu"))
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds)
    velocity = _diffusers_velocity(m, x, sigma, ctx)
    torch.testing.assert_close(denoised, x - sigma * velocity, atol=1e-4, rtol=1e-4)


def test_flux_is_not_taken_for_chroma_nor_chroma_for_radiance(tiny):
    _, sd = tiny
    from comfyui.models.flux.detection import detect as flux_detect
    assert flux_detect(sd) is None
    _, radiance = cfx.radiance(seed=1)
    assert detect_family(radiance)[0].name == "chroma_radiance"
    assert detect_family(sd)[0].name == "chroma"


# ----------------------------------------------------------------------- text encoder
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("chroma")
    out = cfx.write_chroma_files(os.path.join(base, "models"))
    yield base, out
    memory.configure(None)


def test_chroma_clip_type_is_t5_alone_unpadded(files):
    from comfyui.models import sd as sdm
    from comfyui.nodes.builtin.text_options import T5TokenizerOptions
    _, paths = files
    clip = sdm.load_clip([paths["t5xxl_fp8_e4m3fn_scaled.safetensors"]], clip_type="chroma")
    tokens = clip.tokenize("a tiger")
    assert list(tokens) == ["t5xxl"]
    (chunk,) = tokens["t5xxl"]
    assert chunk[-1][0] == 1 and len(chunk) < 10  # the words and </s>, no padding
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    assert pooled is None and cond.shape == (1, len(chunk), 64)
    # the scaled fp8 file gives its dequantised weights' T5 (transformers, float32)
    from safetensors.torch import load_file
    from transformers import T5Config, T5EncoderModel
    stored = load_file(paths["t5xxl_fp8_e4m3fn_scaled.safetensors"])
    real = {k: v.float() * stored[k[:-len("weight")] + "scale_weight"] if k[:-len("weight")] + "scale_weight" in stored
            else v.float() for k, v in stored.items() if not k.endswith(("scale_weight", "scaled_fp8"))}
    ref_model = T5EncoderModel(T5Config(vocab_size=32128, d_model=64, d_kv=64, d_ff=96, num_layers=2, num_heads=2,
                                        feed_forward_proj="gated-gelu", dropout_rate=0.0)).eval()
    ref_model.load_state_dict(real, strict=False)
    with torch.no_grad():
        ref = ref_model(input_ids=torch.tensor([[t for t, _ in chunk]])).last_hidden_state
    torch.testing.assert_close(cond, ref, atol=1e-4, rtol=1e-4)

    (padded,) = T5TokenizerOptions().set_options(clip, min_padding=3, min_length=0)
    (chunk3,) = padded.tokenize("a tiger")["t5xxl"]
    assert chunk3 == chunk + [(0, 1.0)] * 3
    (long,) = T5TokenizerOptions().set_options(clip, min_padding=0, min_length=20)
    assert len(long.tokenize("a tiger")["t5xxl"][0]) == 20
    assert clip.tokenize("a tiger")["t5xxl"] == [chunk]  # the original CLIP is unchanged
    # padding tokens are attended to: they change the encoding of the words
    assert (padded.encode_from_tokens(padded.tokenize("a tiger"))[:, :len(chunk)] - cond).abs().max() > 1e-4


def test_weighted_prompt_uses_an_all_pad_empty_prompt(files):
    """PixArt/Chroma's prompt weighting interpolates towards an empty prompt of <pad> only."""
    from comfyui.models import sd as sdm
    _, paths = files
    clip = sdm.load_clip([paths["t5xxl_fp8_e4m3fn_scaled.safetensors"]], clip_type="chroma")
    enc = clip.cond_stage_model.encoder("t5xxl")
    assert enc.empty_tokens(4) == [0, 0, 0, 0]
    plain = clip.encode_from_tokens(clip.tokenize("a tiger"))
    weighted = clip.encode_from_tokens(clip.tokenize("(a tiger:1.5)"))
    empty, _ = enc.encode([[0] * plain.shape[1]])
    n = plain.shape[1] - 1  # the weighted words; </s> keeps weight 1
    torch.testing.assert_close(weighted[0, :n], (plain[0, :n] - empty[0, :n]) * 1.5 + empty[0, :n],
                               atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def env(files):
    from comfyui import paths, runtime
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    base, _ = files
    memory.configure(None, cpu=True)
    paths.configure(base_directory=base, create_directories=True)
    paths.invalidate_cache()
    engine = Engine(NodeRegistry.with_builtins())
    engine.start()
    yield {"base": str(base), "engine": engine}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)


def _shrink(prompt: dict) -> dict:
    p = json.loads(json.dumps(prompt))
    for node in p.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"]["width"] //= 16
            node["inputs"]["height"] //= 16
        if node["class_type"] == "BasicScheduler":
            node["inputs"]["steps"] = 2
    return p


def _run(env, prompt: dict) -> np.ndarray:
    eng = env["engine"]
    sub = eng.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = eng.wait(sub.prompt_id).result(300)
    assert h["status"]["status_str"] == "success", h["status"]
    (save,) = [n for n, v in prompt.items() if v["class_type"] == "SaveImage"]
    (im,) = h["outputs"][save]["images"]
    with Image.open(os.path.join(env["base"], "output", im["subfolder"], im["filename"])) as f:
        return np.asarray(f.convert("RGB"))


def test_chroma_template_runs_end_to_end(env):
    """The Chroma template (UNETLoader with the fp8 file, CLIPLoader type chroma with the scaled
    fp8 T5, T5TokenizerOptions, ModelSamplingAuraFlow 1, CFGGuider 3.5, beta scheduler,
    SamplerCustomAdvanced) at 64x64 and 2 steps; the negative prompt matters (real CFG)."""
    with open(EXAMPLE) as f:
        prompt = _shrink(json.load(f))
    image = _run(env, prompt)
    assert image.shape == (64, 64, 3) and image.std() > 0
    other = json.loads(json.dumps(prompt))
    other["749"]["inputs"]["text"] = "a different negative prompt"
    other["740"]["inputs"]["filename_prefix"] = "other_negative"
    assert np.abs(_run(env, other).astype(int) - image.astype(int)).max() > 0
