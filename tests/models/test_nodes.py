"""The loader / text / VAE nodes, directly and through the engine with the sampling nodes."""
from __future__ import annotations

import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.nodes.builtin import loaders as L
from comfyui.nodes.builtin import text as T
from comfyui.nodes.builtin import vae as V

from . import fixtures as fx


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


@pytest.fixture
def ws(workspace):
    m = os.path.join(workspace, "models")
    fx.make_sd1_checkpoint(os.path.join(m, "checkpoints", "sd1.safetensors"), seed=31)
    fx.make_sd1_checkpoint(os.path.join(m, "checkpoints", "inpaint.safetensors"), seed=32, inpaint=True)
    fx.make_sdxl_checkpoint(os.path.join(m, "checkpoints", "xl", "sdxl.safetensors"), seed=33)
    fx.make_lora(os.path.join(m, "loras", "style.safetensors"))
    fx.make_embedding(os.path.join(m, "embeddings", "myconcept.pt"), torch.randn(2, 32))
    return workspace


def test_node_inputs_list_files(ws):
    from comfyui import known_models

    def on_disk(names, folder):  # the lists also offer the known models (comfyui.known_models)
        assert names == sorted(names)
        return [n for n in names if known_models.find(n, folder) is None]

    assert on_disk(L.CheckpointLoaderSimple.INPUT_TYPES()["required"]["ckpt_name"][0], "checkpoints") == \
        ["inpaint.safetensors", "sd1.safetensors", "xl/sdxl.safetensors"]
    assert on_disk(L.LoraLoader.INPUT_TYPES()["required"]["lora_name"][0], "loras") == ["style.safetensors"]
    assert L.CLIPSetLastLayer.INPUT_TYPES()["required"]["stop_at_clip_layer"][1] == \
        {"default": -1, "min": -24, "max": -1, "step": 1}


def test_text_encode_lora_and_clip_skip(ws):
    model, clip, vae = L.CheckpointLoaderSimple().load_checkpoint("sd1.safetensors")
    (cond,) = T.CLIPTextEncode().encode(clip, "a (cat:1.2) embedding:myconcept")
    assert len(cond) == 1 and cond[0][0].shape == (1, 77, 32) and cond[0][1]["pooled_output"].shape == (1, 32)
    (skip,) = L.CLIPSetLastLayer().set_last_layer(clip, -2)
    (cond2,) = T.CLIPTextEncode().encode(skip, "a (cat:1.2) embedding:myconcept")
    assert not torch.allclose(cond[0][0], cond2[0][0])
    m2, c2 = L.LoraLoader().load_lora(model, clip, "style.safetensors", 1.0, 1.0)
    (cond3,) = T.CLIPTextEncode().encode(c2, "a (cat:1.2) embedding:myconcept")
    assert not torch.allclose(cond[0][0], cond3[0][0])
    (m3,) = L.LoraLoaderModelOnly().load_lora_model_only(model, "style.safetensors", 0.5)
    assert m3.patches and m3.model is model.model
    with pytest.raises(RuntimeError, match="clip input is invalid"):
        T.CLIPTextEncode().encode(None, "x")


def test_sdxl_text_nodes(ws):
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("xl/sdxl.safetensors")
    (c,) = T.CLIPTextEncodeSDXL().encode(clip, 832, 1216, 0, 16, 832, 1216, "a dog " * 50, "a dog")
    assert c[0][0].shape == (1, 154, 96)  # G needed two chunks, L padded to match
    d = c[0][1]
    assert (d["width"], d["height"], d["crop_h"], d["target_width"]) == (832, 1216, 16, 832)
    y = model.model.extra_conds(cross_attn=c[0][0], **{k: v for k, v in d.items()})["y"]
    assert y.shape == (1, 1600)
    torch.testing.assert_close(y[:, :64], d["pooled_output"])
    (r,) = T.CLIPTextEncodeSDXLRefiner().encode(clip, 2.5, 1024, 1024, "x")
    assert r[0][1]["aesthetic_score"] == 2.5


def test_vae_nodes(ws):
    _, _, vae = L.CheckpointLoaderSimple().load_checkpoint("sd1.safetensors")
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 67, 45, 3, generator=g)
    (lat,) = V.VAEEncode().encode(vae, img)
    assert lat["samples"].shape == (2, 4, 8, 5)  # cropped to a multiple of 8
    (dec,) = V.VAEDecode().decode(vae, lat)
    assert dec.shape == (2, 64, 40, 3) and dec.dtype == torch.float32
    assert 0.0 <= dec.min() and dec.max() <= 1.0
    # tiled with one tile covering everything == untiled; smaller tiles stay close
    (whole,) = V.VAEDecodeTiled().decode(vae, lat, tile_size=512, overlap=64)
    torch.testing.assert_close(whole, dec, atol=1e-5, rtol=1e-5)
    big = {"samples": torch.randn(1, 4, 24, 24, generator=g) * 0.3}
    (ref,) = V.VAEDecode().decode(vae, big)
    (tiled,) = V.VAEDecodeTiled().decode(vae, big, tile_size=128, overlap=32)
    assert tiled.shape == ref.shape
    assert (tiled - ref).abs().mean() < 0.1
    (enc_t,) = V.VAEEncodeTiled().encode(vae, dec[:1], tile_size=512, overlap=64)
    (enc,) = V.VAEEncode().encode(vae, dec[:1])
    torch.testing.assert_close(enc_t["samples"], enc["samples"], atol=1e-5, rtol=1e-5)


def test_inpaint_nodes(ws):
    model, clip, vae = L.CheckpointLoaderSimple().load_checkpoint("inpaint.safetensors")
    img = torch.rand(1, 64, 64, 3)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:40, 20:44] = 1.0
    (lat,) = V.VAEEncodeForInpaint().encode(vae, img, mask, 6)
    assert lat["noise_mask"].shape == (1, 1, 64, 64)
    assert lat["noise_mask"].sum() > mask.sum()  # grown
    (pos,) = T.CLIPTextEncode().encode(clip, "fill")
    p2, n2, lat2 = V.InpaintModelConditioning().encode(pos, pos, img, vae, mask, True)
    assert torch.equal(lat2["noise_mask"], mask.reshape(1, 1, 64, 64))
    d = p2[0][1]
    assert d["concat_latent_image"].shape == (1, 4, 8, 8) and "pooled_output" in d
    assert "concat_latent_image" not in pos[0][1]  # input conditioning untouched
    noise = torch.randn(1, 4, 8, 8)
    conds = model.model.extra_conds(cross_attn=p2[0][0], noise=noise, device=torch.device("cpu"), **d)
    cc = conds["c_concat"]
    assert cc.shape == (1, 5, 8, 8)
    assert set(cc[:, 0].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(cc[:, 1:], model.model.process_latent_in(d["concat_latent_image"]))


def test_checkpoint_save_roundtrip(ws):
    model, clip, vae = L.CheckpointLoaderSimple().load_checkpoint("xl/sdxl.safetensors")
    m2, c2 = L.LoraLoader().load_lora(model, clip, "style.safetensors", 0.0, 0.0)
    L.CheckpointSave().save(m2, c2, vae, "checkpoints/saved", prompt={"1": {}})
    out = os.path.join(ws, "output", "checkpoints", "saved_00001_.safetensors")
    from comfyui.models.loading import load_torch_file
    from safetensors import safe_open
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base" and meta["prompt"] == '{"1": {}}'
    sd = load_torch_file(out)
    assert any(k.startswith("conditioner.embedders.1.model.transformer.resblocks.") for k in sd)
    m3, c3, v3 = sdm.load_checkpoint_guess_config(out)
    toks = clip.tokenize("round trip")
    torch.testing.assert_close(c3.encode_from_tokens(toks), clip.encode_from_tokens(toks))
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 96)
    y = torch.randn(1, 1600)
    memory.load_models_gpu([model])
    a = model.model.apply_model(x, torch.tensor([1.0]), c_crossattn=ctx, y=y)
    memory.load_models_gpu([m3])
    torch.testing.assert_close(m3.model.apply_model(x, torch.tensor([1.0]), c_crossattn=ctx, y=y), a)


def test_txt2img_through_engine(ws):
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        prompt = {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
            "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
                                                          "lora_name": "style.safetensors",
                                                          "strength_model": 0.8, "strength_clip": 0.8}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["10", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 3, "cfg": 7.0, "sampler_name": "euler",
                                                       "scheduler": "normal", "denoise": 1.0, "model": ["10", 0],
                                                       "positive": ["6", 0], "negative": ["7", 0],
                                                       "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        }
        sub = eng.submit(prompt)
        assert sub.node_errors == {}
        hist = eng.wait(sub.prompt_id).result(120)
        assert hist["status"]["status_str"] == "success", hist["status"]
        assert hist["outputs"]["9"]["images"][0]["filename"] == "ComfyUI_00001_.png"
        assert os.path.isfile(os.path.join(ws, "output", "ComfyUI_00001_.png"))
    finally:
        eng.stop()
