"""CLIPTextEncodeSD3's ``empty_padding`` "none" as upstream: an empty prompt gives its encoder
no tokens; when CLIP-L and CLIP-G both get none they are left out altogether (no CLIP part in
the context, a zero pooled vector) and the context is T5's encoding of the empty sequence (the
end token alone)."""
from __future__ import annotations

import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.nodes.builtin.sd3 import CLIPTextEncodeSD3

from . import sd3_fixtures as fx

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    memory.configure(None, cpu=True)
    path = fx.write_checkpoint(os.path.join(tmp_path_factory.mktemp("ckpt"), "sd35.safetensors"))
    _, clip, _ = sdm.load_checkpoint_guess_config(path)
    yield clip
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


def _encode(clip, l, g, t5, padding):
    (cond,) = CLIPTextEncodeSD3().encode(clip, l, g, t5, padding)
    return cond[0][0], cond[0][1]["pooled_output"]


def test_all_prompts_empty_without_padding_is_t5_end_token_only(clip):
    w = fx.CKPT_WIDTHS
    context, pooled = _encode(clip, "", "", "", "none")
    assert context.shape == (1, 1, w["t5"])
    assert pooled.shape == (1, w["clip_l"] + w["clip_g"]) and torch.all(pooled == 0)
    # T5 alone on its end token (id 1)
    t5 = clip.cond_stage_model.encoder("t5xxl")
    memory.load_models_gpu([clip.patcher])
    with torch.no_grad():
        ref, _ = t5.encode_token_weights([[(1, 1.0)]])
    torch.testing.assert_close(context, ref.to(context))


def test_empty_clip_prompts_with_t5_text(clip):
    """Both CLIP prompts empty, T5 not: the context is T5's tokens alone (77 of them)."""
    w = fx.CKPT_WIDTHS
    context, pooled = _encode(clip, "", "", "a red fox", "none")
    assert context.shape == (1, 77, w["t5"]) and torch.all(pooled == 0)
    full, full_pooled = _encode(clip, "", "", "a red fox", "empty_prompt")
    # padded: 77 CLIP tokens first, then the same T5 tokens
    assert full.shape == (1, 154, w["t5"]) and not torch.all(full_pooled == 0)
    torch.testing.assert_close(full[:, 77:], context)


def test_one_clip_prompt_empty_keeps_both_clip_encoders(clip):
    """Only CLIP-L empty: upstream pads its token list to CLIP-G's with empty chunks, so both
    run and the pooled vector is not zero."""
    w = fx.CKPT_WIDTHS
    context, pooled = _encode(clip, "", "a red fox", "", "none")
    assert context.shape == (1, 77 + 1, w["t5"])
    assert not torch.all(pooled[:, :w["clip_l"]] == 0) and not torch.all(pooled[:, w["clip_l"]:] == 0)
