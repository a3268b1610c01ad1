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

from .. import ops
from .tokenizers.clip import END_TOKEN, START_TOKEN, SDTokenizer
from .weighting import encode_with_weights

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
        return encode_with_weights(self.encode, self.gen_empty_tokens, token_weight_pairs)


# ------------------------------------------------------------------ recipe functions
# A CLIP encoder's native keys are SDClipModel's: ``transformer.text_model...`` and
# ``transformer.text_projection.weight``. CLIP-L, OpenCLIP-H and OpenCLIP-bigG share that
# layout; their width tells them apart (the recipes try G, H, then L).
_TOKEN_EMBEDDING = "transformer.text_model.embeddings.token_embedding.weight"


def _native_clip_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool] | None:
    """(a standalone CLIP text-encoder file in SDClipModel's key layout, whether it was in
    OpenCLIP layout); None if the file is not one (transformers or OpenCLIP layout, with or
    without a ``transformer.`` prefix)."""
    from ..convert import normalize_hf_text_keys, open_clip_to_hf
    openclip = "token_embedding.weight" in sd and "positional_embedding" in sd
    if openclip:
        hf = open_clip_to_hf(sd, "")
    else:
        hf = normalize_hf_text_keys(sd)
        if "transformer.text_model.embeddings.token_embedding.weight" in hf:
            hf = {k[len("transformer."):]: v for k, v in hf.items() if k.startswith("transformer.")}
    if "text_model.embeddings.token_embedding.weight" not in hf:
        return None
    return {"transformer." + k: v for k, v in hf.items()}, openclip


def _file_of_kind(kind: str):
    """``from_file`` of the CLIP recipes: OpenCLIP-bigG is 1280 wide, OpenCLIP-H 1024 wide (or
    any file in OpenCLIP layout), CLIP-L any other CLIP text encoder."""
    def from_file(sd):
        found = _native_clip_keys(sd)
        if found is None:
            return None
        native, openclip = found
        width = native[_TOKEN_EMBEDDING].shape[1]
        k = "g" if width == 1280 else "h" if (width == 1024 or openclip) else "l"
        return native if k == kind else None
    return from_file


clip_g_from_file = _file_of_kind("g")
clip_h_from_file = _file_of_kind("h")
clip_l_from_file = _file_of_kind("l")


def _clip_config(sd, prefix: str, act: str) -> TextModelConfig | None:
    if prefix + _TOKEN_EMBEDDING not in sd:
        return None
    return text_config_from_state_dict(sd, prefix + "transformer.", hidden_act=act)


def detect_openclip(sd, prefix: str) -> TextModelConfig | None:
    """OpenCLIP-H / bigG (GELU) from the native keys under ``prefix``."""
    return _clip_config(sd, prefix, "gelu")


def detect_clip_l(sd, prefix: str) -> TextModelConfig | None:
    return _clip_config(sd, prefix, "quick_gelu")


def build_clip(config: TextModelConfig, options: dict[str, Any]) -> SDClipModel:
    return SDClipModel(config, layer=options.get("layer", "last"), layer_idx=options.get("layer_idx"),
                       layer_norm_hidden_state=options.get("layer_norm_hidden_state", True),
                       return_projected_pooled=options.get("return_projected_pooled", True),
                       pad_with_end=options.get("pad_with_end", True))


def clip_tokenizer(embedding_key: str):
    def make(config: TextModelConfig, options: dict[str, Any], embedding_directory: Any = None) -> SDTokenizer:
        return SDTokenizer(max_length=config.max_positions, pad_with_end=options.get("pad_with_end", True),
                           embedding_directory=embedding_directory, embedding_size=config.hidden_size,
                           embedding_key=embedding_key)
    return make
