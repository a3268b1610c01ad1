"""T5 v1.1 encoder (T5-XXL for Flux, SD3, HiDream, LTX-Video) with its SentencePiece-unigram
tokenizer.

The module's ``state_dict()`` keys are the transformers ``T5EncoderModel`` ones, which are
also the file layout (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``,
``encoder.block.N.layer.1.DenseReluDense.wi_0.weight``, ``encoder.final_layer_norm.weight``).
T5 specifics: RMS layer norms without bias or mean, attention without the 1/sqrt(d) scale,
a learned relative position bias (bidirectional buckets, 32 buckets, max distance 128) that
block 0 computes and every block adds, a gated-GELU (tanh) feed-forward. In float16 the
residual stream is clamped below the float16 maximum after each sub-layer (as transformers
does), since T5-XXL's activations overflow there.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .tokenizers.clip import escape_important, token_weights, unescape_important
from .weighting import encode_with_weights

HEAD_DIM = 64  # d_kv of every T5 v1.1 / UMT5 size; heads cannot be read from shapes otherwise


@dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    d_model: int = 4096
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    d_kv: int = HEAD_DIM
    gated: bool = True
    bias_per_layer: bool = False  # UMT5: every block has its own relative attention bias
    num_buckets: int = 32
    max_distance: int = 128


class T5LayerNorm(nn.Module):
    """RMS norm (no mean, no bias), eps 1e-6, variance in float32."""

    def __init__(self, dim: int, device: Any = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = (x.float() * torch.rsqrt(variance + 1e-6)).to(x.dtype)
        return self.weight.to(device=x.device, dtype=x.dtype) * x


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 buckets: half the buckets per direction; in each half, exact buckets
    for distances below a quarter of the buckets, log-spaced ones up to ``max_distance``."""
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    log_bucket = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                          * (half - exact)).long()
    log_bucket = log_bucket.clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, log_bucket)


class T5Attention(nn.Module):
    def __init__(self, cfg: T5Config, has_bias: bool, device: Any = None):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.heads = cfg.num_heads
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.q = ops.Linear(cfg.d_model, inner, bias=False, device=device)
        self.k = ops.Linear(cfg.d_model, inner, bias=False, device=device)
        self.v = ops.Linear(cfg.d_model, inner, bias=False, device=device)
        self.o = ops.Linear(inner, cfg.d_model, bias=False, device=device)
        self.relative_attention_bias = (ops.Embedding(cfg.num_buckets, cfg.num_heads, device=device)
                                        if has_bias else None)

    def position_bias(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[1, heads, length, length]: the learned bias of (key position - query position)."""
        pos = torch.arange(length, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).to(dtype).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        if self.relative_attention_bias is not None:
            bias = self.position_bias(n, x.device, x.dtype)
        split = lambda t: t.view(b, n, self.heads, -1).transpose(1, 2)  # noqa: E731
        attn_bias = bias if mask is None else bias + mask
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                             attn_mask=attn_bias, scale=1.0)
        return self.o(out.transpose(1, 2).reshape(b, n, -1)), bias


class T5SelfAttentionLayer(nn.Module):
    def __init__(self, cfg: T5Config, has_bias: bool, device: Any = None):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_bias, device=device)
        self.layer_norm = T5LayerNorm(cfg.d_model, device=device)


class T5DenseGatedGelu(nn.Module):
    def __init__(self, cfg: T5Config, device: Any = None):
        super().__init__()
        self.wi_0 = ops.Linear(cfg.d_model, cfg.d_ff, bias=False, device=device)
        self.wi_1 = ops.Linear(cfg.d_model, cfg.d_ff, bias=False, device=device)
        self.wo = ops.Linear(cfg.d_ff, cfg.d_model, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class T5DenseRelu(nn.Module):
    """The original T5's (not v1.1) feed-forward: one ReLU projection."""

    def __init__(self, cfg: T5Config, device: Any = None):
        super().__init__()
        self.wi = ops.Linear(cfg.d_model, cfg.d_ff, bias=False, device=device)
        self.wo = ops.Linear(cfg.d_ff, cfg.d_model, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.relu(self.wi(x)))


class T5FeedForwardLayer(nn.Module):
    def __init__(self, cfg: T5Config, device: Any = None):
        super().__init__()
        self.DenseReluDense = T5DenseGatedGelu(cfg, device) if cfg.gated else T5DenseRelu(cfg, device)
        self.layer_norm = T5LayerNorm(cfg.d_model, device=device)


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16:
        limit = torch.finfo(torch.float16).max - 1000
        return x.clamp(-limit, limit)
    return x


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, has_bias: bool, device: Any = None):
        super().__init__()
        self.layer = nn.ModuleList([T5SelfAttentionLayer(cfg, has_bias, device), T5FeedForwardLayer(cfg, device)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        attn, ffn = self.layer
        out, bias = attn.SelfAttention(attn.layer_norm(x), bias, mask)
        x = _clamp_fp16(x + out)
        x = _clamp_fp16(x + ffn.DenseReluDense(ffn.layer_norm(x)))
        return x, bias


class T5Stack(nn.Module):
    def __init__(self, cfg: T5Config, device: Any = None):
        super().__init__()
        self.block = nn.ModuleList(T5Block(cfg, cfg.bias_per_layer or i == 0, device) for i in range(cfg.num_layers))
        self.final_layer_norm = T5LayerNorm(cfg.d_model, device=device)


class T5Encoder(nn.Module):
    """The encoder. ``forward(embeds, attention_mask=None, intermediate=None)`` returns the
    final hidden states (after the final norm) and, when ``intermediate`` (a block index,
    negative from the end) is given, that block's output after the final norm."""

    def __init__(self, cfg: T5Config, device: Any = None):
        super().__init__()
        self.cfg = cfg
        self.shared = ops.Embedding(cfg.vocab_size, cfg.d_model, device=device)
        self.encoder = T5Stack(cfg, device)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                intermediate: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = embeds
        mask = None
        if attention_mask is not None:  # [B, T] 1 = attend: keys that are 0 get -inf (finite)
            blocked = attention_mask[:, None, None, :].to(x.device) == 0
            mask = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device).masked_fill(
                blocked, torch.finfo(x.dtype).min)
        if intermediate is not None and intermediate < 0:
            intermediate += len(self.encoder.block)
        bias = None
        kept = None
        for i, block in enumerate(self.encoder.block):
            x, bias = block(x, bias, mask)
            if i == intermediate:
                kept = x
        norm = self.encoder.final_layer_norm
        return norm(x), (norm(kept) if kept is not None else None)


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> T5Config | None:
    """The T5 config of HF-layout encoder weights under ``prefix`` (widths, depth, vocabulary
    and gating from the shapes; heads = inner width / 64), or None if they are not T5."""
    q = sd.get(prefix + "encoder.block.0.layer.0.SelfAttention.q.weight")
    shared = sd.get(prefix + "shared.weight")
    if q is None or shared is None:
        return None
    layers = 0
    while prefix + f"encoder.block.{layers}.layer.0.SelfAttention.q.weight" in sd:
        layers += 1
    gated = prefix + "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sd
    wi = sd[prefix + "encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"]
    bias = sd.get(prefix + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    if bias is None:
        return None
    return T5Config(vocab_size=shared.shape[0], d_model=shared.shape[1], d_ff=wi.shape[0], num_layers=layers,
                    num_heads=q.shape[0] // HEAD_DIM, gated=gated,
                    bias_per_layer=prefix + "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in sd,
                    num_buckets=bias.shape[0])


# ------------------------------------------------------------------------------ tokenizer
VOCABULARY = Path(__file__).resolve().parent / "tokenizers" / "t5" / "tokenizer.json"
PAD_TOKEN, END_TOKEN = 0, 1


@functools.lru_cache(maxsize=1)
def _unigram() -> Any:
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(VOCABULARY))


class T5Tokenizer:
    """ComfyUI's T5-XXL tokenization: the prompt's weighted segments tokenized one by one (no
    start token), ``</s>`` after the last, then ``min_padding`` ``<pad>`` tokens, then padding
    with ``<pad>`` up to ``min_length`` (256 for Flux, 77 for SD3, 1 for Chroma/PixArt); one
    chunk however long the prompt. A CLIP's tokenizer options (T5TokenizerOptions:
    ``t5xxl_min_padding``, ``t5xxl_min_length``) override both per call."""

    option_key = "t5xxl"

    def __init__(self, min_length: int = 256, min_padding: int = 0):
        self.min_length = min_length
        self.min_padding = min_padding
        self.tokenizer = _unigram()

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False,
                              tokenizer_options: Mapping[str, Any] | None = None) -> list[list[tuple]]:
        options = tokenizer_options or {}
        min_length = options.get(f"{self.option_key}_min_length", self.min_length)
        min_padding = options.get(f"{self.option_key}_min_padding", self.min_padding)
        chunk: list[tuple] = []
        for word_id, (segment, weight) in enumerate(token_weights(escape_important(text), 1.0), start=1):
            segment = unescape_important(segment)
            if not segment:
                continue
            ids = self.tokenizer.encode(segment).ids[:-1]  # the post-processor appends </s>
            chunk.extend((t, weight, word_id) for t in ids)
        chunk.append((END_TOKEN, 1.0, 0))
        chunk.extend([(PAD_TOKEN, 1.0, 0)] * (min_padding or 0))
        chunk.extend([(PAD_TOKEN, 1.0, 0)] * ((min_length or 0) - len(chunk)))
        if return_word_ids:
            return [chunk]
        return [[(t, w) for t, w, _ in chunk]]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


# --------------------------------------------------------------------- text encoder (recipe)
class T5TextEncoder(nn.Module):
    """A T5 encoder as a CLIP-socket text encoder: ``encode_token_weights`` gives the last
    hidden states [1, T, d_model] (no pooled output) with ComfyUI's prompt weighting. No
    attention mask by default: the padding tokens are attended to, as upstream does for Flux and
    SD3; with ``attention_mask`` (LTX-Video) the padding after </s> is masked and the mask is
    returned with the conditioning."""

    def __init__(self, cfg: T5Config, device: Any = None, empty_end: bool = True, attention_mask: bool = False):
        super().__init__()
        self.transformer = T5Encoder(cfg, device=device)
        self.attention_mask = attention_mask  # LTX-Video / Mochi: padding after </s> masked and returned
        self.empty_end = empty_end  # PixArt/Chroma: the empty prompt (prompt weighting) is all <pad>
        self.compute_dtype: torch.dtype | None = None  # set when the weights are stored in fp8

    def encode(self, tokens: list[list[Any]]) -> tuple[torch.Tensor, None]:
        shared = self.transformer.shared
        ids = torch.tensor([[t if isinstance(t, int) else PAD_TOKEN for t in seq] for seq in tokens],
                           dtype=torch.long, device=shared.weight.device)
        dtype = self.compute_dtype or self.transformer.encoder.final_layer_norm.weight.dtype
        embeds = shared(ids, out_dtype=dtype)
        if shared.weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            embeds = torch.nan_to_num(embeds)  # fp8-stored embeddings may hold NaN codes
        mask = end_mask(ids) if self.attention_mask else None
        hidden, _ = self.transformer(embeds, attention_mask=mask)
        return hidden.float(), None

    def empty_tokens(self, length: int) -> list[int]:
        if not self.empty_end:
            return [PAD_TOKEN] * length
        return [END_TOKEN] + [PAD_TOKEN] * (length - 1)

    def encode_token_weights(self, token_weight_pairs: list[list[tuple]]) -> tuple:
        out = encode_with_weights(self.encode, self.empty_tokens, token_weight_pairs)
        if not self.attention_mask:
            return out
        ids = torch.tensor([[t if isinstance(t, int) else PAD_TOKEN for t, *_ in chunk] for chunk in token_weight_pairs],
                           dtype=torch.long)
        mask = end_mask(ids).flatten().unsqueeze(0) if len(token_weight_pairs) else torch.ones(1, out[0].shape[1])
        return out[0], out[1], {"attention_mask": mask.to(out[0].device)}


def end_mask(ids: torch.Tensor) -> torch.Tensor:
    """[B, T] 1 for the tokens up to and including the first </s>, 0 after it (upstream's
    attention mask of T5 with masks enabled)."""
    is_end = (ids == END_TOKEN).long()
    after = (is_end.cumsum(dim=1) - is_end) > 0
    return (~after).long()


def t5_from_file(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A standalone T5 encoder file (transformers layout, optionally under ``transformer.``;
    other tensors such as scaled-fp8 markers kept) in the recipe's native keys
    (``transformer.encoder...``, ``transformer.shared.weight``), or None if it is not T5."""
    prefix = "transformer." if "transformer.shared.weight" in sd or \
        "transformer.encoder.block.0.layer.0.SelfAttention.q.weight" in sd else ""
    if prefix + "encoder.block.0.layer.0.SelfAttention.q.weight" not in sd:
        return None
    out = {}
    for k, v in sd.items():
        k = k[len(prefix):] if k.startswith(prefix) else k
        if k == "encoder.embed_tokens.weight":
            k = "shared.weight" if "shared.weight" not in sd and prefix + "shared.weight" not in sd else None
        if k is not None:
            out["transformer." + k] = v
    return out if "transformer.shared.weight" in out else None


def detect_t5(sd: Mapping[str, torch.Tensor], prefix: str = "") -> T5Config | None:
    return detect(sd, prefix + "transformer.")


def build_t5(cfg: T5Config, options: Mapping[str, Any]) -> T5TextEncoder:
    return T5TextEncoder(cfg, empty_end=options.get("empty_end", True),
                         attention_mask=options.get("attention_mask", False))


def t5_tokenizer(cfg: T5Config, options: Mapping[str, Any], embedding_directory: Any = None) -> T5Tokenizer:
    return T5Tokenizer(min_length=options.get("min_length", 256), min_padding=options.get("min_padding", 0))
