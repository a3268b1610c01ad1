"""CLIPLoader / DualCLIPLoader / TripleCLIPLoader: every listed type loads or is refused at
prompt validation (a 400 node error naming the reason), never at run time."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from comfyui.engine.validation import PromptError, validate_prompt
from comfyui.models.family import UnknownModelError
from comfyui.models.text_encoders.recipes import CLIP_TYPES, clip_type_problem
from comfyui.nodes.builtin import loaders
from comfyui.nodes.registry import NodeRegistry

from . import fixtures as fx
from . import flux_fixtures as ffx
from . import lumina2_fixtures as lf
from . import wan_fixtures as wf

# the file CLIPLoader gets for a type whose encoder is not CLIP-L
FILE_FOR_TYPE = {"lumina2": "qwen_3_4b.safetensors", "chroma": "t5xxl_fp16.safetensors",
                 "pixart": "t5xxl_fp16.safetensors", "wan": "umt5_xxl.safetensors", "ltxv": "t5xxl_fp16.safetensors"}


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    """A tiny CLIP-L and a one-layer OpenCLIP-bigG-width text encoder (1280 wide is what
    tells a G file from an L file; fp16 keeps it at 130 MB), written once."""
    folder = tmp_path_factory.mktemp("text_encoders")
    l_sd = fx.hf_text_sd(fx.hf_text_model(32, 2, None, "quick_gelu", 11))
    g_sd = fx.hf_text_sd(fx.hf_text_model(1280, 1, 1280, "gelu", 12, inter=64))
    save_file({k: v.contiguous() for k, v in l_sd.items()}, str(folder / "clip_l.safetensors"))
    save_file({k: v.half().contiguous() for k, v in g_sd.items()}, str(folder / "clip_g.safetensors"))
    qwen3 = lf.hf_qwen3(13, hidden=16, layers=2, heads=2, kv_heads=1, head_dim=8, intermediate=32)
    save_file({k: v.half().contiguous() for k, v in lf.qwen3_file_sd(qwen3).items()},
              str(folder / "qwen_3_4b.safetensors"))
    save_file({k: v.half().contiguous() for k, v in ffx.t5_sd(ffx.hf_t5(14)).items()},
              str(folder / "t5xxl_fp16.safetensors"))
    umt5 = wf.hf_umt5(14, vocab=128)
    save_file(wf.umt5_file_sd(umt5, wf.spiece_model()), str(folder / "umt5_xxl.safetensors"))
    return folder


@pytest.fixture
def text_encoders(workspace, encoder_files):
    folder = workspace / "models" / "text_encoders"
    folder.mkdir(parents=True, exist_ok=True)
    for f in encoder_files.iterdir():
        (folder / f.name).symlink_to(f)
    return folder


@pytest.fixture
def registry():
    r = NodeRegistry()
    r.load_builtins()
    return r


def _node_errors(registry, prompt):
    try:
        _, node_errors = validate_prompt(prompt, registry)
    except PromptError as exc:
        return exc.node_errors
    return node_errors


def _clip_prompt(class_type, inputs):
    return {"1": {"class_type": class_type, "inputs": inputs},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 0]}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}


@pytest.mark.parametrize("clip_type", loaders.CLIP_TYPES)
def test_every_clip_loader_type_loads_or_is_refused_at_validation(registry, text_encoders, clip_type):
    name = FILE_FOR_TYPE.get(clip_type, "clip_l.safetensors")
    prompt = _clip_prompt("CLIPLoader", {"clip_name": name, "type": clip_type})
    errors = _node_errors(registry, prompt).get("1", {}).get("errors", [])
    problem = clip_type_problem(clip_type, 1)
    if problem is None:
        assert errors == []
        (clip,) = loaders.CLIPLoader().load_clip(name, clip_type)
        cond = clip.encode_from_tokens(clip.tokenize("a cat"))
        assert cond.ndim == 3 and torch.isfinite(cond).all()
    else:
        # one error per input VALIDATE_INPUTS takes (CLIPLoader: type, clip_name), as in ComfyUI
        assert errors and {e["type"] for e in errors} == {"custom_validation_failed"}
        assert f"'{clip_type}'" in errors[0]["details"]


def test_stable_diffusion_type_works(text_encoders):
    assert clip_type_problem("stable_diffusion", 1) is None
    (clip,) = loaders.CLIPLoader().load_clip("clip_l.safetensors", "stable_diffusion")
    assert clip.family == "sd1"
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a cat"), return_pooled=True)
    assert cond.shape == (1, 77, 32) and pooled.shape == (1, 32)


def test_a_type_not_listed_is_refused(registry, text_encoders):
    prompt = _clip_prompt("CLIPLoader", {"clip_name": "clip_l.safetensors", "type": "no_such_type"})
    errors = _node_errors(registry, prompt)["1"]["errors"]
    assert "no_such_type" in errors[0]["details"]


def test_dual_clip_loader_sdxl_from_two_files(registry, text_encoders):
    prompt = _clip_prompt("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                                             "type": "sdxl"})
    assert "1" not in _node_errors(registry, prompt)
    (clip,) = loaders.DualCLIPLoader().load_clip("clip_l.safetensors", "clip_g.safetensors", "sdxl")
    assert clip.family == "sdxl"
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a cat"), return_pooled=True)
    assert cond.shape == (1, 77, 32 + 1280) and pooled.shape == (1, 1280)


@pytest.mark.parametrize("clip_type", loaders.DUAL_CLIP_TYPES)
def test_every_dual_clip_type_loads_or_is_refused_at_validation(registry, text_encoders, clip_type):
    prompt = _clip_prompt("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                                             "type": clip_type})
    errors = _node_errors(registry, prompt).get("1", {}).get("errors", [])
    problem = clip_type_problem(clip_type, 2)
    assert (errors == []) == (problem is None)
    if problem is not None:
        assert problem in errors[0]["details"]


def test_triple_clip_loader_validates_its_sd3_recipe(registry, text_encoders):
    prompt = _clip_prompt("TripleCLIPLoader", {"clip_name1": "clip_l.safetensors",
                                               "clip_name2": "clip_g.safetensors", "clip_name3": "clip_l.safetensors"})
    errors = _node_errors(registry, prompt).get("1", {}).get("errors", [])
    assert (errors == []) == ("sd3" in CLIP_TYPES and clip_type_problem("sd3", 3) is None)


def test_a_file_of_the_wrong_encoder_for_the_type_is_a_clear_error(text_encoders):
    with pytest.raises(UnknownModelError, match="clip_g text encoder does not belong to type 'sdxl'|second clip_g"):
        loaders.DualCLIPLoader().load_clip("clip_g.safetensors", "clip_g.safetensors", "sdxl")
