"""Tiny random-weight Z-Image / Qwen3 and Lumina Image 2.0 / Gemma 2 models in the real file
layouts, built with the independent implementations (diffusers' ``ZImageTransformer2DModel`` and
``Lumina2Transformer2DModel``, transformers' ``Qwen3Model`` and ``Gemma2Model``), and the key maps
from diffusers' layouts to ComfyUI's native ones.

``write_default_workflow_models(models_dir)`` writes the three files the frontend's default
workflow (Z-Image Turbo) asks for, under their real names:
``diffusion_models/z_image_turbo_bf16.safetensors``, ``text_encoders/qwen_3_4b.safetensors``
and ``vae/ae.safetensors``. Run as a script: ``python tests/models/lumina2_fixtures.py DIR``
(``--lumina2``: the Lumina Image 2.0 / NetaYume files of :func:`write_lumina2_files` instead).
"""
from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights ~ N(0, 1/fan_in), norm weights ~ 1 + N(0, 0.1), biases and pad tokens small:
    activations stay O(1) through a few blocks, so a 1e-5 comparison means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1 and "pad_token" not in name and "embed_tokens" not in name:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)  # 1/sqrt(fan-in)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g) if p.ndim == 1 else torch.randn(p.shape, generator=g))
    return model.eval()


# ------------------------------------------------------------------------------ Z-Image
def diffusers_z_image(seed: int = 0, dim: int = 64, heads: int = 2, layers: int = 2, refiners: int = 1,
                      cap_feat_dim: int = 32):
    from diffusers import ZImageTransformer2DModel
    head_dim = dim // heads
    axes = [head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8]
    model = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=dim,
                                     n_layers=layers, n_refiner_layers=refiners, n_heads=heads, n_kv_heads=heads,
                                     cap_feat_dim=cap_feat_dim, rope_theta=256.0, t_scale=1000.0, axes_dims=axes,
                                     axes_lens=[1536, 512, 512])
    return randomize(model, seed)


def z_image_diffusers_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers' Z-Image keys -> ComfyUI's (the layout of ``z_image_turbo_bf16.safetensors``):
    separate q/k/v projections -> one ``qkv``, ``to_out.0`` -> ``out``, ``norm_q/k`` ->
    ``q_norm/k_norm``, the patch-size-keyed embedder and final layer -> plain names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            block = key.split(".attention.to_q.")[0]
            out[block + ".attention.qkv.weight"] = torch.cat(
                [sd[f"{block}.attention.to_{n}.weight"] for n in ("q", "k", "v")])
            continue
        key = key.replace("all_x_embedder.2-1.", "x_embedder.").replace("all_final_layer.2-1.", "final_layer.")
        key = key.replace(".attention.to_out.0.", ".attention.out.")
        key = key.replace(".attention.norm_q.", ".attention.q_norm.").replace(".attention.norm_k.", ".attention.k_norm.")
        out[key] = value.detach().clone()
    return out


def diffusers_z_image_controlnet(seed: int = 0, dim: int = 64, heads: int = 2, places: tuple[int, ...] = (0, 1),
                                 refiners: int = 1):
    """A random diffusers ZImageControlNetModel (the Fun ControlNet Union 1.0 layout: 16 control
    channels, plain control noise-refiner blocks) for :func:`diffusers_z_image` models of the
    same width; ``places``: the main layers its hints follow. Its ``state_dict()`` is the
    layout of ``Z-Image-Turbo-Fun-Controlnet-Union.safetensors``."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel
    model = ZImageControlNetModel(control_layers_places=list(places), control_in_dim=16, all_patch_size=(2,),
                                  all_f_patch_size=(1,), dim=dim, n_refiner_layers=refiners, n_heads=heads,
                                  n_kv_heads=heads, norm_eps=1e-5, qk_norm=True)
    return randomize(model, seed)


# -------------------------------------------------------------------------------- Qwen3
def hf_qwen3(seed: int = 0, hidden: int = 64, layers: int = 3, heads: int = 4, kv_heads: int = 2,
             head_dim: int = 32, intermediate: int = 96, vocab: int = 151936):
    """A tiny transformers Qwen3Model with Qwen3's full vocabulary (the tokenizer's ids)."""
    from transformers import Qwen3Config, Qwen3Model
    config = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=4096)
    torch.manual_seed(seed)
    return randomize(Qwen3Model(config), seed)


def qwen3_file_sd(model) -> dict[str, torch.Tensor]:
    """The layout of ComfyUI's ``qwen_3_4b.safetensors``: transformers' keys under ``model.``."""
    return {"model." + k: v.detach().clone() for k, v in model.state_dict().items()}


# -------------------------------------------------------------------------- Lumina 2.0
def diffusers_lumina2(seed: int = 0, dim: int = 96, heads: int = 2, kv_heads: int = 1, layers: int = 2,
                      refiners: int = 1, cap_feat_dim: int = 32):
    """A tiny diffusers ``Lumina2Transformer2DModel`` (Lumina Image 2.0's architecture: SiLU
    before the block modulation, timestep MLP min(dim, 1024) wide, no pad tokens)."""
    from diffusers import Lumina2Transformer2DModel
    head_dim = dim // heads
    model = Lumina2Transformer2DModel(patch_size=2, in_channels=16, hidden_size=dim, num_layers=layers,
                                      num_refiner_layers=refiners, num_attention_heads=heads,
                                      num_kv_heads=kv_heads, multiple_of=16, cap_feat_dim=cap_feat_dim,
                                      axes_dim_rope=(head_dim // 3,) * 3, axes_lens=(300, 512, 512))
    return randomize(model, seed)


def lumina2_diffusers_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers' Lumina 2 keys -> ComfyUI's (the layout of ``lumina_2_model_bf16.safetensors``
    and of the ``model.diffusion_model.`` part of ``NetaYumev35_pretrained_all_in_one``): the
    inverse of diffusers' ``convert_lumina2_to_diffusers``, q/k/v fused into ``qkv``, with
    upstream's unused ``norm_final.weight`` added back."""
    renames = [("time_caption_embed.caption_embedder", "cap_embedder"),
               ("time_caption_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
               ("time_caption_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
               ("norm_out.linear_1", "final_layer.adaLN_modulation.1"), ("norm_out.linear_2", "final_layer.linear"),
               (".attn.to_out.0.", ".attention.out."), (".attn.norm_q.", ".attention.q_norm."),
               (".attn.norm_k.", ".attention.k_norm."), (".feed_forward.linear_1.", ".feed_forward.w1."),
               (".feed_forward.linear_2.", ".feed_forward.w2."), (".feed_forward.linear_3.", ".feed_forward.w3."),
               (".norm1.linear.", ".adaLN_modulation.1."), (".norm1.norm.", ".attention_norm1."),
               (".norm2.", ".attention_norm2.")]
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        if ".attn.to_q." in key:
            block = key.split(".attn.to_q.")[0]
            out[block + ".attention.qkv.weight"] = torch.cat([sd[f"{block}.attn.to_{n}.weight"] for n in "qkv"])
            continue
        if key.startswith("context_refiner."):  # no modulation there: norm1 is the plain attention norm
            key = key.replace(".norm1.", ".attention_norm1.")
        for a, b in renames:
            key = key.replace(a, b)
        out[key] = value.detach().clone()
    out["norm_final.weight"] = torch.ones(next(v for k, v in out.items() if k == "x_embedder.bias").shape)
    return out


# -------------------------------------------------------------------------------- Gemma 2
def spiece_model(vocab_size: int = 384) -> bytes:
    """A small SentencePiece model trained here with Gemma's tokenizer settings (BPE, byte
    fallback, digits split, no dummy prefix, whitespace kept; ids <pad> 0, <eos> 1, <bos> 2,
    <unk> 3): the serialised proto, as upstream stores it in ``spiece_model``. (Gemma's own
    vocabulary is under the Gemma terms of use and cannot be shipped.)"""
    import io
    import sentencepiece as spm
    text = ("a photo of a cat sitting on a red chair, digital illustration, warm light\n"
            "You are an assistant designed to generate superior images with the superior degree of image-text "
            "alignment based on textual prompts or user prompts. <Prompt Start> an orange grove 1024 steps\n"
            "blurry, worst quality, low quality, jpeg artifacts, watermark, anime girl with a braid\n") * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, normalization_rule_name="identity", pad_id=0, eos_id=1, bos_id=2,
        unk_id=3, bos_piece="<bos>", eos_piece="<eos>", character_coverage=1.0, num_threads=1,
        minloglevel=2)
    return model.getvalue()


def hf_gemma2(seed: int = 0, hidden: int = 32, layers: int = 3, heads: int = 2, kv_heads: int = 1,
              intermediate: int = 64, vocab: int = 384):
    """A tiny transformers Gemma2Model with Gemma 2's head size (256), without attention-logit
    soft-capping (upstream ComfyUI does not apply it) and with a window longer than any prompt."""
    from transformers import Gemma2Config, Gemma2Model
    config = Gemma2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                          num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                          head_dim=256, query_pre_attn_scalar=256, attn_logit_softcapping=None,
                          final_logit_softcapping=None, sliding_window=4096, rope_theta=10000.0,
                          rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=4096,
                          pad_token_id=0, bos_token_id=2, eos_token_id=1, attn_implementation="eager")
    torch.manual_seed(seed)
    model = Gemma2Model(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # Gemma norms scale by (1 + w): w around 0
        for name, p in randomize(model, seed).named_parameters():
            if "norm" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g) / hidden ** 0.5)
    return model


def gemma2_file_sd(model, spiece: bytes | None) -> dict[str, torch.Tensor]:
    """The layout of ComfyUI's ``gemma_2_2b_fp16.safetensors``: transformers' keys under
    ``model.`` and the tokenizer as a uint8 ``spiece_model`` tensor."""
    out = {"model." + k: v.detach().clone() for k, v in model.state_dict().items()}
    if spiece is not None:
        out["spiece_model"] = torch.frombuffer(bytearray(spiece), dtype=torch.uint8)
    return out


def lumina2_checkpoint_sd(seed: int = 0, text_width: int = 32) -> dict[str, torch.Tensor]:
    """An all-in-one Lumina 2 checkpoint as upstream's CheckpointSave writes it (the NetaYume
    file's layout): ``model.diffusion_model.*`` (bf16), ``text_encoders.gemma2_2b.transformer.
    model.*``, ``text_encoders.spiece_model``, ``vae.*`` (the 16-channel VAE, LDM keys)."""
    from comfyui.models.convert import diffusers_vae_to_ldm
    dit = lumina2_diffusers_to_native(diffusers_lumina2(seed, cap_feat_dim=text_width).state_dict())
    gemma = gemma2_file_sd(hf_gemma2(seed + 1, hidden=text_width), spiece_model())
    out = {"model.diffusion_model." + k: v.to(torch.bfloat16) for k, v in dit.items()}
    out.update({"text_encoders.gemma2_2b.transformer." + k: v.to(torch.bfloat16)
                for k, v in gemma.items() if k != "spiece_model"})
    out["text_encoders.spiece_model"] = gemma["spiece_model"]
    out.update({"vae." + k: v for k, v in diffusers_vae_to_ldm(diffusers_vae16_f8(seed + 2).state_dict()).items()})
    return out


# ------------------------------------------------------------------------------- VAE
def diffusers_vae16_f8(seed: int = 0):
    """A tiny random diffusers AutoencoderKL with the layout of Flux's ``ae.safetensors``: 16
    latent channels, no quant convs, four levels (8x downscale), narrow widths."""
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    model = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                          up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 32, 32),
                          layers_per_block=1, latent_channels=16, norm_num_groups=32, use_quant_conv=False,
                          use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
    return randomize(model, seed)


# ------------------------------------------------------------------------ default workflow
def write_default_workflow_models(models_dir: str, seed: int = 0) -> dict[str, str]:
    """The Z-Image Turbo files of the frontend's default workflow, tiny and random (bf16 as
    the real ``z_image_turbo_bf16``). Returns {folder: path}."""
    from comfyui.models.convert import diffusers_vae_to_ldm

    text_width = 16
    files = {
        "diffusion_models": ("z_image_turbo_bf16.safetensors", {
            k: v.to(torch.bfloat16) for k, v in
            z_image_diffusers_to_native(diffusers_z_image(seed, cap_feat_dim=text_width).state_dict()).items()}),
        "text_encoders": ("qwen_3_4b.safetensors", {
            k: v.to(torch.bfloat16) for k, v in
            qwen3_file_sd(hf_qwen3(seed, hidden=text_width, layers=2, heads=2, kv_heads=1, head_dim=8,
                                   intermediate=32)).items()}),
        "vae": ("ae.safetensors", diffusers_vae_to_ldm(diffusers_vae16_f8(seed).state_dict())),
    }
    paths = {}
    for folder, (name, sd) in files.items():
        os.makedirs(os.path.join(models_dir, folder), exist_ok=True)
        paths[folder] = os.path.join(models_dir, folder, name)
        save_file({k: v.contiguous() for k, v in sd.items()}, paths[folder])
    return paths


def write_lumina2_files(models_dir: str, seed: int = 0) -> dict[str, str]:
    """Tiny random Lumina Image 2.0 files under the names of Comfy-Org's repackaged release and
    of NetaYume: the split files ``diffusion_models/lumina_2_model_bf16.safetensors``,
    ``text_encoders/gemma_2_2b_fp16.safetensors`` (with ``spiece_model``) and ``vae/ae.safetensors``,
    and the all-in-one ``checkpoints/lumina_2.safetensors`` and
    ``checkpoints/NetaYumev35_pretrained_all_in_one.safetensors`` (the same networks). Returns
    {file name: path}."""
    ckpt = lumina2_checkpoint_sd(seed)
    split = {
        ("diffusion_models", "lumina_2_model_bf16.safetensors"): {
            k[len("model.diffusion_model."):]: v for k, v in ckpt.items() if k.startswith("model.diffusion_model.")},
        ("text_encoders", "gemma_2_2b_fp16.safetensors"): {
            **{k[len("text_encoders.gemma2_2b.transformer."):]: v.half() for k, v in ckpt.items()
               if k.startswith("text_encoders.gemma2_2b.transformer.")},
            "spiece_model": ckpt["text_encoders.spiece_model"]},
        ("vae", "ae.safetensors"): {k[len("vae."):]: v for k, v in ckpt.items() if k.startswith("vae.")},
        ("checkpoints", "lumina_2.safetensors"): ckpt,
        ("checkpoints", "NetaYumev35_pretrained_all_in_one.safetensors"): ckpt,
    }
    paths = {}
    for (folder, name), sd in split.items():
        os.makedirs(os.path.join(models_dir, folder), exist_ok=True)
        paths[name] = os.path.join(models_dir, folder, name)
        save_file({k: v.contiguous() for k, v in sd.items()}, paths[name])
    return paths


if __name__ == "__main__":  # python tests/models/lumina2_fixtures.py MODELS_DIR [--lumina2]
    target = sys.argv[1] if len(sys.argv) > 1 else "models"
    write = write_lumina2_files if "--lumina2" in sys.argv else write_default_workflow_models
    for path in write(target).values():
        print(path)
