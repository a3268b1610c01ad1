"""Hook nodes (upstream's nodes_hooks) on a tiny random SD1 checkpoint: a hooked LoRA whose
keyframes switch it on at 50 % of the steps samples like the plain model for the first half and
the LoRA'd model after; conds with different hooks see their own weights in one KSampler call;
SetClipHooks encodes like a LoRA on the CLIP (once per keyframe range with schedule_clip)."""
from __future__ import annotations

import os

import pytest
import torch
from models import fixtures as fx

from comfyui import runtime
from comfyui.models import memory
from comfyui.nodes.builtin import hooks as H
from comfyui.nodes.builtin import loaders as L
from comfyui.nodes.builtin import sampling as S
from comfyui.nodes.builtin import text as T

# the first LoRA target of fx.SD1_LORA_UNET_TARGETS, in the native UNet layout
LORA_KEY = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
STEPS = 6  # normal schedule: sigmas 14.6, 5.09, 2.28 | 1.16, 0.57, 0.03; 50 % is sigma 1.62


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


@pytest.fixture
def ws(workspace):
    from comfyui import paths
    models = os.path.join(workspace, "models")
    fx.make_sd1_checkpoint(os.path.join(models, "checkpoints", "base.safetensors"), seed=41)
    fx.make_sd1_checkpoint(os.path.join(models, "checkpoints", "other.safetensors"), seed=42)
    deltas = {"a": fx.make_lora(os.path.join(models, "loras", "a.safetensors"), seed=5),
              "b": fx.make_lora(os.path.join(models, "loras", "b.safetensors"), seed=6)}
    paths.invalidate_cache()
    return deltas


def _weight(model):
    return model.model.state_dict()[LORA_KEY].detach().clone()


def _recording(model):
    """A clone of ``model`` that records (sigma, cond_or_uncond, LORA_KEY weight) per model call."""
    calls = []
    m = model.clone()

    def wrapper(apply_model, args):
        calls.append((float(args["timestep"][0]), list(args["cond_or_uncond"]), _weight(m)))
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(wrapper)
    return m, calls


def _encode(clip, text):
    return T.CLIPTextEncode().encode(clip, text)[0]


def _latent():
    return {"samples": torch.zeros(1, 4, 8, 8)}


def _half_keyframes():
    kf = H.CreateHookKeyframe().create_hook_keyframe(0.0, 0.0)[0]
    return H.CreateHookKeyframe().create_hook_keyframe(1.0, 0.5, prev_hook_kf=kf)[0]


def test_hooked_lora_switches_on_at_half_of_the_steps(ws):
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("base.safetensors")
    hooks = H.CreateHookLoraModelOnly().create_hook_model_only("a.safetensors", 0.8)[0]
    hooks = H.SetHookKeyframes().set_hook_keyframes(hooks, _half_keyframes())[0]
    pos, neg = H.PairConditioningSetProperties().set_properties(
        _encode(clip, "a red cat"), _encode(clip, ""), 1.0, "default", hooks=hooks)
    rec, calls = _recording(model)
    hooked = S.KSampler().sample(rec, 7, STEPS, 4.0, "euler", "normal", pos, neg, _latent())[0]["samples"]

    plain_w = _weight(model)
    lora_model = L.LoraLoaderModelOnly().load_lora_model_only(model, "a.safetensors", 0.8)[0]
    memory.load_models_gpu([lora_model])
    lora_w = _weight(lora_model)
    assert not torch.allclose(plain_w, lora_w)
    assert len(calls) == STEPS  # cond and uncond have the same hooks: one batch per step
    for i, (_, _, w) in enumerate(calls):
        torch.testing.assert_close(w, plain_w if i < STEPS // 2 else lora_w, rtol=0, atol=1e-6)

    # the same as sampling the first half with the plain model, the second with the LoRA
    plain_pos, plain_neg = _encode(clip, "a red cat"), _encode(clip, "")
    adv = S.KSamplerAdvanced()
    half = adv.sample(model, "enable", 7, STEPS, 4.0, "euler", "normal", plain_pos, plain_neg, _latent(),
                      0, STEPS // 2, "enable")[0]
    split = adv.sample(lora_model, "disable", 7, STEPS, 4.0, "euler", "normal", plain_pos, plain_neg, half,
                       STEPS // 2, 10000, "disable")[0]["samples"]
    torch.testing.assert_close(hooked, split, rtol=1e-4, atol=1e-4)
    unhooked = S.KSampler().sample(model, 7, STEPS, 4.0, "euler", "normal", plain_pos, plain_neg,
                                   _latent())[0]["samples"]
    assert (hooked - unhooked).abs().max() > 1e-3
    # after sampling the shared module has its plain weights again
    memory.load_models_gpu([model])
    torch.testing.assert_close(_weight(model), plain_w, rtol=0, atol=0)


def test_conds_with_different_hooks_see_their_own_weights(ws):
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("base.safetensors")
    hooks_a = H.CreateHookLoraModelOnly().create_hook_model_only("a.safetensors", 1.0)[0]
    hooks_b = H.CreateHookLora().create_hook("b.safetensors", 0.5, 1.0)[0]
    pos = H.ConditioningSetProperties().set_properties(_encode(clip, "a cat"), 1.0, "default", hooks=hooks_a)[0]
    neg = H.ConditioningSetProperties().set_properties(_encode(clip, "a dog"), 1.0, "default", hooks=hooks_b)[0]
    rec, calls = _recording(model)
    S.KSampler().sample(rec, 3, 2, 5.0, "euler", "normal", pos, neg, _latent())

    plain_w = _weight(model)
    w_a = plain_w + fx_delta(ws["a"], 1.0)
    w_b = plain_w + fx_delta(ws["b"], 0.5)
    assert len(calls) == 4  # two steps, the cond and the uncond each in its own call
    for _, cond_or_uncond, w in calls:
        assert len(cond_or_uncond) == 1
        torch.testing.assert_close(w, w_a if cond_or_uncond == [0] else w_b, rtol=1e-5, atol=1e-5)
    assert sorted(c[1][0] for c in calls) == [0, 0, 1, 1]


def fx_delta(deltas, strength):
    # the diffusers-named delta of the LoRA target LORA_KEY is
    return strength * deltas["unet"]["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"]


def test_set_clip_hooks_encodes_like_a_lora_on_the_clip(ws):
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("base.safetensors")
    hooks = H.CreateHookLora().create_hook("a.safetensors", 1.0, 0.7)[0]
    hooked_clip = H.SetClipHooks().apply_hooks(clip, schedule_clip=False, apply_to_conds=True, hooks=hooks)[0]
    cond = _encode(hooked_clip, "a lora test")
    _, lora_clip = L.LoraLoader().load_lora(model, clip, "a.safetensors", 1.0, 0.7)
    expect = _encode(lora_clip, "a lora test")
    plain = _encode(clip, "a lora test")
    assert len(cond) == 1 and cond[0][1]["hooks"] is hooks
    torch.testing.assert_close(cond[0][0], expect[0][0], rtol=1e-5, atol=1e-5)
    assert (cond[0][0] - plain[0][0]).abs().max() > 1e-3
    # the CLIP module is shared: the plain CLIP still encodes without the LoRA
    torch.testing.assert_close(_encode(clip, "a lora test")[0][0], plain[0][0], rtol=0, atol=0)

    # schedule_clip: one encoding per keyframe range, each limited to its steps
    scheduled = H.SetHookKeyframes().set_hook_keyframes(hooks, _half_keyframes())[0]
    sched_clip = H.SetClipHooks().apply_hooks(clip, schedule_clip=True, apply_to_conds=False, hooks=scheduled)[0]
    out = _encode(sched_clip, "a lora test")
    assert [(c[1]["clip_start_percent"], c[1]["clip_end_percent"]) for c in out] == [(0.0, 0.5), (0.5, 1.0)]
    assert all("hooks" not in c[1] for c in out)
    torch.testing.assert_close(out[0][0], plain[0][0], rtol=1e-5, atol=1e-5)  # strength 0 before 50 %
    torch.testing.assert_close(out[1][0], expect[0][0], rtol=1e-5, atol=1e-5)


def test_model_as_lora_hook_gives_the_other_checkpoints_weights(ws):
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("base.safetensors")
    other, _, _ = L.CheckpointLoaderSimple().load_checkpoint("other.safetensors")
    other_w = _weight(other)
    hooks = H.CreateHookModelAsLoraModelOnly().create_hook_model_only("other.safetensors", 1.0)[0]
    pos = H.ConditioningSetProperties().set_properties(_encode(clip, "x"), 1.0, "default", hooks=hooks)[0]
    rec, calls = _recording(model)
    S.KSampler().sample(rec, 1, 1, 1.0, "euler", "normal", pos, _encode(clip, ""), _latent())
    assert len(calls) == 1  # cfg 1: the cond alone
    torch.testing.assert_close(calls[0][2], other_w, rtol=1e-6, atol=1e-6)


def test_default_cond_fills_what_the_masked_cond_leaves(ws):
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("base.safetensors")
    hooks = H.CreateHookLoraModelOnly().create_hook_model_only("a.safetensors", 1.0)[0]
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1.0
    masked = H.ConditioningSetProperties().set_properties(_encode(clip, "a cat"), 1.0, "default", mask=mask)[0]
    cond = H.ConditioningSetDefaultAndCombine().set_default_and_combine(masked, _encode(clip, "a dog"), hooks)[0]
    assert cond[1][1]["default"] is True and cond[1][1]["hooks"] is hooks
    rec, calls = _recording(model)
    S.KSampler().sample(rec, 1, 1, 1.0, "euler", "normal", cond, _encode(clip, ""), _latent())
    # the masked cond with plain weights, the default one (right half) with the hooked LoRA
    plain_w = _weight(model)
    ws_seen = sorted(((c[2] - plain_w).abs().max().item() > 1e-4) for c in calls)
    assert ws_seen == [False, True]


def test_keyframe_nodes_and_combine():
    kf = H.CreateHookKeyframesInterpolated().create_hook_keyframes(0.0, 1.0, "ease_in", 0.2, 0.6, 3)[0]
    assert [k.start_percent for k in kf.keyframes] == pytest.approx([0.2, 0.4, 0.6])
    assert [k.strength for k in kf.keyframes] == pytest.approx([0.0, 0.25, 1.0])
    assert [k.guarantee_steps for k in kf.keyframes] == [1, 0, 0]
    kf2 = H.CreateHookKeyframesFromFloats().create_hook_keyframes([0.5, 2.0], 0.0, 1.0, prev_hook_kf=kf)[0]
    assert [k.start_percent for k in kf2.keyframes] == pytest.approx([0.0, 0.2, 0.4, 0.6, 1.0])
    assert [k.strength for k in kf2.keyframes] == pytest.approx([0.5, 0.0, 0.25, 1.0, 2.0])
    assert len(kf.keyframes) == 3  # the input is not changed
    assert H.ConditioningTimestepsRange().create_range(0.25, 0.75) == ((0.25, 0.75), (0.0, 0.25), (0.75, 1.0))
    from comfyui.models import hooks as hooks_mod
    a = hooks_mod.create_hook_lora({}, 1.0, 1.0)
    b = hooks_mod.create_hook_lora({}, 1.0, 1.0)
    assert H.CombineHooks().combine_hooks(hooks_A=a)[0] is a
    assert H.CombineHooksFour().combine_hooks()[0] is None
    both = H.CombineHooksEight().combine_hooks(hooks_B=a, hooks_H=b, hooks_D=a)[0]
    assert len(both) == 2 and both.contains(a.hooks[0]) and both.contains(b.hooks[0])


def test_object_info_has_upstreams_inputs_and_outputs():
    """Every node of nodes_hooks in /object_info with upstream's inputs (names, sections,
    types, options, in order) and outputs, recorded from upstream's module."""
    import json
    from pathlib import Path

    from comfyui.nodes.registry import NodeRegistry

    spec = json.loads((Path(__file__).parent / "upstream_nodes_hooks_spec.json").read_text())["nodes"]
    info = NodeRegistry.with_builtins().object_info()
    for name, want in spec.items():
        node = info[name]
        got = {}
        for sec in ("required", "optional"):
            for inp, s in node["input"].get(sec, {}).items():
                kind = "FILES" if isinstance(s[0], list) and name.startswith("CreateHook") and \
                    inp in ("lora_name", "ckpt_name") else s[0]
                got[inp] = [sec[0], kind, s[1]] if len(s) > 1 and s[1] else [sec[0], kind]
        assert list(got) == list(want["in"]), name
        assert got == want["in"], name
        assert node["output"] == want["out"] and node["output_name"] == want["names"], name
        assert node["experimental"] is True


def test_scheduled_hook_workflow_through_the_engine(ws):
    """The usual graph as a queued prompt: LoRA hook + keyframes on CLIP and conds, KSampler."""
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {"class_type": "CreateHookLora", "inputs": {"lora_name": "a.safetensors", "strength_model": 0.8,
                                                         "strength_clip": 1.0}},
        "3": {"class_type": "CreateHookKeyframe", "inputs": {"strength_mult": 0.0, "start_percent": 0.0}},
        "4": {"class_type": "CreateHookKeyframe", "inputs": {"strength_mult": 1.0, "start_percent": 0.5,
                                                             "prev_hook_kf": ["3", 0]}},
        "5": {"class_type": "SetHookKeyframes", "inputs": {"hooks": ["2", 0], "hook_kf": ["4", 0]}},
        "6": {"class_type": "SetClipHooks", "inputs": {"clip": ["1", 1], "apply_to_conds": True,
                                                       "schedule_clip": False, "hooks": ["5", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["6", 0], "text": "a red cat"}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["6", 0], "text": ""}},
        "9": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["7", 0], "negative": ["8", 0], "latent_image": ["9", 0], "seed": 7,
            "steps": STEPS, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "hooked"}},
    }
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        sub = eng.submit(prompt)
        assert sub.node_errors == {}
        history = eng.wait(sub.prompt_id).result(300)
    finally:
        eng.stop()
    assert history["status"]["status_str"] == "success", history["status"]

    # the same graph by hand: CLIP with the LoRA, first half plain model, second half LoRA'd
    from safetensors.torch import load_file

    from comfyui import paths
    saved = load_file(os.path.join(paths.get_output_directory(), "hooked_00001_.latent"))
    model, clip, _ = L.CheckpointLoaderSimple().load_checkpoint("base.safetensors")
    lora_model, lora_clip = L.LoraLoader().load_lora(model, clip, "a.safetensors", 0.8, 1.0)
    pos, neg = _encode(lora_clip, "a red cat"), _encode(lora_clip, "")
    adv = S.KSamplerAdvanced()
    half = adv.sample(model, "enable", 7, STEPS, 4.0, "euler", "normal", pos, neg, _latent(), 0, STEPS // 2,
                      "enable")[0]
    split = adv.sample(lora_model, "disable", 7, STEPS, 4.0, "euler", "normal", pos, neg, half, STEPS // 2, 10000,
                       "disable")[0]["samples"]
    torch.testing.assert_close(saved["latent_tensor"].float(), split, rtol=1e-4, atol=1e-4)
