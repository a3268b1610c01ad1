"""The Qwen2 / Qwen3 byte-level BPE tokenizer (what transformers' ``Qwen2Tokenizer`` does) on
the vocabulary shipped in ``qwen25/`` (Apache-2.0, see the README there).

Encoding: the added tokens of ``tokenizer_config.json`` (``<|im_start|>``, ``<|endoftext|>`` ...)
are cut out of the raw text first and map to their ids; every other span is NFC-normalised,
split by Qwen2's pre-tokenizer pattern, mapped byte by byte to GPT-2's printable alphabet and
merged by rank. No start or end token is added.
"""
from __future__ import annotations

import functools
import json
import unicodedata
from importlib import resources

import regex

from .clip import bytes_to_unicode

# Qwen2's pre-tokenizer: contractions, letters with one leading non-letter, single digits,
# punctuation runs, newlines, and whitespace (the last space of a run joins the next word)
PRETOKENIZE = regex.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@functools.lru_cache(maxsize=1)
def _load_vocabulary() -> tuple[dict[str, int], dict[tuple[str, str], int], dict[str, int]]:
    """(token -> id, merge pair -> rank, added token text -> id) from the shipped files."""
    files = resources.files(f"{__package__}.qwen25")
    vocab = json.loads(files.joinpath("vocab.json").read_text(encoding="utf-8"))
    ranks: dict[tuple[str, str], int] = {}
    for line in files.joinpath("merges.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("#version") or not line:
            continue
        first, second = line.split(" ")
        ranks[(first, second)] = len(ranks)
    config = json.loads(files.joinpath("tokenizer_config.json").read_text(encoding="utf-8"))
    added = {entry["content"]: int(i) for i, entry in config["added_tokens_decoder"].items()}
    return vocab, ranks, added


class QwenBPETokenizer:
    """``encode(text) -> ids`` and ``decode(ids) -> text`` with Qwen2's vocabulary."""

    def __init__(self):
        self.vocab, self.ranks, self.added = _load_vocabulary()
        self.id_to_token = {i: t for t, i in self.vocab.items()} | {i: t for t, i in self.added.items()}
        self.added_ids = set(self.added.values())
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        # longest first, so that no added token is cut short by another that is its prefix
        names = sorted(self.added, key=len, reverse=True)
        self.added_pattern = regex.compile("|".join(regex.escape(n) for n in names))
        self.cache: dict[str, tuple[str, ...]] = {}

    def token_id(self, token: str) -> int:
        return self.added[token] if token in self.added else self.vocab[token]

    def bpe(self, piece: str) -> tuple[str, ...]:
        cached = self.cache.get(piece)
        if cached is not None:
            return cached
        word = tuple(piece)
        while len(word) > 1:
            ranked = [(self.ranks.get(pair, -1), i) for i, pair in enumerate(zip(word, word[1:]))]
            ranked = [(r, i) for r, i in ranked if r >= 0]
            if not ranked:
                break
            best = min(ranked)[0]
            first, second = next(pair for pair in zip(word, word[1:]) if self.ranks.get(pair) == best)
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        if len(self.cache) < 100_000:
            self.cache[piece] = word
        return word

    def _encode_plain(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in PRETOKENIZE.findall(unicodedata.normalize("NFC", text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(mapped))
        return ids

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0
        for match in self.added_pattern.finditer(text):
            ids += self._encode_plain(text[start:match.start()])
            ids.append(self.added[match.group()])
            start = match.end()
        return ids + self._encode_plain(text[start:])

    def decode(self, ids: list[int]) -> str:
        out = bytearray()
        for i in ids:
            token = self.id_to_token[i]
            if i in self.added_ids:
                out += token.encode("utf-8")
            else:
                out += bytes(self.byte_decoder[c] for c in token)
        return out.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=1)
def shared_tokenizer() -> QwenBPETokenizer:
    """One tokenizer per process (loading the vocabulary takes a few hundred ms)."""
    return QwenBPETokenizer()
