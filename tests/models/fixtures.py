"""Tiny random-weight model files in the ORIGINAL single-file layouts.

Text encoders are made with transformers' ``CLIPTextModel`` (an independent implementation,
HF key layout) and written in the layout each checkpoint family uses (SD1: HF under
``cond_stage_model.transformer.``; SD2 / SDXL-G: OpenCLIP under ``...model.``).
UNet / VAE weights are random tensors for the LDM keys of a tiny config.
"""
from __future__ import annotations

import os
from typing import Any

import torch

TINY_VOCAB = 49408


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hf_text_model(hidden: int, layers: int, proj: int | None, act: str, seed: int, inter: int | None = None):
    """A random transformers CLIPTextModel(WithProjection) of a tiny size (heads = hidden // 64 or 1)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=TINY_VOCAB, hidden_size=hidden, intermediate_size=inter or hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         max_position_embeddings=77, hidden_act=act, projection_dim=proj or hidden,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    cls = CLIPTextModelWithProjection if proj else CLIPTextModel
    m = cls(cfg).eval()
    with torch.no_grad():  # make layer norms non-trivial
        for n, p in m.named_parameters():
            if "layer_norm" in n or "final_layer_norm" in n:
                p.add_(torch.randn(p.shape) * 0.1)
    return m


def hf_text_sd(model) -> dict[str, torch.Tensor]:
    """The checkpoint (transformers 4.x) layout: ``text_model.*`` (+ ``text_projection.weight``);
    transformers 5 drops the ``text_model.`` prefix inside CLIPTextModel, so add it back."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("position_ids"):
            continue
        if not k.startswith(("text_model.", "text_projection")):
            k = "text_model." + k
        out[k] = v.detach().clone()
    return out


def load_into_hf(model, hf_sd: dict[str, torch.Tensor]) -> list[str]:
    """Load a ``text_model.*`` layout state dict into a transformers CLIP text model of either
    major version; returns missing keys."""
    own = set(model.state_dict().keys())
    sd = {}
    for k, v in hf_sd.items():
        if k not in own and k.startswith("text_model.") and k[len("text_model."):] in own:
            k = k[len("text_model."):]
        sd[k] = v
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected[:5]
    return [k for k in missing if "position_ids" not in k]


def unet_sd(cfg: dict[str, Any], seed: int, std: float = 0.05) -> dict[str, torch.Tensor]:
    from comfyui.models.stable_diffusion.unet import UNetModel
    torch.manual_seed(seed)
    m = UNetModel(**cfg)
    out = {}
    g = _gen(seed)
    for k, v in m.state_dict().items():
        if k.endswith(".weight") and ("norm" in k.split(".")[-2] or k.startswith("out.0") or ".in_layers.0" in k
                                       or ".out_layers.0" in k):
            out[k] = 1.0 + torch.randn(v.shape, generator=g) * 0.1
        else:
            out[k] = torch.randn(v.shape, generator=g) * std
    return out


def vae_sd(cfg: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    from comfyui.models.vae import AutoencoderKL
    m = AutoencoderKL(**cfg)
    g = _gen(seed)
    out = {}
    for k, v in m.state_dict().items():
        if "norm" in k and k.endswith(".weight"):
            out[k] = 1.0 + torch.randn(v.shape, generator=g) * 0.1
        elif v.ndim == 4:
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            out[k] = torch.randn(v.shape, generator=g) / fan_in ** 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.02
    return out


TINY_VAE = dict(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, in_channels=3, out_ch=3, z_channels=4, embed_dim=4)

SD1_UNET = dict(in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
                transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1,
                context_dim=32, num_heads=8, num_head_channels=-1, use_linear_in_transformer=False)
SD2_UNET = dict(in_channels=4, out_channels=4, model_channels=64, num_res_blocks=[1, 1], channel_mult=[1, 2],
                transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1,
                context_dim=64, num_heads=-1, num_head_channels=64, use_linear_in_transformer=True)
SDXL_UNET = dict(in_channels=4, out_channels=4, model_channels=64, num_res_blocks=[1, 1], channel_mult=[1, 2],
                 transformer_depth=[0, 2], transformer_depth_output=[0, 0, 2, 2], transformer_depth_middle=2,
                 context_dim=32 + 64, num_heads=-1, num_head_channels=64, use_linear_in_transformer=True,
                 adm_in_channels=64 + 6 * 256)
REFINER_UNET = dict(SDXL_UNET, context_dim=64, adm_in_channels=64 + 5 * 256, transformer_depth=[1, 1],
                    transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1)


def _save(sd: dict[str, torch.Tensor], path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sd = {k: v.contiguous() for k, v in sd.items()}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, path)
    else:
        torch.save({"state_dict": sd, "global_step": 1}, path)
    return path


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def _memo(fn):
    """State dicts are deterministic in their arguments: build each once per process and
    hand out shallow copies (tensors are never modified in place by the tests)."""
    cache: dict = {}

    def wrapper(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = fn(*args, **kwargs)
        return dict(cache[key])

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_memo
def sd1_state_dict(seed: int = 0, inpaint: bool = False, vae: bool = True, clip: bool = True) -> dict[str, torch.Tensor]:
    cfg = dict(SD1_UNET, in_channels=9 if inpaint else 4)
    sd = _prefixed(unet_sd(cfg, seed), "model.diffusion_model.")
    if vae:
        sd.update(_prefixed(vae_sd(TINY_VAE, seed + 1), "first_stage_model."))
    if clip:
        te = hf_text_model(32, 2, None, "quick_gelu", seed + 2)
        sd.update(_prefixed(hf_text_sd(te), "cond_stage_model.transformer."))
    return sd


@_memo
def sd2_state_dict(seed: int = 0, v_pred: bool = True) -> dict[str, torch.Tensor]:
    from comfyui.models.convert import hf_to_open_clip
    sd = _prefixed(unet_sd(SD2_UNET, seed), "model.diffusion_model.")
    key = "model.diffusion_model.output_blocks.3.1.transformer_blocks.0.norm1.bias"
    g = _gen(seed + 7)
    sd[key] = torch.randn(sd[key].shape, generator=g) * (0.3 if v_pred else 0.01)
    sd.update(_prefixed(vae_sd(TINY_VAE, seed + 1), "first_stage_model."))
    te = hf_text_model(64, 3, 64, "gelu", seed + 2)
    sd.update(hf_to_open_clip(hf_text_sd(te), "", "cond_stage_model.model."))
    return sd


@_memo
def sdxl_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from comfyui.models.convert import hf_to_open_clip
    sd = _prefixed(unet_sd(SDXL_UNET, seed), "model.diffusion_model.")
    sd.update(_prefixed(vae_sd(TINY_VAE, seed + 1), "first_stage_model."))
    te_l = hf_text_model(32, 3, None, "quick_gelu", seed + 2)
    te_g = hf_text_model(64, 3, 64, "gelu", seed + 3)
    sd.update(_prefixed(hf_text_sd(te_l), "conditioner.embedders.0.transformer."))
    sd.update(hf_to_open_clip(hf_text_sd(te_g), "", "conditioner.embedders.1.model."))
    return sd


@_memo
def refiner_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from comfyui.models.convert import hf_to_open_clip
    sd = _prefixed(unet_sd(REFINER_UNET, seed), "model.diffusion_model.")
    sd.update(_prefixed(vae_sd(TINY_VAE, seed + 1), "first_stage_model."))
    te_g = hf_text_model(64, 3, 64, "gelu", seed + 3)
    sd.update(hf_to_open_clip(hf_text_sd(te_g), "", "conditioner.embedders.0.model."))
    return sd


def make_sd1_checkpoint(path: str, **kw: Any) -> str:
    return _save(sd1_state_dict(**kw), path)


def make_sd2_checkpoint(path: str, **kw: Any) -> str:
    return _save(sd2_state_dict(**kw), path)


def make_sdxl_checkpoint(path: str, **kw: Any) -> str:
    return _save(sdxl_state_dict(**kw), path)


def make_refiner_checkpoint(path: str, **kw: Any) -> str:
    return _save(refiner_state_dict(**kw), path)


# ----------------------------------------------------------------------------------- LoRA
# diffusers module names of the tiny SD1 UNet and CLIP that the test LoRAs touch
SD1_LORA_UNET_TARGETS = {
    # diffusers name -> (out, in) of its weight
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": (32, 32),
    "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": (64, 32),
    "mid_block.attentions.0.transformer_blocks.0.ff.net.2": (64, 256),
    "up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0": (64, 64),
    "up_blocks.1.attentions.1.proj_out": (32, 32, 1, 1),
    "down_blocks.0.resnets.0.conv1": (32, 32, 3, 3),
}
SD1_LORA_TE_TARGETS = {
    "text_model.encoder.layers.0.self_attn.q_proj": (32, 32),
    "text_model.encoder.layers.1.mlp.fc1": (64, 32),
}


def lora_tensors(shape: tuple[int, ...], rank: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if len(shape) == 4:
        down = torch.randn((rank, shape[1], shape[2], shape[3]), generator=g) * 0.1
        up = torch.randn((shape[0], rank, 1, 1), generator=g) * 0.1
    else:
        down = torch.randn((rank, shape[1]), generator=g) * 0.1
        up = torch.randn((shape[0], rank), generator=g) * 0.1
    return up, down


def make_lora(path: str, form: str = "kohya", rank: int = 4, alpha: float = 2.0, seed: int = 5) -> dict[str, Any]:
    """A LoRA for the tiny SD1 model. ``form``: "kohya" (lora_unet_*/lora_te_*, with alpha)
    or "peft" (unet.*.lora_A/B, text_encoder.*). Returns {"unet": {name: delta}, "te": {...}}
    with the full-weight deltas (scale included) keyed by diffusers/HF module name."""
    g = _gen(seed)
    sd: dict[str, torch.Tensor] = {}
    deltas: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "te": {}}
    for part, targets in (("unet", SD1_LORA_UNET_TARGETS), ("te", SD1_LORA_TE_TARGETS)):
        for name, shape in targets.items():
            up, down = lora_tensors(shape, rank, g)
            if form == "kohya":
                k = f"lora_{part}_" + name.replace(".", "_")
                sd[k + ".lora_up.weight"] = up
                sd[k + ".lora_down.weight"] = down
                sd[k + ".alpha"] = torch.tensor(alpha)
                scale = alpha / rank
            else:
                k = ("unet." if part == "unet" else "text_encoder.") + name
                sd[k + ".lora_B.weight"] = up
                sd[k + ".lora_A.weight"] = down
                scale = 1.0
            deltas[part][name] = scale * (up.flatten(1) @ down.flatten(1)).reshape(shape)
    _save(sd, path)
    return deltas


def make_embedding(path: str, vectors: torch.Tensor) -> str:
    """A textual inversion: .pt in A1111's ``string_to_param`` form, .safetensors as
    ``emb_params``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({"emb_params": vectors.contiguous()}, path)
    else:
        torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": "x", "step": 1}, path)
    return path
