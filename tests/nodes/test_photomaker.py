"""PhotoMakerLoader / PhotoMakerEncode on a tiny random PhotoMaker v1 file in the real layout
(``{"id_encoder": {...}, "lora_weights": {...}}`` pickled like photomaker-v1.bin) and a tiny
SDXL checkpoint: the vision tower matches transformers' CLIPVisionModelWithProjection, the fused
token matches the published fuse formula, every other token equals CLIPTextEncode of the prompt
without the trigger word."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from models import fixtures as fx

from comfyui import runtime
from comfyui.models import memory
from comfyui.models.loading import ModelFileError
from comfyui.nodes.builtin import loaders as L
from comfyui.nodes.builtin import photomaker as P
from comfyui.nodes.builtin import text as T

# tiny SDXL in fixtures: CLIP-L 32 wide + CLIP-G 64 wide -> 96-wide conditioning
PROJ, PROJ2, WIDTH = 32, 64, 96


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


def hf_vision(seed: int = 3):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                           image_size=32, patch_size=8, projection_dim=PROJ, hidden_act="quick_gelu")
    return CLIPVisionModelWithProjection(cfg).eval()


def id_encoder_sd(hf) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    sd = {k: v.detach().clone() for k, v in hf.state_dict().items() if not k.endswith("position_ids")}
    sd["visual_projection_2.weight"] = torch.randn(PROJ2, 64, generator=g) * 0.1
    for name, i, o, h in (("mlp1", 2 * WIDTH, WIDTH, WIDTH), ("mlp2", WIDTH, WIDTH, WIDTH)):
        p = f"fuse_module.{name}."
        sd[p + "layernorm.weight"] = 1 + 0.1 * torch.randn(i, generator=g)
        sd[p + "layernorm.bias"] = 0.1 * torch.randn(i, generator=g)
        sd[p + "fc1.weight"] = torch.randn(h, i, generator=g) * 0.1
        sd[p + "fc1.bias"] = torch.randn(h, generator=g) * 0.1
        sd[p + "fc2.weight"] = torch.randn(o, h, generator=g) * 0.1
        sd[p + "fc2.bias"] = torch.randn(o, generator=g) * 0.1
    sd["fuse_module.layer_norm.weight"] = 1 + 0.1 * torch.randn(WIDTH, generator=g)
    sd["fuse_module.layer_norm.bias"] = 0.1 * torch.randn(WIDTH, generator=g)
    return sd


def fuse_reference(sd, prompt, ids):
    def mlp(x, name, residual):
        p = f"fuse_module.{name}."
        y = F.layer_norm(x, x.shape[-1:], sd[p + "layernorm.weight"], sd[p + "layernorm.bias"])
        y = F.linear(F.gelu(F.linear(y, sd[p + "fc1.weight"], sd[p + "fc1.bias"])), sd[p + "fc2.weight"], sd[p + "fc2.bias"])
        return x + y if residual else y
    x = mlp(torch.cat([prompt, ids], -1), "mlp1", False) + prompt
    x = mlp(x, "mlp2", True)
    return F.layer_norm(x, x.shape[-1:], sd["fuse_module.layer_norm.weight"], sd["fuse_module.layer_norm.bias"])


@pytest.fixture
def ws(workspace):
    from comfyui import paths
    hf = hf_vision()
    sd = id_encoder_sd(hf)
    lora = {"unet.down_blocks.0.lora_A.weight": torch.zeros(4, 8)}  # present in the real file, unused
    torch.save({"id_encoder": sd, "lora_weights": lora}, os.path.join(workspace, "models", "photomaker", "pm.bin"))
    fx.make_sdxl_checkpoint(os.path.join(workspace, "models", "checkpoints", "xl.safetensors"), seed=61)
    paths.invalidate_cache()
    return hf, sd


def image(seed=0):
    return torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(seed))


def test_loader_lists_and_loads_the_real_layout_and_tower_matches_transformers(ws):
    hf, sd = ws
    assert "pm.bin" in P.PhotoMakerLoader.INPUT_TYPES()["required"]["photomaker_model_name"][0]
    model = P.PhotoMakerLoader().load_photomaker_model("pm.bin")[0]
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.model.id_embeds(pixels)
        ref = hf(pixel_values=pixels)
        pooled = hf.vision_model(pixel_values=pixels).pooler_output
    torch.testing.assert_close(ours[:, :PROJ], ref.image_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, PROJ:], pooled @ sd["visual_projection_2.weight"].T, atol=1e-5, rtol=1e-5)


def test_encode_fuses_only_the_class_word_and_matches_the_formula(ws):
    _, sd = ws
    clip = L.CheckpointLoaderSimple().load_checkpoint("xl.safetensors")[1]
    model = P.PhotoMakerLoader().load_photomaker_model("pm.bin")[0]
    (cond,) = P.PhotoMakerEncode().apply_photomaker(model, image(), clip, "a photo of a man photomaker in snow")
    (plain,) = T.CLIPTextEncode().encode(clip, "a photo of a man in snow")
    got, want = cond[0][0], plain[0][0]
    assert got.shape == want.shape == (1, 77, WIDTH)
    torch.testing.assert_close(cond[0][1]["pooled_output"], plain[0][1]["pooled_output"])
    # the trigger's tokens are gone; "man" (token 5 after the start token) takes the image
    changed = [i for i in range(77) if not torch.equal(got[0, i], want[0, i])]
    assert changed == [5]
    pixels = P.pm.clip_preprocess(image(), size=32)
    with torch.no_grad():
        ids = model.model.id_embeds(pixels)
    torch.testing.assert_close(got[0, 5], fuse_reference(sd, want[0, 5], ids[0]), atol=1e-5, rtol=1e-5)
    # another face, another embedding
    (other,) = P.PhotoMakerEncode().apply_photomaker(model, image(9), clip, "a photo of a man photomaker in snow")
    assert not torch.allclose(other[0][0][0, 5], got[0, 5])


def test_trigger_after_a_weighted_class_word(ws):
    # upstream's word ids count weighted segments, not words; the trigger is found by its tokens
    clip = L.CheckpointLoaderSimple().load_checkpoint("xl.safetensors")[1]
    model = P.PhotoMakerLoader().load_photomaker_model("pm.bin")[0]
    (cond,) = P.PhotoMakerEncode().apply_photomaker(model, image(), clip, "a (man:1.2) PhotoMaker, smiling")
    (plain,) = T.CLIPTextEncode().encode(clip, "a (man:1.2), smiling")
    got, want = cond[0][0], plain[0][0]
    assert [i for i in range(77) if not torch.equal(got[0, i], want[0, i])] == [2]


def test_encode_without_trigger_word_is_plain_text_encode(ws):
    clip = L.CheckpointLoaderSimple().load_checkpoint("xl.safetensors")[1]
    model = P.PhotoMakerLoader().load_photomaker_model("pm.bin")[0]
    (cond,) = P.PhotoMakerEncode().apply_photomaker(model, image(), clip, "a photo of a man")
    (plain,) = T.CLIPTextEncode().encode(clip, "a photo of a man")
    torch.testing.assert_close(cond[0][0], plain[0][0])


def test_safetensors_with_the_same_keys_loads_and_wrong_files_are_refused(ws, workspace):
    from safetensors.torch import save_file
    _, sd = ws
    folder = os.path.join(workspace, "models", "photomaker")
    save_file(sd, os.path.join(folder, "pm.safetensors"))
    model = P.PhotoMakerLoader().load_photomaker_model("pm.safetensors")[0]
    assert model.width == WIDTH
    vision_only = {k: v for k, v in sd.items() if not k.startswith("fuse_module.")}
    save_file(vision_only, os.path.join(folder, "clip_vision.safetensors"))
    with pytest.raises(ModelFileError, match="not a PhotoMaker model"):
        P.PhotoMakerLoader().load_photomaker_model("clip_vision.safetensors")


def test_sd15_clip_is_refused_with_a_clear_error(ws, workspace):
    from comfyui import paths
    fx.make_sd1_checkpoint(os.path.join(workspace, "models", "checkpoints", "sd1.safetensors"), seed=62)
    paths.invalidate_cache()
    clip = L.CheckpointLoaderSimple().load_checkpoint("sd1.safetensors")[1]
    model = P.PhotoMakerLoader().load_photomaker_model("pm.bin")[0]
    with pytest.raises(ValueError, match="SDXL"):
        P.PhotoMakerEncode().apply_photomaker(model, image(), clip, "a photo of a man photomaker")
