"""CLIP BPE tokenizer and ComfyUI prompt-weight parsing."""
from __future__ import annotations

import json

import pytest
import torch

from comfyui.models.text_encoders.tokenizers.clip import (END_TOKEN, START_TOKEN, SDTokenizer, shared_bpe, token_weights,
                                      vocab_and_merges)

from . import fixtures as fx

TEXTS = [
    "a photo of an astronaut riding a horse on mars",
    "Hello, World!! 1234 tokens... don't stop-believing",
    "masterpiece, best quality, 1girl, (ultra-detailed:1.2), 8k uhd",
    "Crème brûlée — naïve café   spaces\tand\nnewlines",
    "emoji 🐱🚀 and symbols ©®±",
    "",
]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("tok")
    vocab, merges = vocab_and_merges()
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return transformers.CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))


def test_vocab_shape():
    vocab, merges = vocab_and_merges()
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == START_TOKEN and vocab["<|endoftext|>"] == END_TOKEN
    assert len(merges) == 48894


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_matches_transformers(hf_tokenizer, text):
    assert shared_bpe()(text)["input_ids"] == hf_tokenizer(text)["input_ids"]


def test_known_ids():
    # ids of the public CLIP vocabulary
    assert shared_bpe().encode("a photo of a cat") == [320, 1125, 539, 320, 2368]


def test_weight_syntax():
    assert token_weights("a (b) c", 1.0) == [("a ", 1.0), ("b", pytest.approx(1.1)), (" c", 1.0)]
    out = token_weights("((x))", 1.0)
    assert out[0][0] == "x" and out[0][1] == pytest.approx(1.21)
    assert token_weights("(x:1.5)", 1.0) == [("x", 1.5)]
    # an explicit weight replaces (does not multiply) the outer weight
    assert token_weights("((x:0.5))", 1.0) == [("x", 0.5)]
    # a colon without a number is text
    assert token_weights("(a:b)", 1.0) == [("a:b", pytest.approx(1.1))]
    # square brackets are plain text in ComfyUI
    assert token_weights("[x]", 1.0) == [("[x]", 1.0)]


def test_tokenize_with_weights_escapes_and_padding():
    tok = SDTokenizer()
    out = tok.tokenize_with_weights("a \\(cat\\) (dog:1.3)")
    assert len(out) == 1 and len(out[0]) == 77
    ids = [t for t, _ in out[0]]
    weights = [w for _, w in out[0]]
    bpe = shared_bpe()
    assert ids[0] == START_TOKEN
    expect = bpe.encode("a (cat) ") + bpe.encode("dog")
    assert ids[1:1 + len(expect)] == expect
    assert weights[1:1 + len(expect) - 1] == [1.0] * (len(expect) - 1)
    assert weights[len(expect)] == 1.3
    assert ids[len(expect) + 1] == END_TOKEN and all(t == END_TOKEN for t in ids[len(expect) + 1:])
    # open_clip style (SD2 / SDXL-G) pads with 0
    out0 = SDTokenizer(pad_with_end=False).tokenize_with_weights("cat")
    assert [t for t, _ in out0[0]][3:] == [0] * 74


def test_chunking_past_77_tokens():
    tok = SDTokenizer()
    text = ", ".join(["red apple"] * 40)  # 120 tokens
    out = tok.tokenize_with_weights(text)
    assert len(out) == 2
    for chunk in out:
        assert len(chunk) == 77 and chunk[0][0] == START_TOKEN
        assert END_TOKEN in [t for t, _ in chunk]
    flat = [t for c in out for t, _ in c if t not in (START_TOKEN, END_TOKEN)]
    assert flat == shared_bpe().encode(text)
    # a short word never straddles two chunks: the first chunk ends with end + padding
    first = [t for t, _ in out[0]]
    assert first[-1] == END_TOKEN


def test_textual_inversion_pt_and_safetensors(tmp_path):
    vec_pt = torch.randn(3, 32)
    vec_st = torch.randn(2, 32)
    fx.make_embedding(str(tmp_path / "emb_pt.pt"), vec_pt)
    fx.make_embedding(str(tmp_path / "emb_st.safetensors"), vec_st)
    tok = SDTokenizer(embedding_directory=str(tmp_path), embedding_size=32)
    out = tok.tokenize_with_weights("cat embedding:emb_pt, (embedding:emb_st:1.2) dog")[0]
    tensors = [(t, w) for t, w in out if isinstance(t, torch.Tensor)]
    assert len(tensors) == 5
    torch.testing.assert_close(torch.stack([t for t, _ in tensors[:3]]), vec_pt)
    torch.testing.assert_close(torch.stack([t for t, _ in tensors[3:]]), vec_st)
    assert [w for _, w in tensors] == [1.0, 1.0, 1.0, 1.2, 1.2]
    ints = [t for t, _ in out if not isinstance(t, torch.Tensor)]
    bpe = shared_bpe()
    assert ints[1] == bpe.encode("cat")[0]
    assert bpe.encode(",")[0] in ints  # the leftover "," after the embedding name is kept
    # missing embeddings are ignored, the rest of the prompt survives
    out2 = tok.tokenize_with_weights("embedding:nope cat")[0]
    assert not any(isinstance(t, torch.Tensor) for t, _ in out2)
    assert bpe.encode("cat")[0] in [t for t, _ in out2]
    # names cannot escape the embeddings folder
    assert not any(isinstance(t, torch.Tensor) for t, _ in tok.tokenize_with_weights("embedding:../emb_pt")[0])
