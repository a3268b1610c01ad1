"""Qwen3 decoder used as a text encoder: Qwen3-4B for Lumina 2 / Z-Image (CLIP type ``lumina2``).

Architecture (as transformers' ``Qwen3Model``): token embedding, then per layer RMSNorm ->
grouped-query self-attention (causal; RMSNorm on each query/key head before rotary position
embedding, "rotate half" layout) -> residual, RMSNorm -> SwiGLU MLP -> residual; a final RMSNorm.
Every width and count comes from tensor shapes; RoPE theta (1e6) and the norm epsilon (1e-6)
are Qwen3's config values, which the weights do not carry.

As upstream ComfyUI encodes for Z-Image: the prompt goes into Qwen3's chat template
(``<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n``), prompt weights are not
parsed (``(word:1.2)`` is plain text), no start/end/pad tokens are added, and the conditioning
is the hidden state *before* the last layer (``hidden_states[-2]`` in transformers' terms,
without the final norm).

Key layout: ``qwen_3_4b.safetensors`` holds transformers' keys ``model.embed_tokens.weight``,
``model.layers.{i}.self_attn.{q,k,v,o}_proj.weight``, ``...self_attn.{q,k}_norm.weight``,
``...{input,post_attention}_layernorm.weight``, ``...mlp.{gate,up,down}_proj.weight``,
``model.norm.weight``. The encoder module's native keys are those under ``transformer.``
(ComfyUI's ``qwen3_4b.transformer.model...`` in checkpoints).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import memory, ops
from ..family import count_indexed
from .tokenizers.qwen import shared_tokenizer

CHAT_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
HIDDEN_LAYER = -2       # the output of the second-to-last layer is the conditioning
ROPE_THETA = 1_000_000.0
RMS_NORM_EPS = 1e-6
_PROBE = "model.layers.0.self_attn.q_norm.weight"   # q/k norms tell Qwen3 from Llama / Qwen2


@dataclass(frozen=True)
class Qwen3Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = ROPE_THETA
    rms_norm_eps: float = RMS_NORM_EPS


def config_from_state_dict(sd: Mapping[str, torch.Tensor], prefix: str = "") -> Qwen3Config | None:
    """The config of the Qwen3 decoder whose transformers-layout keys (``model.*``) sit under
    ``prefix``, or None if there is none."""
    if prefix + _PROBE not in sd:
        return None
    layer = prefix + "model.layers.0."
    head_dim = sd[layer + "self_attn.q_norm.weight"].shape[0]
    embed = sd[prefix + "model.embed_tokens.weight"]
    return Qwen3Config(
        vocab_size=embed.shape[0], hidden_size=embed.shape[1],
        intermediate_size=sd[layer + "mlp.gate_proj.weight"].shape[0],
        num_layers=count_indexed(sd, prefix + "model.layers."),
        num_heads=sd[layer + "self_attn.q_proj.weight"].shape[0] // head_dim,
        num_kv_heads=sd[layer + "self_attn.k_proj.weight"].shape[0] // head_dim,
        head_dim=head_dim)


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos, sin [T, head_dim] for the "rotate half" layout (both halves share frequencies)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class Qwen3Attention(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = ops.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = ops.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = ops.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = ops.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)
        self.q_norm = ops.RMSNorm(cfg.head_dim, cfg.rms_norm_eps)
        self.k_norm = ops.RMSNorm(cfg.head_dim, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        group = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class Qwen3MLP(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.gate_proj = ops.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = ops.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = ops.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen3Layer(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.input_layernorm = ops.RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Qwen3Attention(cfg)
        self.post_attention_layernorm = ops.RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Qwen3MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Decoder(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.embed_tokens = ops.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Qwen3Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = ops.RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Qwen3TextModel(nn.Module):
    """The decoder under ``model.`` (transformers' key layout)."""

    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.config = cfg
        self.model = Qwen3Decoder(cfg)

    def forward(self, ids: torch.Tensor, dtype: torch.dtype | None = None,
                hidden_layer: int | None = None) -> torch.Tensor:
        """The hidden state after layer ``hidden_layer`` (Python indexing; no final norm), or
        the final normed output when None. ``ids`` [B, T] (no padding: attention is causal)."""
        cfg = self.config
        x = self.model.embed_tokens(ids, out_dtype=dtype)
        cos, sin = rotary_cos_sin(torch.arange(ids.shape[1], device=ids.device), cfg.head_dim, cfg.rope_theta,
                                  x.dtype)
        stop = len(self.model.layers) if hidden_layer is None else hidden_layer % len(self.model.layers)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin)
            if i == stop:
                return x
        return self.model.norm(x)


class Qwen3Encoder(nn.Module):
    """The text encoder module of recipe ``qwen3_4b``: tokens -> (hidden [1, T, C], None)."""

    def __init__(self, cfg: Qwen3Config, hidden_layer: int = HIDDEN_LAYER):
        super().__init__()
        self.transformer = Qwen3TextModel(cfg)
        self.hidden_layer = hidden_layer
        self.compute_dtype: torch.dtype | None = None   # set when the weights are stored in fp8

    def encode_token_weights(self, token_weight_pairs: list[list[tuple]]) -> tuple[torch.Tensor, None]:
        ids = [pair[0] for chunk in token_weight_pairs for pair in chunk]
        weight = self.transformer.model.embed_tokens.weight
        dtype = self.compute_dtype or weight.dtype
        hidden = self.transformer(torch.tensor([ids], dtype=torch.long, device=weight.device), dtype=dtype,
                                  hidden_layer=self.hidden_layer)
        return hidden.float().to(memory.intermediate_device()), None


class Qwen3ChatTokenizer:
    """Prompt -> one chunk of (token, 1.0) pairs of the chat-templated prompt (weights are not
    parsed, as upstream's Z-Image tokenizer)."""

    def __init__(self, template: str = CHAT_TEMPLATE):
        self.template = template
        self.bpe = shared_tokenizer()

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> list[list[tuple]]:
        ids = self.bpe.encode(self.template.format(text))
        return [[(i, 1.0, 0) if return_word_ids else (i, 1.0) for i in ids]]


# --------------------------------------------------------------------- recipe functions
def from_file(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A standalone Qwen3 file (transformers layout, with or without ComfyUI's ``transformer.``
    prefix) in the encoder's native layout; None if the file is not a Qwen3 decoder. The
    language-model head (tied to the embedding in Qwen3-4B) is not used for encoding."""
    if _PROBE in sd:
        return {"transformer." + k: v for k, v in sd.items() if k.startswith("model.")}
    if "transformer." + _PROBE in sd:
        return {k: v for k, v in sd.items() if k.startswith("transformer.model.")}
    return None


def detect(sd: Mapping[str, torch.Tensor], prefix: str) -> Qwen3Config | None:
    return config_from_state_dict(sd, prefix + "transformer.")


def build(config: Qwen3Config, options: Mapping[str, Any]) -> Qwen3Encoder:
    return Qwen3Encoder(config, hidden_layer=options.get("hidden_layer", HIDDEN_LAYER))


def tokenizer(config: Qwen3Config, options: Mapping[str, Any], embedding_directory: Any = None) -> Qwen3ChatTokenizer:
    return Qwen3ChatTokenizer(options.get("template", CHAT_TEMPLATE))
