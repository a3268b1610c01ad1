"""ComfyUI's prompt weighting, shared by every text encoder.

A prompt is tokenized into chunks of (token, weight) pairs. Each chunk is encoded; a token
whose weight is not 1 becomes ``(z - z_empty) * w + z_empty``, where ``z_empty`` is the
encoding of an empty prompt of the same length; the chunks are concatenated along the
sequence and the pooled output is the first chunk's.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .. import memory


def encode_with_weights(encode: Callable[[list[list[Any]]], tuple[torch.Tensor, torch.Tensor | None]],
                        empty_tokens: Callable[[int], list[int]],
                        token_weight_pairs: list[list[tuple]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``encode(batch of token lists) -> (hidden [B,T,C], pooled [B,C] | None)``;
    ``empty_tokens(length)``: the token list of an empty prompt. Returns (hidden [1,T*n,C],
    pooled [1,C] | None) on the intermediate device."""
    to_encode = []
    max_len = 0
    has_weights = False
    for chunk in token_weight_pairs:
        toks = [pair[0] for pair in chunk]
        max_len = max(len(toks), max_len)
        has_weights = has_weights or not all(pair[1] == 1.0 for pair in chunk)
        to_encode.append(toks)
    sections = len(to_encode)
    if has_weights or sections == 0:
        to_encode.append(empty_tokens(max_len))
    out, pooled = encode(to_encode)
    device = memory.intermediate_device()
    first_pooled = pooled[0:1].to(device) if pooled is not None else None
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
        return out[-1:].to(device), first_pooled
    return torch.cat(output, dim=-2).to(device), first_pooled
