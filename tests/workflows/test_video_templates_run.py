"""The official Wan 2.2 14B and LTX-Video templates (``comfyui-workflow-templates-json``, as
shipped) run end to end through the engine, like the image families in test_templates_run.py.

Each template is converted to API format with our converter and run on tiny random-weight files
written under the exact names it asks for, in the real layouts: the Wan transformers built with
diffusers and written in the released key layout as scaled fp8 (``scaled_fp8`` marker,
per-layer ``scale_weight``: the ``*_fp8_scaled`` files), the UMT5 with its SentencePiece model
inside, the Wan 2.1 VAE, the lightx2v 4-step LoRAs (``diffusion_model.*.lora_down/lora_up/alpha``
with ``diff_b`` biases), and LTX-Video's all-in-one checkpoints (DiT + VAE with its config in
the metadata) with the T5-XXL file.

Test-size changes (everything else -- wiring, switches, formulas, samplers, shifts, prompts,
seeds -- as shipped): 32x32 pixels and 5 frames for Wan (the 14B t2v/i2v templates compute
their length as ``floor(seconds * fps) + 1``: their seconds become 0.25 so the formula gives 5),
96x64 and 17 frames for LTX-Video, 2 sampling steps (the two-expert split after step 1).
The Wan t2v/i2v templates also run with their LoRA switch on (the lightx2v branch: LoRAs,
4 steps, cfg 1); with it off that branch never runs, though its files are validated.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import sys

import pytest

pytest.importorskip("comfyui_workflow_templates_json", reason="pip install comfyui-workflow-templates-json (dev extra)")
pytest.importorskip("diffusers")
pytest.importorskip("sentencepiece")
av = pytest.importorskip("av")

import template_fixtures as tf  # noqa: E402  (this folder's fixture writer; puts tests/ on sys.path)

from models import ltxv_fixtures, wan_fixtures  # noqa: E402

WAN, LTXV = (32, 32, 5), (96, 64, 17)   # (W, H, frames) of the videos
EXPECT = {  # template -> (W, H, frames) of every video its SaveVideo nodes write
    "video_wan2_2_14B_t2v": WAN,
    "video_wan2_2_14B_i2v": WAN,
    "video_wan2_2_14B_flf2v": WAN,
    "video_wan2_2_14B_fun_inpaint": WAN,
    "ltxv_text_to_video": LTXV,
    "ltxv_image_to_video": LTXV,
}
XFAIL = {
    "video_wan2_2_14B_fun_camera": "nodes WanCameraEmbedding, WanCameraImageToVideo (Wan Fun Camera)",
    "video_wan2_2_14B_fun_control": "node Wan22FunControlToVideo",
    "video_wan2_2_14B_s2v": "nodes LoadAudio, AudioEncoderLoader, AudioEncoderEncode, WanSoundImageToVideo, "
                            "WanSoundImageToVideoExtend (Wan S2V, audio encoders)",
}
LORA_SWITCH = ("video_wan2_2_14B_t2v", "video_wan2_2_14B_i2v")
TEXT_DIM = 32
WAN_DIFFUSION = {  # file -> diffusers WanTransformer3DModel variant
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": dict(),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": dict(),
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_fun_inpaint_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_fun_inpaint_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
}
WAN_LORAS = ("wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
             "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors",
             "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
             "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors")


TEMPLATES = tf.family_templates(("video_wan2_2_14B_", "ltxv_"))


def wan_lora(native: dict, rank: int = 4, seed: int = 0) -> dict:
    """A LoRA on every 2-D block weight in the layout of the lightx2v files
    (``diffusion_model.<key>.lora_down.weight`` [rank, in], ``lora_up.weight`` [out, rank],
    ``alpha``) plus ``diff_b`` bias deltas."""
    import torch
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, weight in native.items():
        if not key.startswith("blocks.") or not key.endswith(".weight") or weight.ndim != 2:
            continue
        base = "diffusion_model." + key[:-len(".weight")]
        out[base + ".lora_down.weight"] = 0.1 * torch.randn(rank, weight.shape[1], generator=g)
        out[base + ".lora_up.weight"] = 0.1 * torch.randn(weight.shape[0], rank, generator=g)
        out[base + ".alpha"] = torch.tensor(float(rank))
        out[base + ".diff_b"] = 0.01 * torch.randn(weight.shape[0], generator=g)
    return out


def write_video_template_files(base: str, input_names: list[str]) -> None:
    import json as _json

    import sentencepiece as spm
    from safetensors.torch import save_file

    from models.flux_fixtures import hf_t5, t5_sd
    from models.test_ltxv_vae import TINY_090, _tiny

    models = os.path.join(base, "models")
    folder = lambda name: os.makedirs(os.path.join(models, name), exist_ok=True) or os.path.join(models, name)  # noqa: E731
    for seed, (name, variant) in enumerate(WAN_DIFFUSION.items()):
        native = wan_fixtures.native_sd(wan_fixtures.diffusers_wan(seed=seed, text_dim=TEXT_DIM, **variant))
        tf.save(tf.scaled_fp8(native), os.path.join(folder("diffusion_models"), name))
        if name.startswith(("wan2.2_t2v", "wan2.2_i2v")):
            kind, noise = name.split("_")[1], name.split("_")[2]
            lora = next(n for n in WAN_LORAS if n.startswith(f"wan2.2_{kind}_") and f"_{noise}_noise" in n)
            save_file(wan_lora(native, seed=seed), os.path.join(folder("loras"), lora))
    proto = wan_fixtures.spiece_model()
    umt5 = wan_fixtures.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(),
                                d_model=TEXT_DIM)
    save_file(wan_fixtures.umt5_file_sd(umt5, proto),
              os.path.join(folder("text_encoders"), "umt5_xxl_fp8_e4m3fn_scaled.safetensors"))
    save_file(wan_fixtures.wan_vae_sd(seed=2), os.path.join(folder("vae"), "wan_2.1_vae.safetensors"))
    # LTX-Video 0.9 / 0.9.5 all-in-one checkpoints (no text encoder inside) and T5-XXL
    for seed, name in enumerate(("ltx-video-2b-v0.9.safetensors", "ltx-video-2b-v0.9.5.safetensors")):
        ckpt = ltxv_fixtures.to_native(ltxv_fixtures.diffusers_ltxv(seed=11 + seed).state_dict(),
                                       "model.diffusion_model.")
        ckpt.update({"vae." + k: v for k, v in _tiny(seed=12 + seed).state_dict().items()})
        save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(folder("checkpoints"), name),
                  metadata={"config": _json.dumps({"vae": TINY_090})})
    save_file(t5_sd(hf_t5(seed=13)), os.path.join(folder("text_encoders"), "t5xxl_fp16.safetensors"))
    for i, image in enumerate(sorted(set(input_names))):
        tf.input_image(os.path.join(base, "input", image), seed=i)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from comfyui import paths, runtime
    from comfyui.engine.engine import Engine
    from comfyui.models import memory
    from comfyui.nodes.registry import NodeRegistry

    threads = wan_fixtures.one_thread()
    next(threads)
    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("video_templates")
    paths.configure(base_directory=base, create_directories=True)
    write_video_template_files(str(base), [n for w in TEMPLATES.values() for n in tf.load_image_names(w)])
    paths.invalidate_cache()
    registry = NodeRegistry.with_builtins()
    engine = Engine(registry)
    engine.start()
    yield {"base": str(base), "engine": engine, "object_info": registry.object_info()}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)
    next(threads, None)


def _primitives(prompt: dict, value) -> list[dict]:
    """The Primitive* nodes a link reads, through ComfySwitchNode branches."""
    if not isinstance(value, list):
        return []
    node = prompt[value[0]]
    if node["class_type"] == "ComfySwitchNode":
        return [p for k in ("on_false", "on_true") for p in _primitives(prompt, node["inputs"].get(k))]
    return [node] if node["class_type"].startswith("Primitive") else []


def _set(prompt: dict, inputs: dict, key: str, value) -> None:
    """A widget value, or the value of every Primitive node feeding that input."""
    if isinstance(inputs[key], list):
        for node in _primitives(prompt, inputs[key]):
            node["inputs"]["value"] = value
    else:
        inputs[key] = value


def shrink(prompt: dict, lora_switch: bool = False) -> dict:
    """The test-size changes listed in the module docstring."""
    p = copy.deepcopy(prompt)
    for node in list(p.values()):
        i, kind = node["inputs"], node["class_type"]
        if "width" in i and "length" in i:
            w, h, frames = LTXV if "LTXV" in kind else WAN
            i["width"], i["height"] = w, h
            if isinstance(i["length"], list):   # floor(seconds * fps) + 1, seconds from "values.a"
                formula = p[i["length"][0]]
                assert formula["class_type"] == "ComfyMathExpression", formula
                _set(p, formula["inputs"], "values.a", 0.25)
            else:
                i["length"] = frames
        if kind in ("LTXVScheduler", "KSampler"):
            i["steps"] = 2
        if kind == "KSamplerAdvanced":
            _set(p, i, "steps", 2)
            if i["start_at_step"] == 0:
                _set(p, i, "end_at_step", 1)
            else:
                _set(p, i, "start_at_step", 1)
        if kind == "ComfySwitchNode" and lora_switch:
            _set(p, i, "switch", True)
    return p


def test_every_video_template_is_listed():
    assert set(TEMPLATES) == set(EXPECT) | set(XFAIL)


CASES = [pytest.param(n, False, marks=pytest.mark.xfail(reason=XFAIL[n], strict=True)) if n in XFAIL
         else pytest.param(n, False, id=n) for n in sorted(TEMPLATES)]
CASES += [pytest.param(n, True, id=n + "-lightx2v") for n in LORA_SWITCH]


@pytest.mark.parametrize("name, lora_switch", CASES)
def test_video_template_runs_end_to_end(env, name, lora_switch, caplog):
    from comfyui.workflows.convert import convert_ui_to_api

    prompt = shrink(convert_ui_to_api(TEMPLATES[name], env["object_info"]), lora_switch)
    missing = sorted({n["class_type"] for n in prompt.values()} - set(env["object_info"]))
    assert not missing, f"nodes missing: {missing}"
    if name in LORA_SWITCH:
        switches = [n for n in prompt.values() if n["class_type"] == "PrimitiveBoolean"]
        assert [n["inputs"]["value"] for n in switches] == [lora_switch]
    engine = env["engine"]
    with caplog.at_level(logging.WARNING):
        submitted = engine.submit(prompt)
        assert submitted.node_errors == {}, submitted.node_errors
        history = engine.wait(submitted.prompt_id).result(600)
    assert history["status"]["status_str"] == "success", history["status"]
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    videos = [item for node_id, out in history["outputs"].items() for item in out.get("images", [])
              if prompt[node_id]["class_type"] == "SaveVideo"]
    assert videos
    for item in videos:
        with av.open(os.path.join(env["base"], "output", item["subfolder"], item["filename"])) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert (frames[0].shape[1], frames[0].shape[0], len(frames)) == EXPECT[name]
        assert max(f.std() for f in frames) > 0


def test_the_lora_switch_changes_the_video(env):
    """The lightx2v branch (LoRAs, 4 steps, cfg 1) and the plain one give different videos."""
    from comfyui.workflows.convert import convert_ui_to_api

    base = convert_ui_to_api(TEMPLATES["video_wan2_2_14B_t2v"], env["object_info"])
    outputs = []
    for switch in (False, True):
        prompt = shrink(base, switch)
        for node in prompt.values():
            if node["class_type"] == "SaveVideo":
                node["inputs"]["filename_prefix"] = f"video/switch_{switch}"
        history = env["engine"].wait(env["engine"].submit(prompt).prompt_id).result(600)
        (item,) = [i for out in history["outputs"].values() for i in out.get("images", [])]
        with av.open(os.path.join(env["base"], "output", item["subfolder"], item["filename"])) as container:
            outputs.append(json.dumps([f.to_ndarray(format="rgb24").tolist() for f in container.decode(video=0)]))
    assert outputs[0] != outputs[1]


if __name__ == "__main__":   # write the files to a ComfyUI base directory
    names = [n for w in TEMPLATES.values() for n in tf.load_image_names(w)]
    write_video_template_files(sys.argv[1] if len(sys.argv) > 1 else ".", names)
