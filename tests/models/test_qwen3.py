"""Qwen3 text encoder (Z-Image's Qwen3-4B) and its shipped BPE vocabulary, against
transformers' ``Qwen3Model`` and ``Qwen2Tokenizer`` on the same weights / the same files."""
from __future__ import annotations

import os

import pytest
import torch

from comfyui.models.text_encoders import qwen3
from comfyui.models.text_encoders.tokenizers import qwen as qwen_tokenizer

from . import lumina2_fixtures as lf

transformers = pytest.importorskip("transformers")

VOCAB_DIR = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "qwen25")

TEXTS = [
    "anime RPG game style, cute anime girl with gigantic fennec ears and a big fluffy fox tail",
    "Hello  world!!\n\n  tabs\there  ", "数字 12345 和中文，汉服、大雁塔", "emoji 🦊🔥 café naïve Å e\u0301",
    "don't I'LL we'VE", "a<|endoftext|>b<tool_call>x</tool_call>", "   leading", "trailing   ", "\r\n\r\nx",
    "(word:1.2) [b] embedding:foo", "",
]


@pytest.fixture(scope="module")
def reference_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(VOCAB_DIR)


def test_tokenizer_matches_transformers_on_the_shipped_files(reference_tokenizer):
    ours = qwen_tokenizer.shared_tokenizer()
    for text in TEXTS + [qwen3.CHAT_TEMPLATE.format(t) for t in TEXTS]:
        want = reference_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours.encode(text) == want, text
        assert ours.decode(want) == reference_tokenizer.decode(want)


def test_prompt_goes_into_the_chat_template_without_weight_parsing():
    tok = qwen3.tokenizer(None, {})
    (chunk,) = tok.tokenize_with_weights("a (red:1.5) fox")
    ids = [t for t, _ in chunk]
    bpe = qwen_tokenizer.shared_tokenizer()
    assert ids[0] == 151644 and ids.count(151645) == 1  # <|im_start|> ... <|im_end|>
    assert bpe.decode(ids) == "<|im_start|>user\na (red:1.5) fox<|im_end|>\n<|im_start|>assistant\n"
    assert {w for _, w in chunk} == {1.0}


@pytest.fixture(scope="module")
def tiny_qwen3():
    return lf.hf_qwen3(seed=3)


def test_encoder_matches_transformers_qwen3model(tiny_qwen3):
    native = qwen3.from_file(lf.qwen3_file_sd(tiny_qwen3))
    config = qwen3.detect(native, "")
    assert (config.hidden_size, config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim,
            config.intermediate_size) == (64, 3, 4, 2, 32, 96)
    encoder = qwen3.build(config, {}).eval()
    encoder.load_state_dict(native, strict=True)
    pairs = qwen3.tokenizer(config, {}).tokenize_with_weights("a cute fox playing guitar by a campfire")
    ids = torch.tensor([[t for t, _ in pairs[0]]])
    with torch.no_grad():
        ref = tiny_qwen3(input_ids=ids, output_hidden_states=True)
        hidden, pooled = encoder.encode_token_weights(pairs)
        final = encoder.transformer(ids)
    assert pooled is None
    # upstream's (and diffusers' Z-Image pipeline's) conditioning: the second-to-last hidden state
    torch.testing.assert_close(hidden, ref.hidden_states[-2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(hidden, ref.hidden_states[-1], atol=1e-3)
    torch.testing.assert_close(final, ref.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_detect_gives_qwen3_4b_config_on_the_real_layout():
    from transformers import Qwen3Config, Qwen3Model
    with torch.device("meta"):
        real = Qwen3Model(Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                                      num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                                      head_dim=128))
    native = qwen3.from_file({"model." + k: v for k, v in real.state_dict().items()} | {"lm_head.weight": None})
    assert "lm_head.weight" not in native and "transformer.model.norm.weight" in native
    assert qwen3.detect(native, "") == qwen3.Qwen3Config(
        vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_layers=36, num_heads=32, num_kv_heads=8,
        head_dim=128, rope_theta=1e6, rms_norm_eps=1e-6)


def test_from_file_refuses_decoders_without_qk_norm():
    from transformers import Qwen2Config, Qwen2Model
    with torch.device("meta"):
        qwen2 = Qwen2Model(Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1))
    assert qwen3.from_file({"model." + k: v for k, v in qwen2.state_dict().items()}) is None


def test_cliploader_lumina2_encodes_the_chat_templated_prompt(tiny_qwen3, tmp_path):
    """CLIPLoader(type="lumina2") on a qwen_3_4b-layout file: the conditioning is Qwen3's
    second-to-last hidden state of the chat-templated prompt, without a pooled output."""
    from safetensors.torch import save_file

    from comfyui.models import memory
    from comfyui.models import sd as sdm
    path = tmp_path / "qwen_3_4b.safetensors"
    save_file(lf.qwen3_file_sd(tiny_qwen3), str(path))
    memory.configure(None, cpu=True)
    try:
        clip = sdm.load_clip([str(path)], clip_type="lumina2")
        ((cond, extra),) = clip.encode_from_tokens_scheduled(clip.tokenize("a fox by a campfire"))
    finally:
        memory.configure(None)
    ids = qwen_tokenizer.shared_tokenizer().encode(qwen3.CHAT_TEMPLATE.format("a fox by a campfire"))
    with torch.no_grad():
        want = tiny_qwen3(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-2]
    assert "pooled_output" not in extra
    torch.testing.assert_close(cond, want, atol=1e-5, rtol=1e-5)


def test_cliploader_accepts_type_lumina2_at_validation():
    from comfyui.nodes.builtin.loaders import CLIPLoader
    assert CLIPLoader.VALIDATE_INPUTS(type="lumina2") is True
