"""UMT5 (Wan's text encoder) through CLIPLoader's loader with type ``wan``: a SentencePiece model
trained at test time and embedded as the file's ``spiece_model`` tensor is the tokenizer;
the encoder against transformers' UMT5EncoderModel on the same tiny random weights; the
512-token padding with the padded positions zeroed (upstream's Wan conditioning)."""
from __future__ import annotations

import pytest
import torch

from . import wan_fixtures as fx

pytest.importorskip("sentencepiece")
pytest.importorskip("transformers")

_threads = pytest.fixture(scope="module", autouse=True)(fx.one_thread)


@pytest.fixture(scope="module")
def umt5_file(tmp_path_factory):
    from safetensors.torch import save_file
    proto = fx.spiece_model()
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_proto=proto)
    hf = fx.hf_umt5(seed=1, vocab=sp.get_piece_size())
    path = tmp_path_factory.mktemp("te") / "umt5_xxl_tiny.safetensors"
    save_file(fx.umt5_file_sd(hf, proto), str(path))
    return str(path), hf, sp


def test_tokens_are_the_files_sentencepiece_padded_to_512(umt5_file):
    from comfyui.models import sd as loaders
    path, _, sp = umt5_file
    clip = loaders.load_clip([path], clip_type="wan")
    tokens = clip.tokenize("a cat walks (across the street:1.2)")
    (chunk,) = tokens["umt5xxl"]
    ids = [t for t, _ in chunk]
    expected = sp.encode("a cat walks ") + sp.encode("across the street")
    assert ids[:len(expected)] == expected and ids[len(expected)] == 1
    assert len(ids) == 512 and set(ids[len(expected) + 1:]) == {0}
    assert [w for _, w in chunk][len(sp.encode("a cat walks "))] == pytest.approx(1.2)
    long = clip.tokenize(" ".join(fx.CORPUS * 12))["umt5xxl"]
    assert len(long) == 1 and len(long[0]) > 512 and long[0][-1][0] == 1  # one chunk, not truncated


def test_matches_transformers_with_masked_positions_zeroed(umt5_file):
    from comfyui.models import sd as loaders
    path, hf, sp = umt5_file
    clip = loaders.load_clip([path], clip_type="wan")
    cond = clip.encode_from_tokens(clip.tokenize("two dogs play in the snow"))
    n = len(sp.encode("two dogs play in the snow")) + 1
    assert cond.shape == (1, 512, 32)
    ids = torch.tensor([sp.encode("two dogs play in the snow") + [1] + [0] * (512 - n)])
    mask = (torch.arange(512) < n).long()[None]
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        unmasked = hf(input_ids=ids).last_hidden_state
    assert (cond[0, :n] - ref[0, :n]).abs().max() < 1e-4 * max(1.0, ref.abs().max().item())
    assert torch.count_nonzero(cond[0, n:]) == 0
    assert (cond[0, :n] - unmasked[0, :n]).abs().max() > 1e-3  # the mask matters


def test_state_dict_carries_the_tokenizer(umt5_file):
    from comfyui.models import sd as loaders
    path, _, sp = umt5_file
    clip = loaders.load_clip([path], clip_type="wan")
    saved = clip.get_sd()["umt5xxl.spiece_model"]
    assert bytes(saved.numpy().tobytes()) == sp.serialized_model_proto()
    assert clip.family == "wan" or clip.clip_type.name == "wan"


def test_t5xxl_files_are_not_taken_for_umt5():
    from comfyui.models.text_encoders import umt5
    from . import flux_fixtures
    t5_sd = flux_fixtures.t5_sd(flux_fixtures.hf_t5(seed=2, d_model=32, layers=2, vocab=64))
    assert umt5.from_file(t5_sd) is None


def test_scaled_fp8_file_as_the_tutorials_ship_it(tmp_path):
    """umt5_xxl_fp8_e4m3fn_scaled: fp8 weights with per-tensor scales (the tokenizer tensor
    untouched) give transformers' output on the dequantised weights."""
    from safetensors.torch import save_file

    from comfyui.models import sd as loaders

    from .test_weight_dtypes import scaled_fp8
    import sentencepiece as spm
    proto = fx.spiece_model()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    hf = fx.hf_umt5(seed=4, vocab=sp.get_piece_size())
    file_sd = fx.umt5_file_sd(hf, proto)
    spiece = file_sd.pop("spiece_model")
    stored, real = scaled_fp8(file_sd)
    stored["spiece_model"] = spiece
    path = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(stored, str(path))
    hf.load_state_dict({**real, "encoder.embed_tokens.weight": real["shared.weight"]})
    clip = loaders.load_clip([str(path)], clip_type="wan")
    cond = clip.encode_from_tokens(clip.tokenize("waves crash against the rocks"))
    ids = sp.encode("waves crash against the rocks") + [1]
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([ids])).last_hidden_state
    assert (cond[0, :len(ids)] - ref[0]).abs().max() < 1e-3 * max(1.0, ref.abs().max().item())
    assert torch.count_nonzero(cond[0, len(ids):]) == 0
