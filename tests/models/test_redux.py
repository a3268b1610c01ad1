"""Flux Redux: the SigLIP-384 vision tower against transformers' SiglipVisionModel, the Redux
projection against diffusers' ReduxImageEncoder (tiny random weights in the real file
layouts), StyleModelApply's two strength types, the attention bias reaching the Flux
transformer, and the Redux template end to end through the engine on tiny files."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from comfyui.models import memory
from comfyui.models.clip_vision import Output, load_clip_vision, vision_config
from comfyui.models.style import load_style_model

from . import flux_fixtures as ffx
from . import redux_fixtures as rfx

pytest.importorskip("diffusers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "flux_redux", "flux_redux.api.json")
REFERENCES = ("flux_redux_model_example_reference_image_1.png", "flux_redux_model_example_reference_image_2.png")


@pytest.fixture(scope="module", autouse=True)
def cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    m = rfx.hf_siglip(seed=3)
    path = tmp_path_factory.mktemp("siglip") / "sigclip_vision_patch14_384.safetensors"
    save_file({k: v.contiguous() for k, v in rfx.siglip_file_sd(m).items()}, str(path))
    return m, load_clip_vision(str(path))


def test_siglip_is_recognised_from_its_keys(siglip):
    _, cv = siglip
    assert cv.siglip and cv.image_size == 384 and cv.image_mean == [0.5] * 3 and cv.image_std == [0.5] * 3
    assert cv.config.num_heads == 2 and cv.config.hidden_act == "gelu_tanh"


def test_real_siglip_layout_gives_upstreams_config():
    """sigclip_vision_patch14_384 (so400m: 1152 wide, 27 layers, 729 positions, with its pooling
    head) -> upstream's clip_vision_siglip_384.json."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    with torch.device("meta"):
        m = SiglipVisionModel(SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                                 num_attention_heads=16, image_size=384, patch_size=14))
    cfg = vision_config(rfx.siglip_file_sd(m))
    assert cfg.siglip and (cfg.image_size, cfg.patch) == (384, 14) and cfg.mean == cfg.std == (0.5, 0.5, 0.5)
    e = cfg.encoder
    assert (e.hidden_size, e.intermediate_size, e.num_layers, e.num_heads, e.hidden_act, e.projection_dim) == \
        (1152, 4304, 27, 16, "gelu_tanh", None)


def test_siglip_matches_transformers(siglip):
    """A 384x384 image: our preprocessing (0.5 mean/std) and tower against transformers'
    SiglipImageProcessor + SiglipVisionModel; every layer's output and the post-layernormed
    sequence (last_hidden_state, which is also image_embeds, as upstream)."""
    from transformers import SiglipImageProcessor
    m, cv = siglip
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 384, 384, 3), dtype=np.uint8)
    out = cv.encode_image(torch.from_numpy(pixels).float() / 255.0, crop=True)
    proc = SiglipImageProcessor(size={"height": 384, "width": 384})
    pv = proc(images=list(pixels), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = m(pixel_values=pv, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 729, 144)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.image_embeds, ref.last_hidden_state, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.penultimate_hidden_states, ref.hidden_states[-2], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.all_hidden_states, torch.stack(ref.hidden_states[1:], dim=1), atol=1e-4, rtol=1e-4)


def test_crop_center_and_none(siglip):
    """crop "center": the shortest side to 384 and the middle square; "none": the whole image
    squashed to 384x384 (as upstream's clip_preprocess)."""
    from comfyui.models.clip_vision import clip_preprocess
    m, cv = siglip
    g = torch.Generator().manual_seed(2)
    wide = torch.rand(1, 200, 400, 3, generator=g)
    for crop in (True, False):
        out = cv.encode_image(wide, crop=crop)
        with torch.no_grad():
            ref = m(pixel_values=clip_preprocess(wide, 384, [0.5] * 3, [0.5] * 3, crop=crop)).last_hidden_state
        torch.testing.assert_close(out.last_hidden_state, ref, atol=1e-4, rtol=1e-4)
    centre = cv.encode_image(wide, crop=True).last_hidden_state
    squashed = cv.encode_image(wide, crop=False).last_hidden_state
    middle = cv.encode_image(wide[:, :, 100:300], crop=True).last_hidden_state
    assert (centre - squashed).abs().max() > 1e-2
    assert (centre - middle).abs().max() < (squashed - middle).abs().max()


# ---------------------------------------------------------------------------- Redux
@pytest.fixture(scope="module")
def redux(tmp_path_factory):
    m = rfx.diffusers_redux(seed=4, redux_dim=144, txt=64)
    path = tmp_path_factory.mktemp("redux") / "flux1-redux-dev.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return m, load_style_model(str(path))


def test_redux_matches_diffusers(redux):
    m, style = redux
    x = torch.randn(2, 729, 144, generator=torch.Generator().manual_seed(5))
    ours = style.get_cond(Output(last_hidden_state=x))
    with torch.no_grad():
        ref = m(x).image_embeds
    assert ours.shape == (2, 729, 64)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_not_a_style_model_is_refused(tmp_path):
    from comfyui.models.loading import ModelFileError
    path = tmp_path / "x.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelFileError, match="redux_up"):
        load_style_model(str(path))


def _apply(cond, style, vision_out, strength, strength_type):
    from comfyui.nodes.builtin.vision import StyleModelApply
    return StyleModelApply().apply_stylemodel(cond, style, vision_out, strength, strength_type)[0]


def test_style_model_apply_strength_types(redux):
    _, style = redux
    x = torch.randn(1, 6, 144, generator=torch.Generator().manual_seed(6))
    vision_out = Output(last_hidden_state=x)
    tokens = style.get_cond(vision_out)
    text = torch.randn(1, 4, 64)
    cond = [[text, {"guidance": 3.5}]]

    (mult,) = _apply(cond, style, vision_out, 0.5, "multiply")
    torch.testing.assert_close(mult[0], torch.cat([text, tokens * 0.5], dim=1))
    assert "attention_mask" not in mult[1] and mult[1]["guidance"] == 3.5

    (same,) = _apply(cond, style, vision_out, 1.0, "attn_bias")  # strength 1: no mask needed
    torch.testing.assert_close(same[0], torch.cat([text, tokens], dim=1))
    assert "attention_mask" not in same[1]

    (bias,) = _apply(cond, style, vision_out, 0.5, "attn_bias")
    torch.testing.assert_close(bias[0], torch.cat([text, tokens], dim=1))
    mask = bias[1]["attention_mask"]
    assert mask.shape == (1, 4 + 6 + 1, 4 + 6 + 1) and bias[1]["attention_mask_img_shape"] == (1, 1)
    style_cols = mask[:, :, 4:10]
    rows = torch.tensor([0, 1, 2, 3, 10])
    torch.testing.assert_close(style_cols[:, rows], torch.full((1, 5, 6), math.log(0.5)))
    assert (mask[:, 4:10] == 0).all() and (mask[:, rows][:, :, rows] == 0).all()

    # a second image in multiply mode grows the existing mask (bias 0 for its tokens)
    (both,) = _apply([bias], style, vision_out, 1.0, "multiply")
    assert both[0].shape[1] == 16 and both[1]["attention_mask"].shape == (1, 17, 17)
    torch.testing.assert_close(both[1]["attention_mask"][:, :, 4:10][:, [0, 1, 2, 3, 16]],
                               torch.full((1, 5, 6), math.log(0.5)))
    assert (both[1]["attention_mask"][:, :, 10:16] == 0).all()


def test_attention_bias_reaches_flux(tmp_path, redux):
    """attn_bias strength 0 = a -inf bias for every query on the Redux tokens: the Flux output
    equals the one without them; strength 1 (no mask) differs, and strength 0.3 lies between."""
    from comfyui.models import sd as sdm
    _, style = redux
    path = tmp_path / "flux1-dev.safetensors"
    save_file({k: v.contiguous() for k, v in ffx._flux_native(24).items()}, str(path))
    model = sdm.load_diffusion_model(str(path)).model
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 16, 8, 8, generator=g)
    text = torch.randn(1, 5, 64, generator=g)
    vision_out = Output(last_hidden_state=torch.randn(1, 6, 144, generator=g))
    sigma = torch.tensor([0.7])

    def denoise(cond):
        c, keys = cond[0]
        conds = model.extra_conds(cross_attn=c, noise=x, device=torch.device("cpu"), **keys)
        with torch.no_grad():
            return model.apply_model(x, sigma, **conds)

    plain = denoise([[text, {}]])
    off = denoise(_apply([[text, {}]], style, vision_out, 0.0, "attn_bias"))
    on = denoise(_apply([[text, {}]], style, vision_out, 1.0, "attn_bias"))
    part = denoise(_apply([[text, {}]], style, vision_out, 0.3, "attn_bias"))
    torch.testing.assert_close(off, plain, atol=1e-5, rtol=1e-5)
    assert (on - plain).abs().max() > 1e-3
    assert 0 < (part - plain).abs().max() < (on - plain).abs().max()


def test_dit_mask_upscale_keeps_the_text_block():
    from comfyui.models.dit import upscale_dit_mask
    mask = torch.zeros(1, 3 + 1, 3 + 1)
    mask[:, :3, 1] = -5.0  # text queries on text token 1
    mask[:, :, 3] = -1.0   # everyone on the single image token
    out = upscale_dit_mask(mask, (1, 1), (2, 3))
    assert out.shape == (1, 9, 9)
    torch.testing.assert_close(out[:, :3, :3], mask[:, :3, :3])
    assert (out[:, :, 3:] == -1.0).all() and (out[:, 3:, 1] == 0).all()


# ------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def env(tmp_path_factory, cpu):
    from comfyui import paths, runtime
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    base = tmp_path_factory.mktemp("redux")
    paths.configure(base_directory=base, create_directories=True)
    models = os.path.join(base, "models")
    ffx.write_flux_files(models)
    rfx.write_redux_files(models, txt=64)
    rng = np.random.default_rng(1)
    for i, name in enumerate(REFERENCES):
        Image.fromarray((rng.random((48 + 16 * i, 64, 3)) * 255).astype(np.uint8)).save(os.path.join(base, "input", name))
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(os.path.join(base, "input", "other.png"))
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
        i = node["inputs"]
        if node["class_type"] == "EmptySD3LatentImage":
            i["width"], i["height"] = i["width"] // 16, i["height"] // 16
        if node["class_type"] == "BasicScheduler":
            i["steps"] = 2
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


def test_redux_template_runs_end_to_end(env):
    """The Redux template (two reference images through CLIPVisionEncode + StyleModelApply on
    a Flux dev prompt, ModelSamplingFlux, SamplerCustomAdvanced) at 64x64, 2 steps; the
    reference images steer the result."""
    with open(EXAMPLE) as f:
        prompt = _shrink(json.load(f))
    image = _run(env, prompt)
    assert image.shape == (64, 64, 3) and image.std() > 0
    other = json.loads(json.dumps(prompt))
    other["47"]["inputs"]["image"] = "other.png"
    other["9"]["inputs"]["filename_prefix"] = "other_reference"
    assert np.abs(_run(env, other).astype(int) - image.astype(int)).max() > 0
    bias = json.loads(json.dumps(prompt))
    bias["41"]["inputs"].update(strength=0.5, strength_type="attn_bias")
    bias["9"]["inputs"]["filename_prefix"] = "attn_bias"
    assert np.abs(_run(env, bias).astype(int) - image.astype(int)).max() > 0
