"""Tiny random-weight SD3 / SD3.5 transformers built with the independent implementation
(diffusers' ``SD3Transformer2DModel``); ``native_sd`` gives them in the real file layout."""
from __future__ import annotations

import torch

# depth 2 -> hidden 128 = 2 heads x 64; text width 4096 like the real CLIP/T5 context would
# make the file large, so the context in these fixtures is `context` wide
TINY_SD3 = dict(depth=2, context=64, pooled=48, pos=16)


def diffusers_sd3(seed: int = 0, depth: int = 2, context: int = 64, pooled: int = 48, pos: int = 16,
                  qk_norm: bool = False, dual_layers: tuple[int, ...] = ()):
    """A random diffusers SD3Transformer2DModel (every weight drawn, norms around 1).
    ``qk_norm`` + ``dual_layers``: SD3.5 large / medium (MMDiT-X)."""
    from diffusers import SD3Transformer2DModel
    torch.manual_seed(seed)
    m = SD3Transformer2DModel(sample_size=pos * 2, patch_size=2, in_channels=16, out_channels=16,
                              num_layers=depth, attention_head_dim=64, num_attention_heads=depth,
                              joint_attention_dim=context, caption_projection_dim=64 * depth,
                              pooled_projection_dim=pooled, pos_embed_max_size=pos,
                              dual_attention_layers=dual_layers,
                              qk_norm="rms_norm" if qk_norm else None).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
        m.pos_embed.pos_embed.add_(0.1 * torch.randn(m.pos_embed.pos_embed.shape, generator=g))
    return m


def native_sd(dm) -> dict[str, torch.Tensor]:
    """The diffusers model's weights in the native layout (``joint_blocks.N...``), converted
    with the family's key map."""
    from comfyui.models.sd3.convert import diffusers_to_native
    return {k: v.detach().clone() for k, v in diffusers_to_native(dm.state_dict()).items()}


# ----------------------------------------------------------------------- whole-model files
# the all-in-one SD3.5 checkpoint layout (upstream's SD3 model config: text_encoders.*;
# the VAE under first_stage_model.*): CLIP-L 32 wide, CLIP-G 64 wide (projected 64), T5 128
# wide -- so the MMDiT's context is 128 wide (CLIP-L ++ CLIP-G padded to the T5 width) and its
# pooled input 32 + 64
CKPT_WIDTHS = dict(clip_l=32, clip_g=64, t5=128)
VAE16 = dict(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, in_channels=3, out_ch=3, z_channels=16, embed_dim=16,
             quant_conv=False)


def text_encoder_parts(clip_l: int, clip_g: int, t5: int, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """{recipe: HF-layout weights} of tiny CLIP-L (quick GELU, unprojected), CLIP-G (GELU,
    projected) and T5 (v1.1) encoders made by transformers."""
    from . import fixtures, flux_fixtures
    return {
        "clip_l": fixtures.hf_text_sd(fixtures.hf_text_model(clip_l, 2, None, "quick_gelu", seed + 1)),
        "clip_g": fixtures.hf_text_sd(fixtures.hf_text_model(clip_g, 2, clip_g, "gelu", seed + 2, inter=64)),
        "t5xxl": flux_fixtures.t5_sd(flux_fixtures.hf_t5(seed + 3, d_model=t5, layers=1, d_ff=64)),
    }


def checkpoint_sd(seed: int = 0, medium: bool = True) -> dict[str, torch.Tensor]:
    """A tiny SD3.5-style single-file checkpoint: ``model.diffusion_model.*`` (MMDiT-X with
    q/k norms when ``medium``, else SD3.5-large-like), ``text_encoders.{clip_l,clip_g,t5xxl}.
    transformer.*``, ``first_stage_model.*`` (16-channel VAE, no quant convs)."""
    from . import fixtures
    w = CKPT_WIDTHS
    dm = diffusers_sd3(seed, context=w["t5"], pooled=w["clip_l"] + w["clip_g"], qk_norm=True,
                       dual_layers=(0,) if medium else ())
    out = {"model.diffusion_model." + k: v for k, v in native_sd(dm).items()}
    for name, part in text_encoder_parts(w["clip_l"], w["clip_g"], w["t5"], seed).items():
        out.update({f"text_encoders.{name}.transformer.{k}": v for k, v in part.items()})
    out.update({"first_stage_model." + k: v for k, v in fixtures.vae_sd(VAE16, seed + 4).items()})
    return out


def save(sd: dict[str, torch.Tensor], path) -> str:
    import os
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def write_checkpoint(path, seed: int = 0, medium: bool = True) -> str:
    return save(checkpoint_sd(seed, medium), path)


def write_separate_files(models_dir, seed: int = 0) -> dict[str, str]:
    """The same kind of model as separate files, as TripleCLIPLoader + UNETLoader + VAELoader
    read them: CLIP-L, CLIP-G (1280 wide: the width that marks a standalone file as CLIP-G;
    one layer, fp16), T5 (1344 wide, so the 32 + 1280 CLIP features fit), the MMDiT and the VAE.
    Returns {role: file name}."""
    import os
    from . import fixtures
    g_width, t5_width = 1280, 1344
    parts = text_encoder_parts(32, 64, 64, seed)  # CLIP-L as in the checkpoint
    g = fixtures.hf_text_sd(fixtures.hf_text_model(g_width, 1, g_width, "gelu", seed + 5, inter=64))
    from . import flux_fixtures
    t5 = flux_fixtures.t5_sd(flux_fixtures.hf_t5(seed + 6, d_model=t5_width, layers=1, d_ff=64))
    te = os.path.join(models_dir, "text_encoders")
    save(parts["clip_l"], os.path.join(te, "clip_l.safetensors"))
    save({k: v.half() for k, v in g.items()}, os.path.join(te, "clip_g.safetensors"))
    save({k: v.half() for k, v in t5.items()}, os.path.join(te, "t5xxl_fp16.safetensors"))
    dm = diffusers_sd3(seed, context=t5_width, pooled=32 + g_width, qk_norm=True, dual_layers=(0,))
    save(native_sd(dm), os.path.join(models_dir, "diffusion_models", "sd3.5_medium.safetensors"))
    save(fixtures.vae_sd(VAE16, seed + 4), os.path.join(models_dir, "vae", "sd3_vae.safetensors"))
    return {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5": "t5xxl_fp16.safetensors",
            "unet": "sd3.5_medium.safetensors", "vae": "sd3_vae.safetensors"}
