"""CLIP byte-level BPE tokenizer and ComfyUI's prompt-weight parsing.

The vocabulary is OpenAI CLIP's (``bpe_simple_vocab_16e6.txt.gz``, shipped as package data
from open_clip, MIT licence): 49408 tokens, ``<|startoftext|>`` = 49406,
``<|endoftext|>`` = 49407. Text normalisation follows transformers' ``CLIPTokenizer``
without ftfy (what a stock ComfyUI install uses): control characters dropped, whitespace
collapsed, NFC, lower case.

Prompt syntax (exactly ComfyUI's): ``(text)`` multiplies the weight by 1.1, ``(text:1.3)``
sets it, nesting multiplies, ``\\(`` and ``\\)`` are literal parentheses; square brackets
are plain text (ComfyUI does not down-weight them); ``embedding:name`` inserts the
vectors of a textual-inversion file from ``models/embeddings``.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
import re
import unicodedata
from importlib import resources
from typing import Any, Callable

import torch

try:
    import regex as _regex
except ImportError:  # pragma: no cover - regex ships with transformers; fall back to re
    _regex = None

log = logging.getLogger(__name__)

START_TOKEN = 49406
END_TOKEN = 49407


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


@functools.lru_cache(maxsize=1)
def _load_vocab() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    data = resources.files("comfyui.data").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {v: i for i, v in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}


def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The encoder dict and ordered merge list (e.g. to build a transformers tokenizer)."""
    enc, ranks = _load_vocab()
    return dict(enc), [m for m, _ in sorted(ranks.items(), key=lambda kv: kv[1])]


class CLIPBPETokenizer:
    """Byte-level BPE as in CLIP. ``encode(text)`` gives ids without start/end tokens."""

    def __init__(self):
        self.encoder, self.bpe_ranks = _load_vocab()
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.cache: dict[str, str] = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        pat = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
        if _regex is not None:
            self.pat = _regex.compile(pat, _regex.IGNORECASE)
        else:
            self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+""",
                                  re.IGNORECASE)

    def bpe(self, token: str) -> str:
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        out = " ".join(word)
        if len(self.cache) < 100000:
            self.cache[token] = out
        return out

    @staticmethod
    def normalize(text: str) -> str:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            if ch in ("\t", "\n", "\r") or unicodedata.category(ch) == "Zs":
                chars.append(" ")
                continue
            if unicodedata.category(ch).startswith("C"):
                continue
            if _is_cjk(cp):
                chars.append(f" {ch} ")
                continue
            chars.append(ch)
        text = unicodedata.normalize("NFC", "".join(chars))
        return " ".join(text.split()).lower()

    def encode(self, text: str) -> list[int]:
        text = self.normalize(text)
        ids: list[int] = []
        for tok in self.pat.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(tok).split(" "))
        return ids

    def __call__(self, text: str) -> dict[str, list[int]]:
        """transformers-like: ``{"input_ids": [start, ..., end]}``."""
        return {"input_ids": [START_TOKEN] + self.encode(text) + [END_TOKEN]}

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ").strip()


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


@functools.lru_cache(maxsize=1)
def shared_bpe() -> CLIPBPETokenizer:
    return CLIPBPETokenizer()


# ------------------------------------------------------------------------- weights syntax
def parse_parentheses(string: str) -> list[str]:
    result = []
    current = ""
    level = 0
    for ch in string:
        if ch == "(":
            if level == 0:
                if current:
                    result.append(current)
                current = "("
            else:
                current += ch
            level += 1
        elif ch == ")":
            level -= 1
            if level == 0:
                result.append(current + ")")
                current = ""
            else:
                current += ch
        else:
            current += ch
    if current:
        result.append(current)
    return result


def token_weights(string: str, current_weight: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for x in parse_parentheses(string):
        weight = current_weight
        if len(x) >= 2 and x[-1] == ")" and x[0] == "(":
            x = x[1:-1]
            colon = x.rfind(":")
            weight *= 1.1
            if colon > 0:
                try:
                    weight = float(x[colon + 1:])
                    x = x[:colon]
                except ValueError:
                    pass
            out += token_weights(x, weight)
        else:
            out.append((x, current_weight))
    return out


def escape_important(text: str) -> str:
    return text.replace("\\)", "\0\1").replace("\\(", "\0\2")


def unescape_important(text: str) -> str:
    return text.replace("\0\1", ")").replace("\0\2", "(")


# ---------------------------------------------------------------------- textual inversion
def load_embed(name: str, embedding_directory: str | list[str] | None, embedding_size: int,
               embed_key: str | None = None) -> torch.Tensor | None:
    """Find and load ``name`` (with or without extension) from the embeddings folders.
    Returns [n_vectors, embedding_size] or None when missing / of another width."""
    if embedding_directory is None:
        return None
    dirs = [embedding_directory] if isinstance(embedding_directory, str) else list(embedding_directory)
    path = None
    for d in dirs:
        root = os.path.realpath(d)
        candidate = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, candidate]) != root:
            continue
        for ext in ("", ".safetensors", ".pt", ".bin"):
            if os.path.isfile(candidate + ext):
                path = candidate + ext
                break
        if path:
            break
    if path is None:
        return None
    from ...loading import load_torch_file
    try:
        if path.lower().endswith(".safetensors"):
            data: Any = load_torch_file(path, safe_load=True)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report and ignore a broken embedding
        log.warning("could not load embedding %s: %s", path, exc)
        return None
    out = None
    if isinstance(data, dict) and "string_to_param" in data:
        out = next(iter(data["string_to_param"].values()))
    elif isinstance(data, list):
        parts = []
        for x in data:
            for t in x.get("string_to_param", {}).values():
                if t.shape[-1] == embedding_size:
                    parts.append(t.reshape(-1, t.shape[-1]))
        out = torch.cat(parts) if parts else None
    elif isinstance(data, dict) and embed_key is not None and embed_key in data:
        out = data[embed_key]
    elif isinstance(data, dict) and data:
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        fitting = [t for t in tensors if t.shape[-1] == embedding_size]
        out = (fitting or tensors or [None])[0]
    if out is None or out.shape[-1] != embedding_size:
        return None
    return out.reshape(-1, embedding_size).float()


# ------------------------------------------------------------------------- SD tokenizer
Token = Any  # int token id or a 1-D embedding tensor


class SDTokenizer:
    """Tokenizes a prompt into 77-token batches of ``(token, weight)`` pairs (ComfyUI's
    ``SDTokenizer.tokenize_with_weights``)."""

    def __init__(self, max_length: int = 77, pad_with_end: bool = True, embedding_directory: Any = None,
                 embedding_size: int = 768, embedding_key: str = "clip_l", pad_to_max_length: bool = True,
                 min_length: int | None = None, bpe: Callable[[str], dict] | None = None):
        self.tokenizer = bpe or shared_bpe()
        self.max_length = max_length
        self.start_token = START_TOKEN
        self.end_token = END_TOKEN
        self.pad_with_end = pad_with_end
        self.pad_token = END_TOKEN if pad_with_end else 0
        self.pad_to_max_length = pad_to_max_length
        self.min_length = min_length
        self.max_word_length = 8
        self.embedding_identifier = "embedding:"
        self.embedding_directory = embedding_directory
        self.embedding_size = embedding_size
        self.embedding_key = embedding_key

    def _try_get_embedding(self, embedding_name: str) -> tuple[torch.Tensor | None, str]:
        parts = embedding_name.split()
        if not parts:
            return None, ""
        embedding_name = parts[0]
        leftover = " ".join(parts[1:])
        embed = load_embed(embedding_name, self.embedding_directory, self.embedding_size, self.embedding_key)
        if embed is None:
            stripped = embedding_name.strip(",")
            if len(stripped) < len(embedding_name):
                embed = load_embed(stripped, self.embedding_directory, self.embedding_size, self.embedding_key)
                return embed, "{} {}".format(embedding_name[len(stripped):], leftover)
        return embed, leftover

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> list[list[tuple]]:
        text = escape_important(text)
        parsed = token_weights(text, 1.0)
        groups: list[list[tuple[Token, float]]] = []
        for segment, weight in parsed:
            to_tokenize = unescape_important(segment)
            split = re.split(" {0}|\n{0}".format(re.escape(self.embedding_identifier)), to_tokenize)
            words = [split[0]] + [self.embedding_identifier + s for s in split[1:]]
            for word in [w for w in words if w != ""]:
                if word.startswith(self.embedding_identifier) and self.embedding_directory is not None:
                    name = word[len(self.embedding_identifier):].strip("\n")
                    embed, leftover = self._try_get_embedding(name)
                    if embed is None:
                        log.warning("warning, embedding:%s does not exist, ignoring", name)
                    else:
                        groups.append([(embed[i], weight) for i in range(embed.shape[0])])
                    if leftover != "":
                        word = leftover
                    else:
                        continue
                ids = self.tokenizer(word)["input_ids"][1:-1]
                groups.append([(t, weight) for t in ids])

        batched: list[list[tuple]] = []
        batch: list[tuple] = [(self.start_token, 1.0, 0)]
        batched.append(batch)
        limit = self.max_length - 1
        for i, group in enumerate(groups):
            is_large = len(group) >= self.max_word_length
            while group:
                if len(group) + len(batch) > limit:
                    remaining = self.max_length - len(batch) - 1
                    if is_large:
                        batch.extend([(t, w, i + 1) for t, w in group[:remaining]])
                        batch.append((self.end_token, 1.0, 0))
                        group = group[remaining:]
                    else:
                        batch.append((self.end_token, 1.0, 0))
                        if self.pad_to_max_length:
                            batch.extend([(self.pad_token, 1.0, 0)] * remaining)
                    batch = [(self.start_token, 1.0, 0)]
                    batched.append(batch)
                else:
                    batch.extend([(t, w, i + 1) for t, w in group])
                    group = []
        batch.append((self.end_token, 1.0, 0))
        if self.pad_to_max_length:
            batch.extend([(self.pad_token, 1.0, 0)] * (self.max_length - len(batch)))
        if self.min_length is not None and len(batch) < self.min_length:
            batch.extend([(self.pad_token, 1.0, 0)] * (self.min_length - len(batch)))
        if not return_word_ids:
            return [[(t, w) for t, w, _ in b] for b in batched]
        return batched

    def untokenize(self, token_weight_pair: list[tuple]) -> list[tuple]:
        return [(p, self.tokenizer.decoder.get(p[0], "") if isinstance(p[0], int) else "<embedding>")
                for p in token_weight_pair]
