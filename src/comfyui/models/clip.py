"""CLIP text encoders (SD1 CLIP-L, SD2 OpenCLIP-H, SDXL CLIP-L + OpenCLIP-bigG) and the
CLIP object carried by CLIP sockets.

The transformer uses transformers' ``CLIPTextModel`` key names (``text_model.embeddings...``,
``text_model.encoder.layers.N...``, ``text_model.final_layer_norm``, ``text_projection``);
OpenCLIP checkpoints are converted to that layout by :mod:`comfyui.models.convert`.

CLIP object::

    tokens = clip.tokenize("a (red:1.2) cat")        # {"l": [[(id, w), ...] * 77, ...]}
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    clip2 = clip.clone(); clip2.clip_layer(-2)        # CLIPSetLastLayer
    clip.encode_from_tokens_scheduled(tokens)         # [[cond, {"pooled_output": pooled}]]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import memory, ops
from .patcher import ModelPatcher
from .tokenizer import END_TOKEN, START_TOKEN, SDTokenizer

log = logging.getLogger(__name__)


@dataclass
class TextModelConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    vocab_size: int = 49408
    max_positions: int = 77
    hidden_act: str = "quick_gelu"
    projection_dim: int | None = 768
    eps: float = 1e-5


class CLIPAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = ops.Linear(dim, dim)
        self.k_proj = ops.Linear(dim, dim)
        self.v_proj = ops.Linear(dim, dim)
        self.out_proj = ops.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, c // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                             attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class CLIPMLP(nn.Module):
    def __init__(self, dim: int, inner: int, act: str):
        super().__init__()
        self.fc1 = ops.Linear(dim, inner)
        self.fc2 = ops.Linear(inner, dim)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if self.act == "quick_gelu":
            x = x * torch.sigmoid(1.702 * x)
        elif self.act == "gelu_tanh":
            x = F.gelu(x, approximate="tanh")
        else:
            x = F.gelu(x)
        return self.fc2(x)


class CLIPLayer(nn.Module):
    def __init__(self, cfg: TextModelConfig):
        super().__init__()
        self.layer_norm1 = ops.LayerNorm(cfg.hidden_size, eps=cfg.eps)
        self.self_attn = CLIPAttention(cfg.hidden_size, cfg.num_heads)
        self.layer_norm2 = ops.LayerNorm(cfg.hidden_size, eps=cfg.eps)
        self.mlp = CLIPMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class _Embeddings(nn.Module):
    def __init__(self, cfg: TextModelConfig):
        super().__init__()
        self.token_embedding = ops.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = ops.Embedding(cfg.max_positions, cfg.hidden_size)


class _Encoder(nn.Module):
    def __init__(self, cfg: TextModelConfig):
        super().__init__()
        self.layers = nn.ModuleList([CLIPLayer(cfg) for _ in range(cfg.num_layers)])


class _TextModel(nn.Module):
    def __init__(self, cfg: TextModelConfig):
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.final_layer_norm = ops.LayerNorm(cfg.hidden_size, eps=cfg.eps)


class CLIPTextModel(nn.Module):
    """The text transformer. ``forward(embeds, ids, intermediate_idx)`` returns
    (last hidden after final layer norm, intermediate hidden (raw) or None, pooled (raw,
    before projection), projected pooled)."""

    def __init__(self, cfg: TextModelConfig):
        super().__init__()
        self.cfg = cfg
        self.text_model = _TextModel(cfg)
        proj = cfg.projection_dim or cfg.hidden_size
        self.text_projection = ops.Linear(cfg.hidden_size, proj, bias=False)
        with torch.no_grad():
            if proj == cfg.hidden_size and not self.text_projection.weight.is_meta:
                self.text_projection.weight.copy_(torch.eye(proj))
        self.num_layers = cfg.num_layers

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_model.embeddings.token_embedding(ids)

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, intermediate_idx: int | None = None,
                eos_token_id: int = END_TOKEN) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        tm = self.text_model
        n = embeds.shape[1]
        pos = tm.embeddings.position_embedding.weight[:n].to(embeds)
        x = embeds + pos
        mask = torch.full((n, n), float("-inf"), dtype=x.dtype, device=x.device).triu_(1)
        if intermediate_idx is not None and intermediate_idx < 0:
            intermediate_idx = len(tm.encoder.layers) + intermediate_idx
        inter = None
        for i, layer in enumerate(tm.encoder.layers):
            x = layer(x, mask)
            if i == intermediate_idx:
                inter = x.clone()
        x = tm.final_layer_norm(x)
        eos_pos = (ids == eos_token_id).int().argmax(dim=-1)
        pooled = x[torch.arange(x.shape[0], device=x.device), eos_pos.to(x.device)]
        projected = self.text_projection(pooled)
        return x, inter, pooled, projected


def text_config_from_state_dict(sd: dict[str, torch.Tensor], prefix: str = "", hidden_act: str | None = None) -> TextModelConfig:
    """Read a config back from HF-layout keys (after ``prefix``)."""
    tok = sd[prefix + "text_model.embeddings.token_embedding.weight"]
    pos = sd[prefix + "text_model.embeddings.position_embedding.weight"]
    hidden = tok.shape[1]
    layers = 0
    while prefix + f"text_model.encoder.layers.{layers}.mlp.fc1.weight" in sd:
        layers += 1
    inner = sd[prefix + "text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    proj = sd.get(prefix + "text_projection.weight")
    if hidden_act is None:
        hidden_act = "gelu" if hidden in (1024, 1280) else "quick_gelu"
    return TextModelConfig(hidden_size=hidden, intermediate_size=inner, num_layers=layers,
                           num_heads=max(1, hidden // 64), vocab_size=tok.shape[0], max_positions=pos.shape[0],
                           hidden_act=hidden_act, projection_dim=proj.shape[0] if proj is not None else hidden)


# ------------------------------------------------------------------------ text encoders
class SDClipModel(nn.Module):
    """One CLIP text encoder with ComfyUI's layer selection and weighting.

    ``layer``: "last", "hidden" (use ``layer_idx``) or "penultimate" (= hidden, -2).
    ``layer_norm_hidden_state``: apply the final layer norm to a hidden layer output.
    """

    def __init__(self, cfg: TextModelConfig, layer: str = "last", layer_idx: int | None = None,
                 layer_norm_hidden_state: bool = True, return_projected_pooled: bool = True,
                 pad_with_end: bool = True):
        super().__init__()
        self.transformer = CLIPTextModel(cfg)
        self.num_layers = cfg.num_layers
        if layer == "penultimate":
            layer, layer_idx = "hidden", -2
        self.default = (layer, layer_idx)
        self.layer, self.layer_idx = layer, layer_idx
        self.layer_norm_hidden_state = layer_norm_hidden_state
        self.return_projected_pooled = return_projected_pooled
        self.compute_dtype: torch.dtype | None = None  # set when weights are stored in fp8
        self.special_tokens = {"start": START_TOKEN, "end": END_TOKEN, "pad": END_TOKEN if pad_with_end else 0}

    def clip_layer(self, layer_idx: int) -> None:
        if abs(layer_idx) > self.num_layers:
            self.layer, self.layer_idx = "last", None
        else:
            self.layer, self.layer_idx = "hidden", layer_idx

    def reset_clip_layer(self) -> None:
        self.layer, self.layer_idx = self.default

    def _tokens_to_embeds(self, tokens: list[list[Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.transformer.text_model.embeddings.token_embedding.weight.device
        wdt = self.compute_dtype or self.transformer.text_model.final_layer_norm.weight.dtype
        ids = torch.tensor([[t if isinstance(t, int) else 0 for t in seq] for seq in tokens], dtype=torch.long, device=dev)
        emb = self.transformer.embed_tokens(ids)
        if emb.dtype != wdt:
            emb = emb.to(wdt)
        for b, seq in enumerate(tokens):
            for i, t in enumerate(seq):
                if not isinstance(t, int):
                    vec = t.to(device=emb.device, dtype=emb.dtype)
                    if vec.shape[-1] == emb.shape[-1]:
                        emb[b, i] = vec
                    else:
                        log.warning("embedding of width %d does not fit this text encoder (%d)", vec.shape[-1],
                                    emb.shape[-1])
        # embedding vectors mark themselves as non-eos tokens: their id is 0 here, not 49407
        return emb, ids

    def encode(self, tokens: list[list[Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        emb, ids = self._tokens_to_embeds(tokens)
        idx = self.layer_idx if self.layer == "hidden" else None
        last, inter, pooled, projected = self.transformer(emb, ids, intermediate_idx=idx)
        if self.layer == "last" or inter is None:
            z = last
        else:
            z = inter
            if self.layer_norm_hidden_state:
                z = self.transformer.text_model.final_layer_norm(z)
        p = projected if self.return_projected_pooled else pooled
        return z.float(), p.float()

    def gen_empty_tokens(self, length: int) -> list[int]:
        out = [self.special_tokens["start"], self.special_tokens["end"]]
        return out + [self.special_tokens["pad"]] * (length - len(out))

    def encode_token_weights(self, token_weight_pairs: list[list[tuple]]) -> tuple[torch.Tensor, torch.Tensor]:
        """ComfyUI's weighting: z = (z - z_empty) * w + z_empty per token; chunks concatenated
        along the sequence; pooled of the first chunk."""
        to_encode = []
        max_len = 0
        has_weights = False
        for x in token_weight_pairs:
            toks = [a[0] for a in x]
            max_len = max(len(toks), max_len)
            has_weights = has_weights or not all(a[1] == 1.0 for a in x)
            to_encode.append(toks)
        sections = len(to_encode)
        if has_weights or sections == 0:
            to_encode.append(self.gen_empty_tokens(max_len))
        out, pooled = self.encode(to_encode)
        first_pooled = pooled[0:1].to(memory.intermediate_device())
        output = []
        for k in range(sections):
            z = out[k:k + 1]
            if has_weights:
                z_empty = out[-1]
                z = z.clone()
                for j in range(z.shape[1]):
                    w = token_weight_pairs[k][j][1]
                    if w != 1.0:
                        z[0, j] = (z[0, j] - z_empty[j]) * w + z_empty[j]
            output.append(z)
        if not output:
            return out[-1:].to(memory.intermediate_device()), first_pooled
        return torch.cat(output, dim=-2).to(memory.intermediate_device()), first_pooled


# ----------------------------------------------------------------------- encoder families
@dataclass
class ClipSpec:
    """One encoder in a family: token-dict key, settings and weights prefix."""
    key: str
    layer: str
    layer_idx: int | None
    layer_norm_hidden_state: bool
    return_projected_pooled: bool
    pad_with_end: bool
    embedding_key: str


FAMILIES: dict[str, list[ClipSpec]] = {
    "sd1": [ClipSpec("l", "last", None, True, True, True, "clip_l")],
    "sd2": [ClipSpec("h", "penultimate", None, True, True, False, "clip_h")],
    "sdxl": [ClipSpec("l", "hidden", -2, False, False, True, "clip_l"),
             ClipSpec("g", "penultimate", None, False, True, False, "clip_g")],
    "sdxl_refiner": [ClipSpec("g", "penultimate", None, False, True, False, "clip_g")],
}


class MultiClip(nn.Module):
    """The text-encoder module of a family (submodules named ``clip_<key>``)."""

    def __init__(self, family: str, configs: dict[str, TextModelConfig]):
        super().__init__()
        self.family = family
        self.specs = FAMILIES[family]
        for s in self.specs:
            enc = SDClipModel(configs[s.key], s.layer, s.layer_idx, s.layer_norm_hidden_state,
                              s.return_projected_pooled, s.pad_with_end)
            self.add_module("clip_" + s.key, enc)

    def encoder(self, key: str) -> SDClipModel:
        return getattr(self, "clip_" + key)

    def clip_layer(self, idx: int | None) -> None:
        for s in self.specs:
            if idx is None:
                self.encoder(s.key).reset_clip_layer()
            else:
                self.encoder(s.key).clip_layer(idx)

    def encode_token_weights(self, tokens: dict[str, list]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.family in ("sdxl",):
            l_out, _ = self.encoder("l").encode_token_weights(tokens["l"])
            g_out, g_pooled = self.encoder("g").encode_token_weights(tokens["g"])
            cut = min(l_out.shape[0], g_out.shape[0])
            return torch.cat([l_out[:cut], g_out[:cut]], dim=-1), g_pooled
        key = self.specs[0].key
        return self.encoder(key).encode_token_weights(tokens[key])


class MultiTokenizer:
    def __init__(self, family: str, configs: dict[str, TextModelConfig], embedding_directory: Any = None):
        self.family = family
        self.tokenizers = {}
        for s in FAMILIES[family]:
            self.tokenizers[s.key] = SDTokenizer(max_length=configs[s.key].max_positions, pad_with_end=s.pad_with_end,
                                                 embedding_directory=embedding_directory,
                                                 embedding_size=configs[s.key].hidden_size,
                                                 embedding_key=s.embedding_key)

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> dict[str, list]:
        return {k: t.tokenize_with_weights(text, return_word_ids) for k, t in self.tokenizers.items()}


class CLIP:
    """What CLIP sockets carry: tokenizer + text-encoder module in a patcher."""

    def __init__(self, family: str, configs: dict[str, TextModelConfig], embedding_directory: Any = None,
                 device: torch.device | None = None, dtype: torch.dtype | None = None,
                 _cond_stage_model: MultiClip | None = None, _patcher: ModelPatcher | None = None):
        self.family = family
        self.configs = configs
        self.tokenizer = MultiTokenizer(family, configs, embedding_directory)
        self.layer_idx: int | None = None
        if _cond_stage_model is not None:
            self.cond_stage_model = _cond_stage_model
            self.patcher = _patcher
            return
        load_device = device or memory.text_encoder_device()
        offload = memory.text_encoder_offload_device()
        with torch.device("meta"):
            self.cond_stage_model = MultiClip(family, configs)
        self.cond_stage_model.eval().requires_grad_(False)
        self.dtype = dtype or memory.text_encoder_dtype(load_device)
        self.cond_stage_model.manual_cast_dtype = None
        if self.dtype in memory.FP8_TYPES:
            cdt = torch.float16 if memory.should_use_fp16(load_device) else torch.float32
            self.cond_stage_model.manual_cast_dtype = cdt
            for s in self.cond_stage_model.specs:
                self.cond_stage_model.encoder(s.key).compute_dtype = cdt
        self.patcher = ModelPatcher(self.cond_stage_model, load_device=load_device, offload_device=offload)

    def load_sd(self, sd: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load HF-layout weights keyed ``clip_<key>.transformer.text_model...`` (the module
        is built on the meta device: this is what materialises it). A missing square
        ``text_projection`` becomes the identity (SD1 CLIP-L files have none)."""
        fill = {}
        for s in self.cond_stage_model.specs:
            name = f"clip_{s.key}.transformer.text_projection.weight"
            fill[name] = lambda t: torch.eye(t.shape[0], t.shape[1], dtype=t.dtype)
        missing, unexpected = ops.assign_state_dict(self.cond_stage_model, sd, self.dtype, fill=fill)
        if self.cond_stage_model.manual_cast_dtype is not None:
            ops.set_manual_cast(self.cond_stage_model, True)
        unexpected = [k for k in unexpected if not k.endswith("position_ids")]
        if missing:
            log.warning("text encoder: missing keys %s", missing[:10])
        return missing, unexpected

    def get_sd(self) -> dict[str, torch.Tensor]:
        return self.cond_stage_model.state_dict()

    def clone(self) -> "CLIP":
        n = CLIP(self.family, self.configs, None, _cond_stage_model=self.cond_stage_model, _patcher=self.patcher.clone())
        n.tokenizer = self.tokenizer
        n.layer_idx = self.layer_idx
        n.dtype = getattr(self, "dtype", None)
        return n

    def add_patches(self, patches: dict, strength_patch: float = 1.0, strength_model: float = 1.0) -> list:
        return self.patcher.add_patches(patches, strength_patch, strength_model)

    def clip_layer(self, layer_idx: int) -> None:
        self.layer_idx = layer_idx

    def tokenize(self, text: str, return_word_ids: bool = False, **kwargs: Any) -> dict[str, list]:
        return self.tokenizer.tokenize_with_weights(text, return_word_ids)

    def load_model(self) -> ModelPatcher:
        memory.load_models_gpu([self.patcher])
        return self.patcher

    def encode_from_tokens(self, tokens: dict[str, list], return_pooled: bool | str = False,
                           return_dict: bool = False) -> Any:
        self.cond_stage_model.clip_layer(self.layer_idx)
        self.load_model()
        with torch.inference_mode():
            cond, pooled = self.cond_stage_model.encode_token_weights(tokens)
        cond, pooled = cond.clone(), pooled.clone()
        if return_dict:
            return {"cond": cond, "pooled_output": pooled}
        if return_pooled:
            return cond, pooled
        return cond

    def encode_from_tokens_scheduled(self, tokens: dict[str, list], add_dict: dict | None = None) -> list:
        cond, pooled = self.encode_from_tokens(tokens, return_pooled=True)
        d = {"pooled_output": pooled}
        d.update(add_dict or {})
        return [[cond, d]]

    def encode(self, text: str) -> torch.Tensor:
        return self.encode_from_tokens(self.tokenize(text))
