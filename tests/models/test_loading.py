"""Model files: formats, detection from the state dict, errors, cache, split files, diffusers folders."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.models.family import UnknownModelError
from comfyui.models.loading import ModelFileError, load_torch_file

from . import fixtures as fx


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.configure(None)
    runtime.current().model_files.clear()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return {
        "sd1": fx.make_sd1_checkpoint(str(d / "named_like_sdxl_base_1.0.safetensors")),
        "sd1_ckpt": fx.make_sd1_checkpoint(str(d / "sd1.ckpt"), seed=1),
        "sd1_inpaint": fx.make_sd1_checkpoint(str(d / "inpaint.safetensors"), inpaint=True),
        "sd1_bare": fx.make_sd1_checkpoint(str(d / "bare.safetensors"), vae=False, clip=False),
        "sd2v": fx.make_sd2_checkpoint(str(d / "sd2v.safetensors"), v_pred=True),
        "sd2e": fx.make_sd2_checkpoint(str(d / "sd2e.safetensors"), v_pred=False),
        "sdxl": fx.make_sdxl_checkpoint(str(d / "v1-5-pruned.safetensors")),
        "refiner": fx.make_refiner_checkpoint(str(d / "refiner.safetensors")),
    }


@pytest.mark.parametrize("name,arch,pred,family,inch", [
    ("sd1", "sd15", "eps", "sd1", 4),
    ("sd1_ckpt", "sd15", "eps", "sd1", 4),
    ("sd1_inpaint", "sd15_inpaint", "eps", "sd1", 9),
    ("sd2v", "sd20_v", "v_prediction", "sd2", 4),
    ("sd2e", "sd20", "eps", "sd2", 4),
    ("sdxl", "sdxl", "eps", "sdxl", 4),
    ("refiner", "sdxl_refiner", "eps", "sdxl_refiner", 4),
])
def test_detection_from_state_dict(files, name, arch, pred, family, inch):
    model, clip, vae = sdm.load_checkpoint_guess_config(files[name])
    mc = model.model.model_config
    assert mc.name == arch  # file names deliberately lie for sd1/sdxl
    assert model.model.model_type == pred
    assert clip.family == family
    assert mc.unet_config["in_channels"] == inch
    assert vae is not None and vae.latent_channels == 4
    x = torch.randn(1, 4, 8, 8)
    c, p = clip.encode_from_tokens(clip.tokenize("hello"), return_pooled=True)
    conds = model.model.extra_conds(cross_attn=c, pooled_output=p, noise=x, device=torch.device("cpu"),
                                    width=64, height=64)
    if inch == 9:
        assert conds["c_concat"].shape == (1, 5, 8, 8)
    if family.startswith("sdxl"):
        assert conds["y"].shape[1] == mc.unet_config["adm_in_channels"]
    out = model.model.apply_model(x, torch.tensor([2.0]), **conds)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_latent_formats(files):
    m1 = sdm.load_checkpoint_guess_config(files["sd1"])[0]
    mx = sdm.load_checkpoint_guess_config(files["sdxl"])[0]
    x = torch.ones(1, 4, 2, 2)
    assert m1.model.process_latent_in(x)[0, 0, 0, 0].item() == pytest.approx(0.18215)
    assert mx.model.process_latent_in(x)[0, 0, 0, 0].item() == pytest.approx(0.13025)
    torch.testing.assert_close(mx.model.process_latent_out(mx.model.process_latent_in(x)), x)
    assert len(m1.model.latent_format.latent_rgb_factors) == 4


def test_checkpoint_without_vae_or_clip(files):
    model, clip, vae = sdm.load_checkpoint_guess_config(files["sd1_bare"])
    assert model is not None and clip is None and vae is None


def test_unknown_files_error_names_what_was_found(tmp_path):
    p = str(tmp_path / "other.safetensors")
    from safetensors.torch import save_file
    save_file({"backbone.layer1.weight": torch.zeros(3, 3), "head.fc.bias": torch.zeros(3)}, p)
    with pytest.raises(UnknownModelError) as e:
        sdm.load_checkpoint_guess_config(p)
    assert "backbone.layer1" in str(e.value) and "other.safetensors" in str(e.value)
    # a UNet of an unsupported kind is described by its numbers
    sd = fx.sd1_state_dict(vae=False, clip=False)
    w = sd["model.diffusion_model.input_blocks.0.0.weight"]
    sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(w.shape[0], 8, 3, 3)
    with pytest.raises(UnknownModelError, match="in_channels=8"):
        sdm.load_state_dict_guess_config(sd)


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "evil.ckpt"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": {"x": Evil()}}, f)
    with pytest.raises(ModelFileError, match="refused"):
        load_torch_file(str(p))


def test_safetensors_mmap_and_disable_mmap(files):
    a = load_torch_file(files["sd1"])
    memory.configure(None, cpu=True, disable_mmap=True)
    b = load_torch_file(files["sd1"])
    assert a.keys() == b.keys()
    for k in list(a)[:20]:
        assert torch.equal(a[k], b[k])
    c = load_torch_file(files["sd1_ckpt"])  # pickle: 'state_dict' unwrapped, counters dropped
    assert "global_step" not in c and any(k.startswith("model.diffusion_model.") for k in c)


def test_cache_by_path_and_mtime(files, tmp_path):
    import shutil
    p = str(tmp_path / "copy.safetensors")
    shutil.copy(files["sd1"], p)
    before = runtime.current().model_files.loads
    a = sdm.load_checkpoint_guess_config(p)
    b = sdm.load_checkpoint_guess_config(p)
    assert a[0] is b[0] and a[1] is b[1] and a[2] is b[2]
    assert runtime.current().model_files.loads == before + 1
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    c = sdm.load_checkpoint_guess_config(p)
    assert c[0] is not a[0] and runtime.current().model_files.loads == before + 2


def test_split_files(files, tmp_path):
    from safetensors.torch import save_file
    sd = load_torch_file(files["sdxl"])
    unet = {k[len("model.diffusion_model."):]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    vae = {k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    save_file(unet, str(tmp_path / "unet.safetensors"))
    save_file(vae, str(tmp_path / "vae.safetensors"))
    m = sdm.load_diffusion_model(str(tmp_path / "unet.safetensors"))
    assert m.model.model_config.name == "sdxl"
    v = sdm.load_vae(str(tmp_path / "vae.safetensors"))
    img = v.decode(torch.zeros(1, 4, 4, 4))
    assert img.shape == (1, 32, 32, 3)
    # SD1 CLIP-L text encoder as a transformers-layout file
    s1 = load_torch_file(files["sd1"])
    te = {k[len("cond_stage_model.transformer."):]: v for k, v in s1.items() if k.startswith("cond_stage_model.transformer.")}
    save_file(te, str(tmp_path / "clip_l.safetensors"))
    clip = sdm.load_clip([str(tmp_path / "clip_l.safetensors")])
    ref = sdm.load_checkpoint_guess_config(files["sd1"])[1]
    toks = clip.tokenize("same text")
    torch.testing.assert_close(clip.encode_from_tokens(toks), ref.encode_from_tokens(toks))
    # fp8 weight storage for a split UNet: compute in a supported dtype, close to fp32
    m8 = sdm.load_diffusion_model(str(tmp_path / "unet.safetensors"), "fp8_e4m3fn")
    assert m8.model.get_dtype() == torch.float8_e4m3fn and m8.model.manual_cast_dtype == torch.float32
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 96)
    y = torch.randn(1, 1600)
    o32 = m.model.apply_model(x, torch.tensor([1.0]), c_crossattn=ctx, y=y)
    o8 = m8.model.apply_model(x, torch.tensor([1.0]), c_crossattn=ctx, y=y)
    assert torch.isfinite(o8).all()
    rel = (o8 - o32).norm() / (o32 - x).norm()
    assert rel < 0.2


def test_diffusers_folder(tmp_path):
    pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    import json
    from .test_numerics import SD1_DIFFUSERS, _diffusers_unet, _diffusers_vae
    sd = fx.sd1_state_dict(seed=11)
    root = tmp_path / "pipe"
    unet_ldm = {k[len("model.diffusion_model."):]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    ref_model = sdm.load_state_dict_guess_config(sd)
    du = _diffusers_unet(unet_ldm, ref_model[0].model.model_config.unet_config, SD1_DIFFUSERS)
    du.save_pretrained(str(root / "unet"))
    dv = _diffusers_vae({k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")})
    dv.save_pretrained(str(root / "vae"))
    te = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=1,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407))
    hf = {k[len("cond_stage_model.transformer."):]: v for k, v in sd.items() if k.startswith("cond_stage_model.transformer.")}
    fx.load_into_hf(te, hf)
    te.save_pretrained(str(root / "text_encoder"))
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    model, clip, vae = sdm.load_diffusers(str(root))
    assert model.model.model_config.name == "sd15"
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 32)
    torch.testing.assert_close(model.model.apply_model(x, torch.tensor([3.0]), c_crossattn=ctx),
                               ref_model[0].model.apply_model(x, torch.tensor([3.0]), c_crossattn=ctx))
    toks = clip.tokenize("a cat")
    torch.testing.assert_close(clip.encode_from_tokens(toks), ref_model[1].encode_from_tokens(toks))
    z = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(vae.decode(z), ref_model[2].decode(z))
