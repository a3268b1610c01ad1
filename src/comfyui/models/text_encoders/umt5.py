"""UMT5-XXL (Wan's text encoder): the T5 v1.1 encoder of :mod:`.t5` with a relative position
bias in every block, and the SentencePiece tokenizer that the file itself carries as the uint8
tensor ``spiece_model`` (the serialised model; read with the ``sentencepiece`` package).

As upstream ComfyUI encodes for Wan: no start token, ``</s>`` (1) after the prompt, padding
with ``<pad>`` (0) to at least 512 tokens (longer prompts stay one chunk); the attention mask
covers the prompt and its ``</s>``, and the hidden states of the padded positions are zeroed.
The module keeps ``spiece_model`` as a buffer, so the CLIP's state dict (CLIPSave) carries the
tokenizer as the file did.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import t5
from .tokenizers.clip import escape_important, token_weights, unescape_important
from .weighting import encode_with_weights

PAD_TOKEN, END_TOKEN = t5.PAD_TOKEN, t5.END_TOKEN
MIN_LENGTH = 512
TOKENIZER_KEY = "spiece_model"


@dataclass(frozen=True)
class UMT5Config:
    t5: t5.T5Config
    spiece_model: bytes = field(repr=False, default=b"")


def from_file(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A standalone UMT5 file (T5 keys with ``relative_attention_bias`` in block 1 too, the
    tokenizer as ``spiece_model``) in the recipe's native keys, or None."""
    weights = {k: v for k, v in sd.items() if k != TOKENIZER_KEY}
    native = t5.t5_from_file(weights)
    if native is None or "transformer.encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" not in native:
        return None
    if TOKENIZER_KEY in sd:
        native[TOKENIZER_KEY] = sd[TOKENIZER_KEY]
    return native


def detect(sd: Mapping[str, torch.Tensor], prefix: str = "") -> UMT5Config | None:
    cfg = t5.detect(sd, prefix + "transformer.")
    if cfg is None or not cfg.bias_per_layer:
        return None
    spiece = sd.get(prefix + TOKENIZER_KEY)
    if spiece is None:
        raise ValueError("this UMT5 text encoder file has no SentencePiece tokenizer (the 'spiece_model' "
                         "tensor that ComfyUI's umt5 files carry)")
    return UMT5Config(cfg, spiece.to("cpu", torch.uint8).numpy().tobytes())


@functools.lru_cache(maxsize=4)
def _processor(proto: bytes) -> Any:
    import sentencepiece
    return sentencepiece.SentencePieceProcessor(model_proto=proto, add_bos=False, add_eos=False)


class UMT5Tokenizer:
    """The prompt's weighted segments tokenized one by one, ``</s>`` after the last, padding
    with ``<pad>`` up to ``min_length``; one chunk."""

    def __init__(self, spiece_model: bytes, min_length: int = MIN_LENGTH):
        self.tokenizer = _processor(spiece_model)
        self.min_length = min_length

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> list[list[tuple]]:
        chunk: list[tuple] = []
        for word_id, (segment, weight) in enumerate(token_weights(escape_important(text), 1.0), start=1):
            segment = unescape_important(segment)
            if segment:
                chunk.extend((t, weight, word_id) for t in self.tokenizer.encode(segment))
        chunk.append((END_TOKEN, 1.0, 0))
        chunk.extend([(PAD_TOKEN, 1.0, 0)] * (self.min_length - len(chunk)))
        if return_word_ids:
            return [chunk]
        return [[(t, w) for t, w, _ in chunk]]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def attention_mask(ids: torch.Tensor) -> torch.Tensor:
    """1 up to and including each row's first ``</s>``, 0 after it (upstream's mask)."""
    is_end = (ids == END_TOKEN).long()
    after = torch.cumsum(is_end, dim=1) - is_end  # ends seen strictly before this position
    return (after == 0).long()


class UMT5TextEncoder(nn.Module):
    """UMT5 as a CLIP-socket text encoder: ``encode_token_weights`` gives the last hidden
    states [1, T, d_model] (T >= 512) with the padded positions zeroed; no pooled output."""

    def __init__(self, cfg: UMT5Config, device: Any = None):
        super().__init__()
        self.transformer = t5.T5Encoder(cfg.t5, device=device)
        self.register_buffer(TOKENIZER_KEY, torch.empty(len(cfg.spiece_model), dtype=torch.uint8, device=device))
        self.compute_dtype: torch.dtype | None = None

    def encode(self, tokens: list[list[Any]]) -> tuple[torch.Tensor, None]:
        shared = self.transformer.shared
        ids = torch.tensor([[t if isinstance(t, int) else PAD_TOKEN for t in seq] for seq in tokens],
                           dtype=torch.long, device=shared.weight.device)
        dtype = self.compute_dtype or self.transformer.encoder.final_layer_norm.weight.dtype
        embeds = shared(ids, out_dtype=dtype)
        if shared.weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            embeds = torch.nan_to_num(embeds)
        mask = attention_mask(ids)
        hidden, _ = self.transformer(embeds, attention_mask=mask)
        return hidden.float() * mask[..., None].to(hidden.device, torch.float32), None

    @staticmethod
    def empty_tokens(length: int) -> list[int]:
        return [END_TOKEN] + [PAD_TOKEN] * (length - 1)

    def encode_token_weights(self, token_weight_pairs: list[list[tuple]]) -> tuple[torch.Tensor, None]:
        return encode_with_weights(self.encode, self.empty_tokens, token_weight_pairs)


def build(cfg: UMT5Config, options: Mapping[str, Any]) -> UMT5TextEncoder:
    return UMT5TextEncoder(cfg)


def tokenizer(cfg: UMT5Config, options: Mapping[str, Any], embedding_directory: Any = None) -> UMT5Tokenizer:
    return UMT5Tokenizer(cfg.spiece_model, min_length=options.get("min_length", MIN_LENGTH))
