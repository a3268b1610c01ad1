"""Gemma 2 decoder used as a text encoder: Gemma-2-2B for Lumina Image 2.0 / NetaYume Lumina
(CLIP type ``lumina2``; recipe ``gemma2_2b``).

Architecture (as transformers' ``Gemma2Model``): token embedding times sqrt(hidden size), then
per layer: RMSNorm -> grouped-query causal self-attention (rotary position embedding, "rotate
half" layout, theta 1e4) -> RMSNorm -> residual; RMSNorm -> gated MLP with tanh-approximated
GELU -> RMSNorm -> residual; a final RMSNorm. Gemma's RMSNorm scales by ``1 + weight``
(computed in float32).

Upstream ComfyUI's choices, followed here: attention uses the plain ``1/sqrt(head_dim)`` scale
with no logit soft-capping (transformers' Gemma 2 soft-caps attention logits at 50 and uses a
4096-token sliding window on every other layer; neither is applied by upstream, and the window
never matters for prompts under 4096 tokens); the conditioning is the hidden state after the
second-to-last layer, without the final norm (transformers' ``hidden_states[-2]``).

Widths and counts come from tensor shapes, except the head size, which the weights do not
determine (q/k/v/o shapes fix only heads x head size): Gemma 2's 256 (2B and 9B), as upstream's
fixed config. RoPE theta 1e4 and epsilon 1e-6 are Gemma 2's config values.

Tokenizer: Gemma's SentencePiece model is under the Gemma terms of use, so no vocabulary ships
with this package. Upstream's files carry it: a ``spiece_model`` tensor (the serialised
SentencePiece model proto as uint8) beside the weights in ``gemma_2_2b_fp16.safetensors`` and
as ``text_encoders.spiece_model`` in all-in-one checkpoints (what upstream's CLIPSave /
CheckpointSave write). It is read from there with ``sentencepiece``; a file without it is
refused (:func:`file_problem`, at prompt validation for CLIPLoader). Tokenization is upstream's
``Gemma2BTokenizer``: BOS (2) first, no EOS, no padding, one chunk whatever the length, ComfyUI's
``(text:1.2)`` weights parsed; a weighted token is ``(z - z_empty) * w + z_empty`` with
``z_empty`` the encoding of BOS + pad (0) tokens, pads masked out of attention.

Key layout: ``gemma_2_2b_fp16.safetensors`` holds ``model.embed_tokens.weight``,
``model.layers.{i}.self_attn.{q,k,v,o}_proj.weight``, ``model.layers.{i}.mlp.{gate,up,down}_proj
.weight``, ``model.layers.{i}.{input,post_attention,pre_feedforward,post_feedforward}_layernorm
.weight``, ``model.norm.weight`` and ``spiece_model``. The encoder module's native keys are those
under ``transformer.`` (``text_encoders.gemma2_2b.transformer.model...`` in checkpoints).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import memory, ops
from ..family import UnknownModelError, count_indexed
from .qwen3 import apply_rotary, rotary_cos_sin
from .tokenizers.clip import escape_important, load_embed, token_weights, unescape_important
from .weighting import encode_with_weights

log = logging.getLogger(__name__)

HIDDEN_LAYER = -2
HEAD_DIM = 256
ROPE_THETA = 10_000.0
RMS_NORM_EPS = 1e-6
BOS, PAD = 2, 0
SPIECE_KEY = "spiece_model"
_PROBE = "model.layers.0.post_feedforward_layernorm.weight"   # Gemma 2/3 (sandwich norms)
_GEMMA3 = "model.layers.0.self_attn.q_norm.weight"            # Gemma 3 has q/k norms


@dataclass(frozen=True)
class Gemma2Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int = HEAD_DIM
    rope_theta: float = ROPE_THETA
    rms_norm_eps: float = RMS_NORM_EPS
    spiece_model: bytes | None = field(default=None, repr=False)   # the tokenizer, from the file


def is_gemma2(keys) -> bool:
    """Whether a standalone file's keys (transformers layout, optionally under ``transformer.``)
    are a Gemma 2 decoder."""
    keys = set(keys)
    return any(p + _PROBE in keys and p + _GEMMA3 not in keys for p in ("", "transformer."))


def file_problem(keys) -> str | None:
    """Why a Gemma 2 file with these tensor names cannot be used (None if it can): without its
    ``spiece_model`` there is no tokenizer (none ships with this package)."""
    keys = set(keys)
    if is_gemma2(keys) and SPIECE_KEY not in keys:
        return ("this Gemma 2 text encoder file has no tokenizer: it needs the 'spiece_model' tensor that "
                "ComfyUI's gemma_2_2b files carry (the Gemma vocabulary is not shipped with this program "
                "because of its licence); use the file from Comfy-Org/Lumina_Image_2.0_Repackaged")
    return None


def config_from_state_dict(sd: Mapping[str, torch.Tensor], prefix: str = "") -> Gemma2Config | None:
    """The config of the Gemma 2 decoder whose transformers-layout keys (``model.*``) sit under
    ``prefix``; the tokenizer from ``prefix + "../spiece_model"`` (the recipe's prefix). None if
    there is no Gemma 2 decoder there."""
    if prefix + _PROBE not in sd or prefix + _GEMMA3 in sd:
        return None
    layer = prefix + "model.layers.0."
    embed = sd[prefix + "model.embed_tokens.weight"]
    q_out = sd[layer + "self_attn.q_proj.weight"].shape[0]
    kv_out = sd[layer + "self_attn.k_proj.weight"].shape[0]
    if q_out % HEAD_DIM or kv_out % HEAD_DIM:
        return None
    return Gemma2Config(
        vocab_size=embed.shape[0], hidden_size=embed.shape[1],
        intermediate_size=sd[layer + "mlp.gate_proj.weight"].shape[0],
        num_layers=count_indexed(sd, prefix + "model.layers."),
        num_heads=q_out // HEAD_DIM, num_kv_heads=kv_out // HEAD_DIM, head_dim=HEAD_DIM)


class GemmaRMSNorm(ops.RMSNorm):
    """RMSNorm scaling by ``1 + weight``, in float32 (transformers' ``Gemma2RMSNorm``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.cast_bias_weight(x)[0] if self.cast_weights else self.weight
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1.0 + w.float())).to(x.dtype)


class Gemma2Attention(nn.Module):
    def __init__(self, cfg: Gemma2Config):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = ops.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = ops.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = ops.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = ops.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        group = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class Gemma2MLP(nn.Module):
    def __init__(self, cfg: Gemma2Config):
        super().__init__()
        self.gate_proj = ops.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = ops.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = ops.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Gemma2Layer(nn.Module):
    def __init__(self, cfg: Gemma2Config):
        super().__init__()
        eps = cfg.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(cfg.hidden_size, eps)
        self.self_attn = Gemma2Attention(cfg)
        self.post_attention_layernorm = GemmaRMSNorm(cfg.hidden_size, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(cfg.hidden_size, eps)
        self.mlp = Gemma2MLP(cfg)
        self.post_feedforward_layernorm = GemmaRMSNorm(cfg.hidden_size, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), cos, sin, mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma2Decoder(nn.Module):
    def __init__(self, cfg: Gemma2Config):
        super().__init__()
        self.embed_tokens = ops.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Gemma2Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = GemmaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Gemma2TextModel(nn.Module):
    """The decoder under ``model.`` (transformers' key layout)."""

    def __init__(self, cfg: Gemma2Config):
        super().__init__()
        self.config = cfg
        self.model = Gemma2Decoder(cfg)

    def forward(self, embeds: torch.Tensor, key_mask: torch.Tensor | None = None,
                hidden_layer: int | None = None) -> torch.Tensor:
        """The hidden state after layer ``hidden_layer`` (Python indexing; no final norm), or the
        final normed output when None. ``embeds`` [B, T, C]: the token embeddings (before Gemma's
        sqrt(C) scaling); ``key_mask`` [B, T] bool: False for tokens no query may attend to."""
        cfg = self.config
        t = embeds.shape[1]
        x = embeds * torch.tensor(cfg.hidden_size ** 0.5, dtype=embeds.dtype)
        cos, sin = rotary_cos_sin(torch.arange(t, device=x.device), cfg.head_dim, cfg.rope_theta, x.dtype)
        mask = None
        if key_mask is not None and not bool(key_mask.all()):
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            mask = causal[None, None] & key_mask[:, None, None, :].to(x.device)
        stop = len(self.model.layers) if hidden_layer is None else hidden_layer % len(self.model.layers)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask)
            if i == stop:
                return x
        return self.model.norm(x)


class Gemma2Encoder(nn.Module):
    """The text encoder module of recipe ``gemma2_2b``: tokens -> (hidden [1, T, C], None)."""

    def __init__(self, cfg: Gemma2Config, hidden_layer: int = HIDDEN_LAYER):
        super().__init__()
        self.transformer = Gemma2TextModel(cfg)
        self.hidden_layer = hidden_layer
        self.compute_dtype: torch.dtype | None = None   # set when the weights are stored in fp8

    def _encode(self, batch: list[list[Any]]) -> tuple[torch.Tensor, None]:
        weight = self.transformer.model.embed_tokens.weight
        device, dtype = weight.device, self.compute_dtype or weight.dtype
        ids = torch.tensor([[t if isinstance(t, int) else PAD for t in row] for row in batch], dtype=torch.long,
                           device=device)
        embeds = self.transformer.model.embed_tokens(ids, out_dtype=dtype)
        for r, row in enumerate(batch):   # textual-inversion vectors replace their positions
            for c, t in enumerate(row):
                if not isinstance(t, int):
                    embeds[r, c] = t.to(device=device, dtype=dtype)
        # upstream's mask: every token up to the first pad token; that one and all after it masked
        key_mask = torch.zeros(ids.shape, dtype=torch.bool)
        for r, row in enumerate(batch):
            first_pad = next((c for c, t in enumerate(row) if isinstance(t, int) and t == PAD), len(row))
            key_mask[r, :first_pad] = True
        hidden = self.transformer(embeds, key_mask, hidden_layer=self.hidden_layer)
        return hidden.float(), None

    def encode_token_weights(self, token_weight_pairs: list[list[tuple]]) -> tuple[torch.Tensor, None]:
        hidden, _ = encode_with_weights(self._encode, lambda n: [BOS] + [PAD] * (n - 1), token_weight_pairs)
        return hidden.to(memory.intermediate_device()), None


class GemmaTokenizer:
    """Upstream's ``Gemma2BTokenizer``: prompt -> one chunk of (token, weight) pairs, BOS first,
    weights parsed, ``embedding:name`` looked up in the embeddings folder (2304 wide at real
    size, key ``gemma2_2b``)."""

    embedding_identifier = "embedding:"

    def __init__(self, spiece_model: bytes, embedding_directory: Any = None, embedding_size: int = 2304):
        import sentencepiece
        self.sp = sentencepiece.SentencePieceProcessor(model_proto=spiece_model, add_bos=True, add_eos=False)
        self.embedding_directory = embedding_directory
        self.embedding_size = embedding_size

    def encode(self, text: str) -> list[int]:
        """SentencePiece ids of ``text`` without the BOS."""
        return self.sp.encode(text)[1:]

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> list[list[tuple]]:
        groups: list[list[tuple[Any, float]]] = []
        for segment, weight in token_weights(escape_important(text), 1.0):
            split = re.split(" {0}|\n{0}".format(self.embedding_identifier), unescape_important(segment))
            words = [split[0]] + [self.embedding_identifier + s for s in split[1:]]
            for word in [w for w in words if w != ""]:
                if word.startswith(self.embedding_identifier) and self.embedding_directory is not None:
                    name = word[len(self.embedding_identifier):].strip("\n")
                    embed, leftover = self._embedding(name)
                    if embed is None:
                        log.warning("warning, embedding:%s does not exist, ignoring", name)
                    else:
                        vectors = embed if embed.ndim > 1 else embed[None]
                        groups.append([(vectors[i], weight) for i in range(vectors.shape[0])])
                    if leftover == "":
                        continue
                    word = leftover
                groups.append([(t, weight) for t in self.encode(word)])
        batch = [(BOS, 1.0, 0)] + [(t, w, i + 1) for i, group in enumerate(groups) for t, w in group]
        return [batch if return_word_ids else [(t, w) for t, w, _ in batch]]

    def _embedding(self, name: str) -> tuple[torch.Tensor | None, str]:
        parts = name.split()
        if not parts:
            return None, ""
        leftover = " ".join(parts[1:])
        embed = load_embed(parts[0], self.embedding_directory, self.embedding_size, "gemma2_2b")
        if embed is None:
            stripped = parts[0].strip(",")
            if len(stripped) < len(parts[0]):
                embed = load_embed(stripped, self.embedding_directory, self.embedding_size, "gemma2_2b")
                return embed, "{} {}".format(parts[0][len(stripped):], leftover)
        return embed, leftover


# --------------------------------------------------------------------- recipe functions
def from_file(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A standalone Gemma 2 file (transformers layout, with or without ComfyUI's
    ``transformer.`` prefix, plus its ``spiece_model``) in the encoder's native layout; None if
    the file is not a Gemma 2 decoder."""
    if not is_gemma2(sd.keys()):
        return None
    prefix = "" if _PROBE in sd else "transformer."
    out = {"transformer." + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix + "model.")}
    if SPIECE_KEY in sd:
        out[SPIECE_KEY] = sd[SPIECE_KEY]
    return out


def detect(sd: Mapping[str, torch.Tensor], prefix: str) -> Gemma2Config | None:
    config = config_from_state_dict(sd, prefix + "transformer.")
    if config is None:
        return None
    spiece = sd.get(prefix + SPIECE_KEY)
    if spiece is None:
        raise UnknownModelError(file_problem({_PROBE}))
    return dataclasses.replace(config, spiece_model=spiece.cpu().numpy().tobytes())


def build(config: Gemma2Config, options: Mapping[str, Any]) -> Gemma2Encoder:
    return Gemma2Encoder(config, hidden_layer=options.get("hidden_layer", HIDDEN_LAYER))


def tokenizer(config: Gemma2Config, options: Mapping[str, Any], embedding_directory: Any = None) -> GemmaTokenizer:
    return GemmaTokenizer(config.spiece_model, embedding_directory, config.hidden_size)
