"""CLIP vision encoders (what a CLIP_VISION socket carries) and their CLIP_VISION_OUTPUT.

Weights in the transformers layout (``vision_model.*`` + ``visual_projection.weight``, as in
``clip_vision_g.safetensors`` / ``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`` /
``clip-vit-large-patch14``), also under a prefix (``embedder.model.`` style prefixes are
stripped by the caller), or the OpenCLIP ``visual.*`` layout.

SigLIP vision towers (``sigclip_vision_patch14_384.safetensors``, Flux Redux's encoder: the
transformers ``SiglipVisionModel`` layout) are told apart by their keys: no class embedding, a
patch embedding with a bias, no pre-layernorm; the ``vision_model.head.*`` attention-pooling
head in those files is not used (as upstream). Their image size is sqrt(positions) x patch,
inputs are normalised with mean = std = 0.5, the MLP is tanh-GELU and the post-layernorm
applies to every token.

``encode_image(image [B,H,W,C], crop=True)`` preprocesses like ComfyUI (shortest side to
the model's size with antialiased bicubic, centre crop, quantise to 8 bits, the model's
mean/std; ``crop=False`` squashes the whole image to the square size) and returns an
:class:`Output` with ``last_hidden_state`` (encoder output; SigLIP: post-layernormed),
``image_embeds`` (CLIP: the projected post-layernormed class token; SigLIP: the whole
post-layernormed sequence, as upstream) and ``penultimate_hidden_states`` (SigLIP also
``all_hidden_states`` [B, layers, tokens, width]).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import memory, ops
from .text_encoders.clip import CLIPLayer, TextModelConfig
from .loading import ModelFileError, load_torch_file
from .patcher import ModelPatcher

log = logging.getLogger(__name__)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]


class Output(dict):
    """dict with attribute access (``out.image_embeds``), as ComfyUI's clip_vision.Output."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def clip_preprocess(image: torch.Tensor, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD, crop: bool = True) -> torch.Tensor:
    image = image[..., :3]
    mean_t = torch.tensor(mean, device=image.device, dtype=image.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, device=image.device, dtype=image.dtype).view(3, 1, 1)
    x = image.movedim(-1, 1)
    if not (x.shape[2] == size and x.shape[3] == size):
        if crop:
            scale = size / min(x.shape[2], x.shape[3])
            target = (round(scale * x.shape[2]), round(scale * x.shape[3]))
        else:
            target = (size, size)
        x = torch.nn.functional.interpolate(x, size=target, mode="bicubic", antialias=True)
        h = (x.shape[2] - size) // 2
        w = (x.shape[3] - size) // 2
        x = x[:, :, h:h + size, w:w + size]
    x = torch.clip(255.0 * x, 0, 255).round() / 255.0
    return (x - mean_t) / std_t


class _Embeddings(nn.Module):
    """Patch embedding + learned positions; CLIP prepends a class token, SigLIP has none (and
    a bias on its patch convolution)."""

    def __init__(self, dim: int, patch: int, image_size: int, channels: int = 3, siglip: bool = False):
        super().__init__()
        self.class_embedding = None if siglip else nn.Parameter(torch.empty(dim))
        self.patch_embedding = ops.Conv2d(channels, dim, patch, stride=patch, bias=siglip)
        self.position_embedding = ops.Embedding((image_size // patch) ** 2 + (0 if siglip else 1), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_embedding(x).flatten(2).transpose(1, 2)
        if self.class_embedding is not None:
            cls = self.class_embedding.to(p.dtype).expand(p.shape[0], 1, -1)
            p = torch.cat([cls, p], dim=1)
        return p + self.position_embedding.weight.to(p.dtype)[None]


class _Encoder(nn.Module):
    def __init__(self, cfg: TextModelConfig):
        super().__init__()
        self.layers = nn.ModuleList([CLIPLayer(cfg) for _ in range(cfg.num_layers)])


class _VisionModel(nn.Module):
    def __init__(self, cfg: TextModelConfig, patch: int, image_size: int, siglip: bool = False):
        super().__init__()
        self.embeddings = _Embeddings(cfg.hidden_size, patch, image_size, siglip=siglip)
        self.pre_layrnorm = None if siglip else ops.LayerNorm(cfg.hidden_size, eps=cfg.eps)
        self.encoder = _Encoder(cfg)
        self.post_layernorm = ops.LayerNorm(cfg.hidden_size, eps=cfg.eps)


class CLIPVisionModelProjection(nn.Module):
    def __init__(self, cfg: TextModelConfig, patch: int, image_size: int, projection_dim: int | None,
                 siglip: bool = False):
        super().__init__()
        self.siglip = siglip
        self.vision_model = _VisionModel(cfg, patch, image_size, siglip=siglip)
        if projection_dim:
            self.visual_projection = ops.Linear(cfg.hidden_size, projection_dim, bias=False)
        else:
            self.visual_projection = None

    def forward(self, pixel_values: torch.Tensor, all_hidden_states: bool = False):
        """(last hidden state, penultimate layer's output, image embeds[, every layer's output
        stacked on dim 1 when ``all_hidden_states``])."""
        x, penultimate, pooled, every = self.encode_tower(pixel_values, all_hidden_states)
        embeds = self.visual_projection(pooled) if self.visual_projection is not None else pooled
        if all_hidden_states:
            return x, penultimate, embeds, every
        return x, penultimate, embeds

    def encode_tower(self, pixel_values: torch.Tensor, all_hidden_states: bool = False):
        """(last hidden state, penultimate layer's output, pooled output before the projection,
        every layer's output stacked on dim 1 or None)."""
        vm = self.vision_model
        x = vm.embeddings(pixel_values)
        if vm.pre_layrnorm is not None:
            x = vm.pre_layrnorm(x)
        penultimate = x
        n = len(vm.encoder.layers)
        every = []
        for i, layer in enumerate(vm.encoder.layers):
            x = layer(x, None)
            if i == n - 2:
                penultimate = x
            if all_hidden_states:
                every.append(x)
        if self.siglip:  # every token post-layernormed; that sequence is also the "pooled" output
            x = vm.post_layernorm(x)
            pooled = x
        else:
            pooled = vm.post_layernorm(x[:, 0, :])
        return x, penultimate, pooled, torch.stack(every, dim=1) if all_hidden_states else None


def open_clip_visual_to_hf(sd: dict[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """OpenCLIP ``visual.*`` ViT weights -> transformers ``vision_model.*`` names."""
    out: dict[str, torch.Tensor] = {}
    p = prefix
    out["vision_model.embeddings.class_embedding"] = sd[p + "class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = sd[p + "conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = sd[p + "positional_embedding"]
    out["vision_model.pre_layrnorm.weight"] = sd[p + "ln_pre.weight"]
    out["vision_model.pre_layrnorm.bias"] = sd[p + "ln_pre.bias"]
    out["vision_model.post_layernorm.weight"] = sd[p + "ln_post.weight"]
    out["vision_model.post_layernorm.bias"] = sd[p + "ln_post.bias"]
    if p + "proj" in sd:
        out["visual_projection.weight"] = sd[p + "proj"].t().contiguous()
    i = 0
    while f"{p}transformer.resblocks.{i}.ln_1.weight" in sd:
        src = f"{p}transformer.resblocks.{i}."
        dst = f"vision_model.encoder.layers.{i}."
        w, b = sd[src + "attn.in_proj_weight"], sd[src + "attn.in_proj_bias"]
        for j, n in enumerate(("q_proj", "k_proj", "v_proj")):
            d = w.shape[0] // 3
            out[dst + f"self_attn.{n}.weight"] = w[j * d:(j + 1) * d]
            out[dst + f"self_attn.{n}.bias"] = b[j * d:(j + 1) * d]
        for a, c in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[dst + c + ".weight"] = sd[src + a + ".weight"]
            out[dst + c + ".bias"] = sd[src + a + ".bias"]
        i += 1
    return out


@dataclass(frozen=True)
class VisionConfig:
    """What the weights say about a CLIP / SigLIP vision tower."""
    encoder: TextModelConfig
    patch: int
    image_size: int
    siglip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


def vision_config(sd: dict[str, torch.Tensor], hidden_act: str | None = None) -> VisionConfig:
    """The config of transformers-layout vision weights, from key presence and tensor shapes."""
    if "vision_model.embeddings.patch_embedding.weight" not in sd:
        raise ModelFileError("not a CLIP vision model (no vision_model.embeddings.patch_embedding.weight)")
    pe = sd["vision_model.embeddings.patch_embedding.weight"]
    dim, patch = pe.shape[0], pe.shape[-1]
    siglip = "vision_model.embeddings.class_embedding" not in sd
    n_pos = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = int(round((n_pos - (0 if siglip else 1)) ** 0.5))
    image_size = grid * patch
    if siglip and image_size % 16:
        # the convolution drops a remainder: SigLIP so400m/14 at 384 px has a 27x27 grid
        # (378 px); its input size is the multiple of 16 with that grid, as released
        image_size = next((s for s in range(image_size, image_size + patch) if s % 16 == 0), image_size)
    layers = 0
    while f"vision_model.encoder.layers.{layers}.layer_norm1.weight" in sd:
        layers += 1
    inter = sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    proj = sd["visual_projection.weight"].shape[0] if "visual_projection.weight" in sd else None
    if siglip:
        # SigLIP (so400m, 1152 wide): 16 heads of 72, tanh-GELU, layer norm eps 1e-6 (its
        # transformers config; upstream's 1e-5 differs below float32 noise)
        heads = dim // 72 if dim % 72 == 0 else max(1, dim // 64)
        act, eps = hidden_act or "gelu_tanh", 1e-6
    else:
        # as ComfyUI's configs: ViT-H (1280) and ViT-bigG (1664) are LAION models with 16 heads and
        # GELU; the OpenAI ViTs (B: 768, L: 1024, ...) use quick_gelu and 64-wide heads
        heads = 16 if dim in (1280, 1664) else max(1, dim // 64)
        act, eps = hidden_act or ("gelu" if dim in (1280, 1664) else "quick_gelu"), 1e-5
    encoder = TextModelConfig(hidden_size=dim, intermediate_size=inter, num_layers=layers, num_heads=heads,
                              hidden_act=act, projection_dim=proj, eps=eps)
    mean, std = (SIGLIP_MEAN, SIGLIP_STD) if siglip else (CLIP_MEAN, CLIP_STD)
    return VisionConfig(encoder, patch, image_size, siglip, tuple(mean), tuple(std))


class ClipVisionModel:
    """What a CLIP_VISION socket carries."""

    def __init__(self, sd: dict[str, torch.Tensor], hidden_act: str | None = None):
        cfg = vision_config(sd, hidden_act)
        self.config, self.image_size, self.siglip = cfg.encoder, cfg.image_size, cfg.siglip
        self.image_mean, self.image_std = list(cfg.mean), list(cfg.std)
        patch, image_size, proj = cfg.patch, cfg.image_size, cfg.encoder.projection_dim
        self.load_device = memory.text_encoder_device()
        offload = memory.text_encoder_offload_device()
        with torch.device("meta"):
            self.model = CLIPVisionModelProjection(self.config, patch, image_size, proj, siglip=self.siglip)
        missing, unexpected = ops.assign_state_dict(self.model, sd, torch.float32)
        if missing:
            raise ModelFileError(f"CLIP vision weights missing: {missing[:4]}")
        if unexpected:
            log.debug("clip vision unexpected keys %s", unexpected[:5])
        self.model.eval().requires_grad_(False)
        self.patcher = ModelPatcher(self.model, load_device=self.load_device, offload_device=offload)

    def get_sd(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def encode_image(self, image: torch.Tensor, crop: bool = True) -> Output:
        memory.load_models_gpu([self.patcher])
        dev = self.load_device
        dtype = next(self.model.parameters()).dtype
        pixels = clip_preprocess(image.to(dev), size=self.image_size, mean=self.image_mean, std=self.image_std,
                                 crop=crop).to(dtype)
        with torch.no_grad():
            outs = self.model(pixels, all_hidden_states=self.siglip)
        out_dev = memory.intermediate_device()
        last, penultimate, embeds = (t.float().to(out_dev) for t in outs[:3])
        out = Output(last_hidden_state=last, penultimate_hidden_states=penultimate, image_embeds=embeds,
                     image_sizes=[])
        if self.siglip:
            out["all_hidden_states"] = outs[3].float().to(out_dev)
        return out


def clip_vision_from_state_dict(sd: dict[str, torch.Tensor], prefix: str = "") -> ClipVisionModel:
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if "visual.conv1.weight" in sd:
        sd = open_clip_visual_to_hf(sd, "visual.")
    elif "conv1.weight" in sd and "transformer.resblocks.0.ln_1.weight" in sd:
        sd = open_clip_visual_to_hf(sd, "")
    return ClipVisionModel(sd)


def load_clip_vision(path: str) -> ClipVisionModel:
    sd = load_torch_file(path)
    for prefix in ("", "embedder.model.", "conditioner.embedders.0.model.", "model.", "clip_vision."):
        if prefix and not any(k.startswith(prefix) for k in sd):
            continue
        try:
            return clip_vision_from_state_dict(sd, prefix)
        except (ModelFileError, KeyError):
            continue
    from .family import describe_state_dict
    raise ModelFileError(f"{os.path.basename(path)}: not a CLIP vision model. Found {describe_state_dict(sd)}")


# ----------------------------------------------------------------------------------- unCLIP
class CLIPEmbeddingNoiseAugmentation(nn.Module):
    """unCLIP's image-embedding noise augmentation: a cosine (``squaredcos_cap_v2``) DDPM
    schedule of 1000 levels; ``forward(x, level)`` noises the embedding to that level and
    returns it with the sinusoidal embedding of the level (mean 0 / std 1 statistics, as
    ComfyUI uses: the checkpoints' stats are not loaded)."""

    def __init__(self, timestep_dim: int, timesteps: int = 1000):
        super().__init__()
        self.timestep_dim = timestep_dim
        self.max_noise_level = timesteps
        s = 8e-3
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + s
        alphas = torch.cos(t / (1 + s) * torch.pi / 2).pow(2)
        alphas = alphas / alphas[0]
        betas = torch.clamp(1 - alphas[1:] / alphas[:-1], min=0, max=0.999)
        ac = torch.cumprod(1.0 - betas, dim=0)
        self.register_buffer("sqrt_alphas_cumprod", ac.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1.0 - ac).sqrt().float(), persistent=False)
        self.register_buffer("data_mean", torch.zeros(timestep_dim), persistent=False)
        self.register_buffer("data_std", torch.ones(timestep_dim), persistent=False)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from .base import timestep_embedding
        x = (x - self.data_mean.to(x)) / self.data_std.to(x)
        if seed is None:
            noise = torch.randn_like(x)
        else:
            noise = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(int(seed))).to(x.device)
        lvl = noise_level.long().to(self.sqrt_alphas_cumprod.device)
        a = self.sqrt_alphas_cumprod[lvl].to(x).view(-1, *([1] * (x.ndim - 1)))
        b = self.sqrt_one_minus_alphas_cumprod[lvl].to(x).view(-1, *([1] * (x.ndim - 1)))
        z = (a * x + b * noise) * self.data_std.to(x) + self.data_mean.to(x)
        return z, timestep_embedding(noise_level.to(x.device).float(), self.timestep_dim).to(x)


def unclip_adm(unclip_conditioning: list[dict], device: torch.device, augmentor: CLIPEmbeddingNoiseAugmentation,
               noise_augment_merge: float = 0.0, seed: int | None = None) -> torch.Tensor:
    """The ``y`` input of an unCLIP UNet from unCLIPConditioning entries."""
    outs, augs = [], []
    for entry in unclip_conditioning:
        for emb in entry["clip_vision_output"].image_embeds:
            level = round((augmentor.max_noise_level - 1) * entry["noise_augmentation"])
            c, lvl = augmentor(emb.reshape(1, -1).to(device), torch.tensor([level], device=device), seed=seed)
            outs.append(torch.cat((c, lvl), 1) * entry["strength"])
            augs.append(entry["noise_augmentation"])
    if len(augs) > 1:
        merged = torch.stack(outs).sum(0)
        level = round((augmentor.max_noise_level - 1) * noise_augment_merge)
        c, lvl = augmentor(merged[:, :augmentor.timestep_dim], torch.tensor([level], device=device))
        return torch.cat((c, lvl), 1)
    return outs[0]
