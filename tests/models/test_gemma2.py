"""Lumina Image 2.0: the Gemma-2-2B text encoder against transformers' ``Gemma2Model`` and the
NextDiT against diffusers' ``Lumina2Transformer2DModel``, on tiny random weights in upstream's
file layouts (``gemma_2_2b_fp16.safetensors``: ``model.*`` + ``spiece_model``; the all-in-one
checkpoint: ``model.diffusion_model.*``, ``text_encoders.gemma2_2b.transformer.*``,
``text_encoders.spiece_model``, ``vae.*``); CLIPLoader type ``lumina2`` choosing Gemma or
Qwen3 by the file, and refusing a Gemma file without its tokenizer at validation."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from comfyui.models import memory
from comfyui.models.lumina2 import detect as lumina_detect
from comfyui.models.lumina2.model import NextDiT
from comfyui.models.text_encoders import gemma2

from . import lumina2_fixtures as lf

pytest.importorskip("transformers")
pytest.importorskip("diffusers")
pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def spiece():
    return lf.spiece_model()


@pytest.fixture(scope="module")
def tiny_gemma():
    return lf.hf_gemma2(seed=3)


@pytest.fixture
def cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def _encoder(model, spiece):
    sd = gemma2.from_file(lf.gemma2_file_sd(model, spiece))
    config = gemma2.detect(sd, "")
    enc = gemma2.build(config, {}).eval()
    enc.load_state_dict({k: v for k, v in sd.items() if k != gemma2.SPIECE_KEY}, strict=True)
    return enc, gemma2.tokenizer(config, {})


def _hf_hidden(model, ids, mask=None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask),
                     output_hidden_states=True).hidden_states[-2]


def test_detect_reads_the_config_from_shapes(tiny_gemma, spiece):
    sd = gemma2.from_file(lf.gemma2_file_sd(tiny_gemma, spiece))
    config = gemma2.detect(sd, "")
    assert (config.vocab_size, config.hidden_size, config.intermediate_size, config.num_layers, config.num_heads,
            config.num_kv_heads, config.head_dim) == (384, 32, 64, 3, 2, 1, 256)
    assert config.spiece_model == spiece


def test_detect_gives_gemma_2_2b_on_the_real_layout():
    from transformers import Gemma2Config, Gemma2Model
    with torch.device("meta"):
        real = Gemma2Model(Gemma2Config(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                        head_dim=256))
    sd = {"model." + k: v for k, v in real.state_dict().items()}
    sd["spiece_model"] = torch.zeros(4, dtype=torch.uint8)
    config = gemma2.detect(gemma2.from_file(sd), "")
    # upstream's Gemma2_2B_Config (comfy/text_encoders/llama.py)
    assert (config.vocab_size, config.hidden_size, config.intermediate_size, config.num_layers, config.num_heads,
            config.num_kv_heads, config.head_dim, config.rope_theta) == (256000, 2304, 9216, 26, 8, 4, 256, 1e4)


@pytest.mark.parametrize("text", ["a photo of a cat", "orange grove, 1024 steps " * 6, "ÿ→ unseen characters"])
def test_encoder_matches_transformers_gemma2model(tiny_gemma, spiece, text):
    enc, tok = _encoder(tiny_gemma, spiece)
    tokens = tok.tokenize_with_weights(text)
    ids = [t for t, _ in tokens[0]]
    with torch.no_grad():
        got, pooled = enc.encode_token_weights(tokens)
    want = _hf_hidden(tiny_gemma, [ids])
    assert pooled is None and want.abs().max() > 1.0
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_weighted_tokens_mix_with_the_masked_empty_prompt(tiny_gemma, spiece):
    """``(cat:1.5)``: those tokens become ``(z - z_empty) * 1.5 + z_empty`` where ``z_empty`` is
    BOS followed by pad tokens that no query attends to (transformers with that attention mask)."""
    enc, tok = _encoder(tiny_gemma, spiece)
    tokens = tok.tokenize_with_weights("a photo of a (cat:1.5) on a chair")
    ids = [t for t, _ in tokens[0]]
    weights = torch.tensor([w for _, w in tokens[0]])
    assert sorted(set(weights.tolist())) == [1.0, 1.5]
    with torch.no_grad():
        got, _ = enc.encode_token_weights(tokens)
    z = _hf_hidden(tiny_gemma, [ids])
    empty = _hf_hidden(tiny_gemma, [[gemma2.BOS] + [gemma2.PAD] * (len(ids) - 1)],
                       [[1] + [0] * (len(ids) - 1)])
    want = (z - empty) * weights[None, :, None] + empty
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_tokenizer_is_upstreams_gemma_tokenizer(spiece):
    """BOS first, no EOS, no padding, one chunk however long; weights parsed; ``\\(`` literal."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_proto=spiece)
    tok = gemma2.GemmaTokenizer(spiece)
    (chunk,) = tok.tokenize_with_weights("a photo of a cat " * 40)
    assert chunk == [(2, 1.0)] + [(i, 1.0) for i in sp.encode("a photo of a cat " * 40)]
    (chunk,) = tok.tokenize_with_weights("a (red:1.2) chair")
    assert chunk == ([(2, 1.0)] + [(i, 1.0) for i in sp.encode("a ")] + [(i, 1.2) for i in sp.encode("red")]
                     + [(i, 1.0) for i in sp.encode(" chair")])
    (chunk,) = tok.tokenize_with_weights("a \\(red\\) chair")
    assert [t for t, _ in chunk] == [2] + sp.encode("a (red) chair")


def test_from_file_tells_gemma2_from_qwen3_and_gemma3():
    qwen = lf.qwen3_file_sd(lf.hf_qwen3(0, hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8, intermediate=32,
                                        vocab=64))
    assert gemma2.from_file(qwen) is None
    fake_gemma3 = {"model.layers.0.post_feedforward_layernorm.weight": torch.ones(4),
                   "model.layers.0.self_attn.q_norm.weight": torch.ones(4)}
    assert gemma2.from_file(fake_gemma3) is None


# ------------------------------------------------------------------------------ the loader
@pytest.fixture
def te_folder(workspace, tiny_gemma, spiece):
    folder = workspace / "models" / "text_encoders"
    folder.mkdir(parents=True, exist_ok=True)
    sd = lf.gemma2_file_sd(tiny_gemma, spiece)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()},
              str(folder / "gemma_2_2b_fp16.safetensors"))
    save_file({k: v for k, v in sd.items() if k != "spiece_model"}, str(folder / "gemma_no_tokenizer.safetensors"))
    qwen = lf.hf_qwen3(4, hidden=16, layers=2, heads=2, kv_heads=1, head_dim=8, intermediate=32)
    save_file(lf.qwen3_file_sd(qwen), str(folder / "qwen_3_4b.safetensors"))
    from comfyui import paths
    paths.invalidate_cache()
    return folder


def test_cliploader_lumina2_picks_gemma_or_qwen3_from_the_file(te_folder, tiny_gemma, spiece, cpu):
    from comfyui import runtime
    from comfyui.nodes.builtin.loaders import CLIPLoader
    from comfyui.nodes.builtin.lumina2 import SYSTEM_PROMPT, CLIPTextEncodeLumina2
    try:
        (gemma_clip,) = CLIPLoader().load_clip("gemma_2_2b_fp16.safetensors", "lumina2")
        (qwen_clip,) = CLIPLoader().load_clip("qwen_3_4b.safetensors", "lumina2")
        assert gemma_clip.cond_stage_model.names == ["gemma2_2b"]
        assert qwen_clip.cond_stage_model.names == ["qwen3_4b"]
        ((cond, extra),) = CLIPTextEncodeLumina2().encode(gemma_clip, "a cat on a chair", "superior")[0]
    finally:
        runtime.current().model_files.clear()
    tok = gemma2.GemmaTokenizer(spiece)
    ids = [t for t, _ in tok.tokenize_with_weights(f"{SYSTEM_PROMPT['superior']} <Prompt Start> a cat on a chair")[0]]
    want = _hf_hidden(lf.hf_gemma2(seed=3), [ids])
    assert "pooled_output" not in extra and cond.shape == (1, len(ids), 32)
    # the file is fp16: the encoder runs in the file's precision on the CPU
    torch.testing.assert_close(cond, want, atol=2e-2, rtol=2e-2)


def test_cliploader_refuses_a_gemma_file_without_tokenizer_at_validation(te_folder):
    from comfyui.engine.validation import PromptError, validate_prompt
    from comfyui.nodes.registry import NodeRegistry
    registry = NodeRegistry.with_builtins()

    def errors(name):
        prompt = {"1": {"class_type": "CLIPLoader", "inputs": {"clip_name": name, "type": "lumina2"}},
                  "2": {"class_type": "CLIPTextEncodeLumina2",
                        "inputs": {"clip": ["1", 0], "system_prompt": "alignment", "user_prompt": "a cat"}},
                  "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
        try:
            return validate_prompt(prompt, registry)[1].get("1", {}).get("errors", [])
        except PromptError as exc:
            return exc.node_errors.get("1", {}).get("errors", [])

    assert errors("gemma_2_2b_fp16.safetensors") == [] and errors("qwen_3_4b.safetensors") == []
    # (as in ComfyUI, a refusal is reported on each input VALIDATE_INPUTS takes: clip_name, type)
    found = errors("gemma_no_tokenizer.safetensors")
    assert found and all(e["type"] == "custom_validation_failed" and "spiece_model" in e["details"] for e in found)
    found = errors("missing.safetensors")
    assert found and all("not in" in e["details"] for e in found)


# ------------------------------------------------------------------------ Lumina 2.0 NextDiT
@pytest.fixture(scope="module")
def lumina_pair():
    ref = lf.diffusers_lumina2(seed=2)
    native = lf.lumina2_diffusers_to_native(ref.state_dict())
    config = lumina_detect.detect_lumina2(native, "")
    net = NextDiT(config).eval()
    net.load_state_dict({k: v for k, v in native.items() if k != "norm_final.weight"}, strict=True)
    return ref, net, config


def test_tiny_lumina2_detects_as_lumina2(lumina_pair):
    _, _, config = lumina_pair
    assert {k: config[k] for k in ("dim", "cap_feat_dim", "n_heads", "n_kv_heads", "head_dim", "n_layers",
                                   "n_noise_refiner", "n_context_refiner", "silu_modulation", "time_scale",
                                   "pad_tokens_multiple", "axes_dims")} == {
        "dim": 96, "cap_feat_dim": 32, "n_heads": 2, "n_kv_heads": 1, "head_dim": 48, "n_layers": 2,
        "n_noise_refiner": 1, "n_context_refiner": 1, "silu_modulation": True, "time_scale": 1.0,
        "pad_tokens_multiple": None, "axes_dims": (16, 16, 16)}


@pytest.mark.parametrize("shape,text_tokens", [((1, 16, 8, 6), 7), ((1, 16, 4, 4), 20)])
def test_nextdit_matches_diffusers_lumina2_negated(lumina_pair, shape, text_tokens):
    """ComfyUI's output is diffusers' prediction negated, at diffusers' t = 1 - sigma (the
    Lumina 2 pipeline negates it too)."""
    ref, net, _ = lumina_pair
    g = torch.Generator().manual_seed(text_tokens)
    x, text = torch.randn(shape, generator=g), torch.randn(1, text_tokens, 32, generator=g)
    mask = torch.ones(1, text_tokens, dtype=torch.bool)
    with torch.no_grad():
        for sigma in (1.0, 0.5, 0.1):
            want = ref(x, torch.tensor([1.0 - sigma]), text, mask, return_dict=False)[0]
            got = net(x, torch.tensor([sigma]), text)
            assert want.abs().max() > 0.1
            torch.testing.assert_close(got, -want, atol=1e-5, rtol=1e-5)


def test_all_in_one_checkpoint_loads_model_gemma_and_vae(workspace, cpu):
    """The NetaYume / lumina_2 all-in-one layout through CheckpointLoaderSimple's path."""
    from comfyui import runtime
    from comfyui.models import sd as sdm
    path = workspace / "models" / "checkpoints" / "lumina_2.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lf.lumina2_checkpoint_sd(seed=5).items()}, str(path))
    model, clip, vae = sdm.load_checkpoint_guess_config(str(path))
    try:
        assert model.model.family.name == "lumina2"
        assert model.model.model_config.sampling_settings == {"type": "flow", "shift": 6.0, "multiplier": 1.0}
        assert clip.cond_stage_model.names == ["gemma2_2b"] and vae.latent_channels == 16
        cond = clip.encode_from_tokens(clip.tokenize("a cat"))
        assert cond.shape == (1, 1 + len(lf_tokens(clip, "a cat")), 32) and torch.isfinite(cond).all()
    finally:
        runtime.current().model_files.clear()


def lf_tokens(clip, text):
    return clip.tokenizer.tokenizers["gemma2_2b"].encode(text)
