"""Vision conditioning: CLIP vision against transformers' CLIPVisionModelWithProjection (HF and
OpenCLIP file layouts), the style adapter's tokens, hypernetwork patches on a real tiny model."""
from __future__ import annotations

import math
import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import clip_vision as cv
from comfyui.models import memory
from comfyui.nodes.builtin import vision as nodes


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _hf_vision(seed=0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=64, hidden_act="quick_gelu")
    m = CLIPVisionModelWithProjection(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.add_(torch.randn(p.shape) * 0.1)
    return m


def _to_open_clip(sd):
    out = {"visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
           "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"], "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
           "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
           "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
           "visual.proj": sd["visual_projection.weight"].t().contiguous()}
    for i in range(3):
        s, d = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[d + "attn.in_proj_weight"] = torch.cat([sd[s + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        out[d + "attn.in_proj_bias"] = torch.cat([sd[s + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[d + a + ".weight"], out[d + a + ".bias"] = sd[s + b + ".weight"], sd[s + b + ".bias"]
    return out


@pytest.mark.parametrize("layout", ["hf", "open_clip"])
def test_clip_vision_matches_transformers(workspace, layout):
    from safetensors.torch import save_file
    ref = _hf_vision()
    sd = {k: v.detach().clone().contiguous() for k, v in ref.state_dict().items()}
    if layout == "open_clip":
        sd = _to_open_clip(sd)
    name = f"clip_vision_{layout}.safetensors"
    save_file(sd, os.path.join(workspace, "models", "clip_vision", name))
    (model,) = nodes.CLIPVisionLoader().load_clip(name)
    image = torch.rand(2, 48, 40, 3, generator=torch.Generator().manual_seed(2))
    (out,) = nodes.CLIPVisionEncode().encode(model, image, "center")
    pixels = cv.clip_preprocess(image, 32, crop=True)
    assert pixels.shape == (2, 3, 32, 32)
    with torch.no_grad():
        hf = ref(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state, hf.last_hidden_state, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.penultimate_hidden_states, hf.hidden_states[-2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["image_embeds"], hf.image_embeds, rtol=1e-4, atol=1e-4)
    (stretched,) = nodes.CLIPVisionEncode().encode(model, image, "none")
    assert not torch.allclose(stretched.image_embeds, out.image_embeds)


def _style_sd(width=64, context=32, tokens=4, layers=2, seed=0):
    from comfyui.models.style import StyleAdapter
    torch.manual_seed(seed)
    m = StyleAdapter(width, context, 1, layers, tokens)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape) * 0.2)
    return m


def test_style_model_appends_scaled_tokens(workspace):
    m = _style_sd()
    torch.save(m.state_dict(), os.path.join(workspace, "models", "style_models", "t2iadapter_style_sd14v1.pth"))
    (style,) = nodes.StyleModelLoader().load_style_model("t2iadapter_style_sd14v1.pth")
    vision = cv.Output(last_hidden_state=torch.randn(1, 17, 64))
    cond = [[torch.randn(1, 77, 32), {"pooled_output": torch.randn(1, 32)}]]
    (one,) = nodes.StyleModelApply().apply_stylemodel(cond, style, vision, 1.0, "multiply")
    (half,) = nodes.StyleModelApply().apply_stylemodel(cond, style, vision, 0.5, "multiply")
    assert one[0][0].shape == (1, 81, 32)
    torch.testing.assert_close(one[0][0][:, :77], cond[0][0])
    torch.testing.assert_close(half[0][0][:, 77:] * 2, one[0][0][:, 77:])
    # the adapter itself: learned tokens appended to the image tokens, 2 layers, last 4 tokens projected
    with torch.no_grad():
        x = torch.cat([vision.last_hidden_state, m.style_embedding], dim=1)
        x = m.ln_pre(x).permute(1, 0, 2)
        for blk in m.transformer_layes:
            h = blk.ln_1(x)
            x = x + blk.attn(h, h, h)[0]
            h = blk.ln_2(x)
            x = x + blk.mlp.c_proj(blk.mlp.c_fc(h) * torch.sigmoid(1.702 * blk.mlp.c_fc(h)))
        want = m.ln_post(x.permute(1, 0, 2)[:, -4:]) @ m.proj
    torch.testing.assert_close(one[0][0][:, 77:], want, rtol=1e-4, atol=1e-5)
    (same,) = nodes.StyleModelApply().apply_stylemodel(cond, style, vision, 1.0, "attn_bias")
    torch.testing.assert_close(same[0][0], one[0][0])
    assert "attention_mask" not in same[0][1]  # strength 1 needs no mask


def test_style_attn_bias_mask_layout_and_chaining(workspace):
    torch.save(_style_sd().state_dict(), os.path.join(workspace, "models", "style_models", "style.pth"))
    (style,) = nodes.StyleModelLoader().load_style_model("style.pth")
    vision = cv.Output(last_hidden_state=torch.randn(1, 17, 64))
    cond = [[torch.randn(1, 77, 32), {}]]
    (half,) = nodes.StyleModelApply().apply_stylemodel(cond, style, vision, 0.5, "attn_bias")
    txt, keys = half[0]
    assert txt.shape == (1, 81, 32) and keys["attention_mask_img_shape"] == (1, 1)
    mask = keys["attention_mask"]  # [text 77, style 4, image 1] squared
    assert mask.shape == (1, 82, 82)
    log_half = torch.log(torch.tensor(0.5))
    torch.testing.assert_close(mask[0, :77, 77:81], log_half.expand(77, 4))
    torch.testing.assert_close(mask[0, 81, 77:81], log_half.expand(4))
    assert mask[0, 77:81].abs().sum() == 0 and mask[0, :, :77].abs().sum() == 0 and mask[0, :, 81].abs().sum() == 0
    # a second style goes after the first; the first one's bias moves with its columns
    (both,) = nodes.StyleModelApply().apply_stylemodel(half, style, vision, 2.0, "attn_bias")
    mask2 = both[0][1]["attention_mask"]
    assert both[0][0].shape == (1, 85, 32) and mask2.shape == (1, 86, 86)
    log_two = torch.log(torch.tensor(2.0))
    for row in (0, 76, 85):
        torch.testing.assert_close(mask2[0, row, 77:81], log_half.expand(4))
        torch.testing.assert_close(mask2[0, row, 81:85], log_two.expand(4))
    # even at strength 1 a later style keeps an earlier mask aligned with the tokens
    (third,) = nodes.StyleModelApply().apply_stylemodel(both, style, vision, 1.0, "attn_bias")
    assert third[0][1]["attention_mask"].shape == (1, 90, 90)
    from comfyui.models.base import cross_attn_bias_from_mask
    bias = cross_attn_bias_from_mask(third[0][1]["attention_mask"], 89, (1, 1))
    want = torch.zeros(1, 89)
    want[0, 77:81], want[0, 81:85] = log_half, log_two
    torch.testing.assert_close(bias, want)
    with pytest.raises(ValueError, match="does not match"):
        cross_attn_bias_from_mask(mask, 90, (1, 1))


def test_cross_attn_bias_weights_context_tokens_in_every_unet_attention(workspace):
    """A token with bias log(2) weighs exactly like the same token present twice."""
    from models import fixtures as fx
    from comfyui.models import sd as sdm
    ck = fx.make_sd1_checkpoint(os.path.join(workspace, "models", "checkpoints", "sd1.safetensors"))
    model, _, _ = sdm.load_checkpoint_guess_config(ck)
    bm = model.model
    g = torch.Generator().manual_seed(3)
    ctx = torch.randn(1, 6, 32, generator=g)
    x = torch.randn(1, 4, 8, 8, generator=g)
    sigma = torch.tensor([3.0])
    with torch.no_grad():
        twice = bm.apply_model(x, sigma, c_crossattn=torch.cat([ctx, ctx[:, -1:]], dim=1))
        bias = torch.zeros(1, 6)
        bias[0, -1] = math.log(2.0)
        biased = bm.apply_model(x, sigma, c_crossattn=ctx, cross_attn_bias=bias)
        plain = bm.apply_model(x, sigma, c_crossattn=ctx)
    torch.testing.assert_close(biased, twice, rtol=1e-4, atol=1e-5)
    assert (biased - plain).abs().max() > 1e-4
    runtime.current().model_files.clear()


def test_style_attn_bias_samples_end_to_end(workspace):
    from models import fixtures as fx
    from comfyui.models import sd as sdm
    from comfyui.sampling.samplers import common_ksampler
    torch.save(_style_sd(context=32).state_dict(), os.path.join(workspace, "models", "style_models", "style.pth"))
    (style,) = nodes.StyleModelLoader().load_style_model("style.pth")
    ck = fx.make_sd1_checkpoint(os.path.join(workspace, "models", "checkpoints", "sd1.safetensors"))
    model, clip, _ = sdm.load_checkpoint_guess_config(ck)
    c, p = clip.encode_from_tokens(clip.tokenize("a tree"), return_pooled=True)
    pos = [[c, {"pooled_output": p}]]
    neg = [[c * 0, {"pooled_output": p}]]
    vision = cv.Output(last_hidden_state=torch.randn(1, 17, 64, generator=torch.Generator().manual_seed(4)))
    lat = {"samples": torch.zeros(1, 4, 8, 8)}

    def sample(strength):
        (styled,) = nodes.StyleModelApply().apply_stylemodel(pos, style, vision, strength, "attn_bias")
        return common_ksampler(model, 1, 2, 5.0, "euler", "normal", styled, neg, lat)[0]["samples"]

    one, half, tiny = sample(1.0), sample(0.5), sample(1e-6)
    (multiplied,) = nodes.StyleModelApply().apply_stylemodel(pos, style, vision, 1.0, "multiply")
    torch.testing.assert_close(one, common_ksampler(model, 1, 2, 5.0, "euler", "normal", multiplied, neg, lat)[0]["samples"])
    assert (half - one).abs().mean() > 1e-4
    # strength -> 0 removes the style tokens from attention: the same as no style at all
    plain = common_ksampler(model, 1, 2, 5.0, "euler", "normal", pos, neg, lat)[0]["samples"]
    torch.testing.assert_close(tiny, plain, rtol=1e-3, atol=1e-4)
    runtime.current().model_files.clear()


def _mlp_sd(dim, g):
    return {"linear.0.weight": torch.randn(dim * 2, dim, generator=g) * 0.2, "linear.0.bias": torch.randn(dim * 2, generator=g) * 0.1,
            "linear.1.weight": torch.randn(dim, dim * 2, generator=g) * 0.2, "linear.1.bias": torch.randn(dim, generator=g) * 0.1}


def test_hypernetwork_patches_attention(workspace):
    from models import fixtures as fx
    from comfyui.models import sd as sdm
    from comfyui.sampling.samplers import common_ksampler
    g = torch.Generator().manual_seed(0)
    data = {d: [_mlp_sd(d, g), _mlp_sd(d, g)] for d in (32, 64)}
    data.update(activation_func="relu", is_layer_norm=False, use_dropout=False, activate_output=False,
                last_layer_dropout=False, name="tiny", step=100)
    torch.save(data, os.path.join(workspace, "models", "hypernetworks", "tiny_hn.pt"))
    ck = fx.make_sd1_checkpoint(os.path.join(workspace, "models", "checkpoints", "sd1.safetensors"))
    model, clip, _ = sdm.load_checkpoint_guess_config(ck)
    (patched,) = nodes.HypernetworkLoader().load_hypernetwork(model, "tiny_hn.pt", 0.7)
    patch = patched.model_options["transformer_options"]["patches"]["attn1_patch"][0]
    assert patched.model_options["transformer_options"]["patches"]["attn2_patch"] == [patch]
    assert "patches" not in model.model_options["transformer_options"]
    k = torch.randn(2, 5, 32)
    sd_k = data[32][0]
    mlp = torch.relu(k @ sd_k["linear.0.weight"].T + sd_k["linear.0.bias"]) @ sd_k["linear.1.weight"].T + sd_k["linear.1.bias"]
    q2, k2, v2 = patch(k, k, k, {})
    torch.testing.assert_close(k2, k + 0.7 * mlp, rtol=1e-5, atol=1e-5)
    assert q2 is k
    tokens = clip.tokenize("a tree")
    c, p = clip.encode_from_tokens(tokens, return_pooled=True)
    pos = [[c, {"pooled_output": p}]]
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    base = common_ksampler(model, 1, 2, 5.0, "euler", "normal", pos, pos, lat)[0]["samples"]
    hyp = common_ksampler(patched, 1, 2, 5.0, "euler", "normal", pos, pos, lat)[0]["samples"]
    (zero,) = nodes.HypernetworkLoader().load_hypernetwork(model, "tiny_hn.pt", 0.0)
    none = common_ksampler(zero, 1, 2, 5.0, "euler", "normal", pos, pos, lat)[0]["samples"]
    assert (hyp - base).abs().mean() > 1e-4
    torch.testing.assert_close(none, base)
    runtime.current().model_files.clear()


def test_unclip_checkpoint_conditioning_and_noise_augmentation(workspace):
    from diffusers import DDPMScheduler
    from diffusers.models.embeddings import get_timestep_embedding
    from models import fixtures as fx
    from comfyui.models import sd as sdm
    from comfyui.models.convert import hf_to_open_clip
    from comfyui.sampling.samplers import common_ksampler
    from comfyui.nodes.builtin.text import CLIPTextEncode
    vision = _hf_vision(seed=3)
    vsd = {k: v.detach().clone() for k, v in vision.state_dict().items()}
    sd = fx._prefixed(fx.unet_sd(dict(fx.SD2_UNET, adm_in_channels=128), 0), "model.diffusion_model.")
    sd.update(fx._prefixed(fx.vae_sd(fx.TINY_VAE, 1), "first_stage_model."))
    sd.update(hf_to_open_clip(fx.hf_text_sd(fx.hf_text_model(64, 2, 64, "gelu", 2)), "", "cond_stage_model.model."))
    sd.update(fx._prefixed(_to_open_clip(vsd), "embedder.model."))
    fx._save(sd, os.path.join(workspace, "models", "checkpoints", "sd21-unclip-h.safetensors"))
    model, clip, vae, cvision = nodes.unCLIPCheckpointLoader().load_checkpoint("sd21-unclip-h.safetensors")
    assert model.model.model_config.name.startswith("sd21_unclip") and clip.family == "sd2" and vae is not None
    image = torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(5))
    (out,) = nodes.CLIPVisionEncode().encode(cvision, image, "center")
    with torch.no_grad():
        want = vision(pixel_values=cv.clip_preprocess(image, 32)).image_embeds
    torch.testing.assert_close(out.image_embeds, want, rtol=1e-4, atol=1e-4)
    pos = CLIPTextEncode().encode(clip, "a photo")[0]
    (uc,) = nodes.unCLIPConditioning().apply_adm(pos, out, 0.8, 0.25)
    assert nodes.unCLIPConditioning().apply_adm(pos, out, 0.0, 0.25)[0] is pos
    # y as the sampler builds it (seed 7 -> noise seed -3), against diffusers' unCLIP noising
    y = model.model.encode_adm(unclip_conditioning=uc[0][1]["unclip_conditioning"], device=torch.device("cpu"), seed=7)
    level = round(999 * 0.25)
    noise = torch.randn(out.image_embeds.shape, generator=torch.Generator().manual_seed(-3))
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    noised = sched.add_noise(out.image_embeds, noise, torch.tensor([level]))
    temb = get_timestep_embedding(torch.tensor([level]), 64, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(y, torch.cat([noised, temb], 1) * 0.8, rtol=1e-4, atol=1e-4)
    neg = CLIPTextEncode().encode(clip, "")[0]
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    a = common_ksampler(model, 7, 2, 4.0, "euler", "normal", uc, neg, lat)[0]["samples"]
    b = common_ksampler(model, 7, 2, 4.0, "euler", "normal", pos, neg, lat)[0]["samples"]
    assert torch.isfinite(a).all() and (a - b).abs().mean() > 1e-4
    runtime.current().model_files.clear()
