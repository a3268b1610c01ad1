"""T5-XXL (v1.1) text encoder: the network against transformers' T5EncoderModel on the same
tiny random weights, the shipped tokenizer against transformers' T5TokenizerFast, ComfyUI's
T5 tokenization rules, and the Flux text-encoder pair (DualCLIPLoader type flux)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from . import fixtures
from . import flux_fixtures as fx

pytest.importorskip("transformers")

from comfyui.models import memory  # noqa: E402
from comfyui.models import sd as sdm  # noqa: E402
from comfyui.models.text_encoders import t5  # noqa: E402


@pytest.fixture(autouse=True)
def _cpu_fp32():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _ours(hf) -> t5.T5Encoder:
    sd = fx.t5_sd(hf)
    model = t5.T5Encoder(t5.detect(sd)).eval()
    model.load_state_dict(sd, strict=True)
    return model


def test_encoder_matches_transformers():
    hf = fx.hf_t5(seed=1)
    ours = _ours(hf)
    ids = torch.randint(0, 32128, (2, 300), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 300, dtype=torch.long)
    mask[1, 180:] = 0
    with torch.no_grad():
        # 300 tokens: relative distances beyond max_distance 128 use the last log bucket
        torch.testing.assert_close(ours(ours.shared(ids))[0], hf(input_ids=ids).last_hidden_state,
                                   atol=2e-5, rtol=1e-5)
        masked = ours(ours.shared(ids), attention_mask=mask)[0]
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(masked[0], ref[0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(masked[1, :180], ref[1, :180], atol=2e-5, rtol=1e-5)


def test_fp16_stays_finite_where_activations_overflow():
    """T5-XXL's feed-forward outputs exceed the float16 range; the residual stream is clamped."""
    hf = fx.hf_t5(seed=2)
    sd = fx.t5_sd(hf)
    sd["encoder.block.0.layer.1.DenseReluDense.wo.weight"] = sd["encoder.block.0.layer.1.DenseReluDense.wo.weight"] * 3e4
    model = t5.T5Encoder(t5.detect(sd)).half().eval()
    model.load_state_dict(sd)
    with torch.no_grad():
        out, _ = model(model.shared(torch.arange(40)[None]))
    assert torch.isfinite(out).all()


def test_detection_reads_the_xxl_config_from_shapes():
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                   feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        shapes = {k: v for k, v in T5EncoderModel(cfg).state_dict().items()}
    got = t5.detect(shapes)
    assert (got.d_model, got.d_ff, got.num_layers, got.num_heads, got.vocab_size, got.gated) == \
        (4096, 10240, 24, 64, 32128, True)
    assert t5.detect({"text_model.embeddings.token_embedding.weight": torch.empty(1, 1)}) is None


def test_tokenizer_matches_transformers_and_comfyui_rules():
    from transformers import T5TokenizerFast
    reference = T5TokenizerFast(tokenizer_file=str(t5.VOCABULARY))
    tok = t5.T5Tokenizer(min_length=256)
    text = "A photo of an astronaut riding a horse on Mars, 4k, high detail"
    (chunk,) = tok.tokenize_with_weights(text)
    ids = [t for t, _ in chunk]
    expect = reference(text).input_ids  # ends with </s> (1), no start token
    assert ids[:len(expect)] == expect and expect[-1] == 1
    assert len(ids) == 256 and set(ids[len(expect):]) == {0}
    # weights per segment; a long prompt is one chunk longer than the minimum, never split
    weighted = tok.tokenize_with_weights("a (red:1.5) cat")[0]
    assert [w for _, w in weighted[:4]] == [1.0, 1.0, 1.5, 1.0]
    long = tok.tokenize_with_weights("word " * 400)
    assert len(long) == 1 and len(long[0]) == 401 and long[0][-1][0] == 1


def test_flux_text_encoders_match_references(tmp_path):
    """DualCLIPLoader type flux: a CLIP-L file and a T5 file -> the T5 last hidden states of
    the prompt padded to 256 tokens, and CLIP-L's unprojected pooled output."""
    hf_t5 = fx.hf_t5(seed=3)
    hf_l = fixtures.hf_text_model(64, 2, None, "quick_gelu", seed=4)
    save_file(fx.t5_sd(hf_t5), str(tmp_path / "t5xxl_fp16.safetensors"))
    save_file(fixtures.hf_text_sd(hf_l), str(tmp_path / "clip_l.safetensors"))
    clip = sdm.load_clip([str(tmp_path / "t5xxl_fp16.safetensors"), str(tmp_path / "clip_l.safetensors")],
                         clip_type="flux")
    tokens = clip.tokenize("a cat on a mat")
    assert set(tokens) == {"l", "t5xxl"} and len(tokens["t5xxl"][0]) == 256
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    t5_ids = torch.tensor([[t for t, _ in tokens["t5xxl"][0]]])
    l_ids = torch.tensor([[t for t, _ in tokens["l"][0]]])
    with torch.no_grad():
        torch.testing.assert_close(cond, hf_t5(input_ids=t5_ids).last_hidden_state, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(pooled, hf_l(input_ids=l_ids).pooler_output, atol=2e-5, rtol=1e-5)
    assert cond.shape == (1, 256, 64) and pooled.shape == (1, 64)
    (entry,) = clip.encode_from_tokens_scheduled(tokens)
    assert entry[1]["pooled_output"].shape == (1, 64)


def test_flux_type_needs_both_encoders(tmp_path):
    save_file(fx.t5_sd(fx.hf_t5(seed=5)), str(tmp_path / "t5.safetensors"))
    with pytest.raises(sdm.UnknownModelError, match="clip_l"):
        sdm.load_clip([str(tmp_path / "t5.safetensors")], clip_type="flux")
