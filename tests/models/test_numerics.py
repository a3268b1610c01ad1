"""Numerical agreement with independent implementations (diffusers, transformers) on the
same tiny random weights, loaded from original-layout checkpoints."""
from __future__ import annotations

import pytest
import torch

from . import fixtures as fx

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from comfyui.models import convert, memory  # noqa: E402
from comfyui.models import sd as sdm  # noqa: E402


@pytest.fixture(autouse=True)
def _cpu_fp32():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _diffusers_unet(ldm_sd: dict, unet_config: dict, dcfg: dict):
    from diffusers import UNet2DConditionModel
    m = UNet2DConditionModel(**dcfg).eval()
    mapping = convert.unet_to_diffusers(unet_config)
    dsd = {dk: ldm_sd[lk] for dk, lk in mapping.items() if lk in ldm_sd}
    missing, unexpected = m.load_state_dict(dsd, strict=False)
    assert not missing, missing[:5]
    assert not unexpected
    # every LDM weight was mapped somewhere
    assert set(mapping[k] for k in dsd) == set(ldm_sd)
    return m


SD1_DIFFUSERS = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                     down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                     attention_head_dim=8, norm_num_groups=32)
SD2_DIFFUSERS = dict(SD1_DIFFUSERS, block_out_channels=(64, 128), cross_attention_dim=64, attention_head_dim=(1, 2),
                     use_linear_projection=True)
SDXL_DIFFUSERS = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                      cross_attention_dim=96, attention_head_dim=(1, 2), use_linear_projection=True,
                      addition_embed_type="text_time", addition_time_embed_dim=256,
                      projection_class_embeddings_input_dim=64 + 6 * 256, norm_num_groups=32)


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_unet_matches_diffusers(kind):
    make = {"sd1": fx.sd1_state_dict, "sd2": fx.sd2_state_dict, "sdxl": fx.sdxl_state_dict}[kind]
    dcfg = {"sd1": SD1_DIFFUSERS, "sd2": SD2_DIFFUSERS, "sdxl": SDXL_DIFFUSERS}[kind]
    sd = make(seed=3)
    model, clip, _ = sdm.load_state_dict_guess_config(sd)
    ucfg = model.model.model_config.unet_config
    ldm = {k[len("model.diffusion_model."):]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    ref = _diffusers_unet(ldm, ucfg, dcfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 12, generator=g)
    t = torch.tensor([999.0, 10.0])
    ctx_dim = ucfg["context_dim"]
    ctx = torch.randn(2, 77, ctx_dim, generator=g)
    with torch.no_grad():
        if kind == "sdxl":
            pooled = torch.randn(2, 64, generator=g)
            conds = model.model.extra_conds(cross_attn=ctx, pooled_output=pooled, width=96, height=128, crop_w=8,
                                            crop_h=0, target_width=96, target_height=128)
            ours = model.model.diffusion_model(x, t, context=ctx, y=conds["y"])
            time_ids = torch.tensor([[128, 96, 0, 8, 128, 96]] * 2, dtype=torch.float32)
            theirs = ref(x, t, encoder_hidden_states=ctx,
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        else:
            ours = model.model.diffusion_model(x, t, context=ctx)
            theirs = ref(x, t, encoder_hidden_states=ctx).sample
    assert ours.shape == theirs.shape == x.shape
    assert theirs.abs().mean() > 1e-2
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=2e-4)


def _hf_from_checkpoint(sd: dict, prefix: str, open_clip: bool, act: str, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    if open_clip:
        hf = convert.open_clip_to_hf(sd, prefix)
    else:
        hf = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    hidden = hf["text_model.embeddings.token_embedding.weight"].shape[1]
    layers = len({k.split(".")[3] for k in hf if k.startswith("text_model.encoder.layers.")})
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=max(1, hidden // 64), max_position_embeddings=77, hidden_act=act,
                         projection_dim=hidden, bos_token_id=49406, eos_token_id=49407)
    m = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()
    assert not fx.load_into_hf(m, hf)
    return m


def _final_norm(m):
    tm = getattr(m, "text_model", m)
    return tm.final_layer_norm


def _ids(clip, text, key):
    return torch.tensor([[t for t, _ in clip.tokenize(text)[key][0]]])


def test_sd1_text_encoder_matches_transformers_including_clip_skip():
    sd = fx.sd1_state_dict(seed=4)
    _, clip, _ = sdm.load_state_dict_guess_config(sd)
    ref = _hf_from_checkpoint(sd, "cond_stage_model.transformer.", False, "quick_gelu", False)
    text = "a photo of an astronaut riding a horse"
    ids = _ids(clip, text, "l")
    with torch.no_grad():
        out = ref(ids, output_hidden_states=True)
    cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    torch.testing.assert_close(cond, out.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, out.pooler_output, atol=1e-5, rtol=1e-5)
    # CLIPSetLastLayer -2: penultimate hidden state through the final layer norm (SD1 rule)
    c2 = clip.clone()
    c2.clip_layer(-2)
    cond2 = c2.encode_from_tokens(c2.tokenize(text))
    expect = _final_norm(ref)(out.hidden_states[-2])
    torch.testing.assert_close(cond2, expect, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond2, cond)
    # the original CLIP object is unchanged by the clone's layer choice
    torch.testing.assert_close(clip.encode_from_tokens(clip.tokenize(text)), cond)


def test_sd2_open_clip_penultimate_matches_transformers():
    sd = fx.sd2_state_dict(seed=5)
    _, clip, _ = sdm.load_state_dict_guess_config(sd)
    ref = _hf_from_checkpoint(sd, "cond_stage_model.model.", True, "gelu", True)
    text = "a castle on a hill, oil painting"
    ids = _ids(clip, text, "h")
    assert ids[0, -1].item() == 0  # SD2 pads with 0, not the end token
    with torch.no_grad():
        out = ref(ids, output_hidden_states=True)
    cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    torch.testing.assert_close(cond, _final_norm(ref)(out.hidden_states[-2]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, out.text_embeds, atol=1e-5, rtol=1e-5)


def test_sdxl_two_encoders_match_transformers():
    sd = fx.sdxl_state_dict(seed=6)
    _, clip, _ = sdm.load_state_dict_guess_config(sd)
    ref_l = _hf_from_checkpoint(sd, "conditioner.embedders.0.transformer.", False, "quick_gelu", False)
    ref_g = _hf_from_checkpoint(sd, "conditioner.embedders.1.model.", True, "gelu", True)
    text = "a red fox in the snow"
    toks = clip.tokenize(text)
    ids_l = torch.tensor([[t for t, _ in toks["l"][0]]])
    ids_g = torch.tensor([[t for t, _ in toks["g"][0]]])
    with torch.no_grad():
        ol = ref_l(ids_l, output_hidden_states=True)
        og = ref_g(ids_g, output_hidden_states=True)
    cond, pooled = clip.encode_from_tokens(toks, return_pooled=True)
    expect = torch.cat([ol.hidden_states[-2], og.hidden_states[-2]], dim=-1)  # no final norm in SDXL
    assert cond.shape == (1, 77, 96)
    torch.testing.assert_close(cond, expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, og.text_embeds, atol=1e-5, rtol=1e-5)


def _diffusers_vae(ldm_vae: dict):
    from diffusers import AutoencoderKL
    m = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64),
                      layers_per_block=1, latent_channels=4, norm_num_groups=32).eval()
    dkeys = m.state_dict()
    conv = convert.diffusers_vae_to_ldm({k: v for k, v in dkeys.items()})
    names = dict(zip(conv.keys(), dkeys.keys()))
    dsd = {}
    for lk, dk in names.items():
        v = ldm_vae[lk]
        dsd[dk] = v.reshape(dkeys[dk].shape)
    m.load_state_dict(dsd, strict=True)
    return m


def test_vae_matches_diffusers():
    sd = fx.sd1_state_dict(seed=7)
    _, _, vae = sdm.load_state_dict_guess_config(sd)
    ldm = {k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    ref = _diffusers_vae(ldm)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 4, 6, 5, generator=g)
    with torch.no_grad():
        theirs = ref.decode(z).sample
    ours_raw = vae.first_stage_model.decode(z)
    torch.testing.assert_close(ours_raw, theirs, atol=1e-4, rtol=1e-4)
    img = vae.decode(z)
    assert img.shape == (1, 48, 40, 3)
    torch.testing.assert_close(img, ((theirs + 1) / 2).clamp(0, 1).movedim(1, -1), atol=1e-4, rtol=1e-4)
    pixels = torch.rand(1, 48, 40, 3, generator=g)
    with torch.no_grad():
        enc = ref.encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mean
    torch.testing.assert_close(vae.encode(pixels), enc, atol=1e-4, rtol=1e-4)
