"""The official Wan and LTX-Video templates (``comfyui-workflow-templates-json``, as shipped) run
end to end through the engine, like the image families in test_templates_run.py: Wan 2.1
(t2v, i2v, first-last frame, Fun Control / InP, VACE with its reference-image and first-last
frame variants, Alpha), Wan 2.2 (5B ti2v / Fun InP, 14B
t2v / i2v / first-last frame / Fun InP; Fun Control 5B and 14B with the reference image, Fun Camera; Wan 2.1 Fun Camera), LTX-Video 0.9 (t2v, i2v).

Each template is converted to API format with our converter and run on tiny random-weight files
written under the exact names it asks for, in the real layouts: the Wan transformers (VACE
included) built with diffusers and written in the released key layout, the ``*_fp8_scaled``
ones as scaled fp8 (``scaled_fp8`` marker, per-layer ``scale_weight``), the UMT5 with its
SentencePiece model inside, CLIP vision H, the Wan 2.1 and 2.2 VAEs, the LoRAs (lightx2v,
CausVid, Wan Alpha) as ``diffusion_model.*.lora_down/lora_up/alpha`` with ``diff_b`` biases,
and LTX-Video's all-in-one checkpoints (DiT + VAE with its config in the metadata) with the
T5-XXL file. Input images are 64x48, input videos 9 frames of 48x40.

Test-size changes (everything else -- wiring, switches, formulas, samplers, shifts, prompts,
seeds -- as shipped): 32x32 pixels and 5 frames for Wan (widget values or the Primitive nodes
feeding them; the 14B t2v/i2v templates compute their length as ``floor(seconds * fps) + 1``:
their seconds become 0.25 so the formula gives 5; VACE first-last frame's ``16 * seconds + 1``
takes a whole number of seconds: 1, so 17 frames), 96x64 and 17 frames for LTX-Video, 2
sampling steps (the two-expert split after step 1).
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
EXPECT = {  # template -> (W, H, frames) of every video its SaveVideo / SaveAnimatedWEBP nodes write
    "text_to_video_wan": WAN,
    "image_to_video_wan": WAN,
    "wan2.1_flf2v_720_f16": WAN,
    "wan2.1_fun_control": WAN,
    "wan2.1_fun_inp": WAN,
    "video_wan_vace_14B_t2v": WAN,
    "video_wan_vace_14B_v2v": WAN,
    "video_wan_vace_outpainting": WAN,
    "video_wan_vace_14B_ref2v": WAN,
    "video_wan_vace_flf2v": (32, 32, 17),   # its length is 16 * seconds + 1
    "video_wan2.1_alpha_t2v_14B": WAN,
    "video_wan2_2_5B_ti2v": WAN,
    "video_wan2_2_5B_fun_inpaint": WAN,
    "video_wan2_2_14B_t2v": WAN,
    "video_wan2_2_14B_i2v": WAN,
    "video_wan2_2_14B_flf2v": WAN,
    "video_wan2_2_14B_fun_inpaint": WAN,
    "video_wan2_2_5B_fun_control": WAN,
    "video_wan2_2_14B_fun_control": WAN,
    "video_wan2.1_fun_camera_v1.1_1.3B": WAN,
    "video_wan2.1_fun_camera_v1.1_14B": WAN,
    "video_wan2_2_14B_fun_camera": WAN,
    "video_wan_ati": WAN,
    "ltxv_text_to_video": LTXV,
    "ltxv_image_to_video": LTXV,
}
XFAIL = {
    "video_wan21_scail2_character_replacement": "nodes WanSCAILToVideo, SCAIL2ColoredMask, SAM3_VideoTrack, "
                                                "ColorTransfer, ResizeImageMaskNode",
    "video_wan21_scail2_character_replacement_int8": "the SCAIL nodes above; int8 weights",
    "video_wan2_1_infinitetalk": "nodes WanInfiniteTalkToVideo, audio encoders, LoadAudio, AudioConcat, "
                                 "ModelPatchLoader, Painter",
    "video_wan_animate2": "nodes WanAnimate2ToVideo, WanAnimate2Cache, ContextWindowsManual, loops, lists",
    "video_wan_animate2_distilled": "nodes WanAnimate2ToVideo, WanAnimate2Cache, ContextWindowsManual, "
                                    "ResizeImageMaskNode",
    "video_wan_dancer": "nodes WanDancerVideo, WanDancerEncodeAudio, WanDancerPadKeyframesList, audio nodes, "
                        "CustomCombo, LatentCutToBatch, SkipLayerGuidanceDiTSimple, ResizeImageMaskNode",
    "video_wan_vace_inpainting": "nodes SAM3_Detect, ResizeImageMaskNode",
    "video_wanmove_480p": "nodes WanMoveTrackToVideo, WanMoveConcatTrack, WanMoveTracksFromCoords, "
                          "WanMoveVisualizeTracks, GenerateTracks",
    "video_wan2_2_14B_s2v": "nodes LoadAudio, AudioEncoderLoader, AudioEncoderEncode, WanSoundImageToVideo, "
                            "WanSoundImageToVideoExtend (Wan S2V, audio encoders)",
}
LORA_SWITCH = ("video_wan2_2_14B_t2v", "video_wan2_2_14B_i2v")
TEXT_DIM, VISION_DIM = 32, 64
WAN_DIFFUSION = {  # file -> diffusers WanTransformer3DModel variant (+ ref_conv: Fun 2.2's reference
    # input; camera: Fun Camera's control adapter)
    "wan2.1_t2v_1.3B_fp16.safetensors": dict(),
    "wan2.1_t2v_14B_fp8_scaled.safetensors": dict(),
    "wan2.1_i2v_480p_14B_fp16.safetensors": dict(i2v=True, in_channels=36),
    "wan2.1_flf2v_720p_14B_fp16.safetensors": dict(i2v=True, flf=True, in_channels=36),
    "wan2.1_fun_control_1.3B_bf16.safetensors": dict(i2v=True, in_channels=48),
    "wan2.1_fun_inp_1.3B_bf16.safetensors": dict(i2v=True, in_channels=36),
    "wan2.2_ti2v_5B_fp16.safetensors": dict(in_channels=48, out_channels=48),
    "wan2.2_fun_inpaint_5B_bf16.safetensors": dict(in_channels=100, out_channels=48),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": dict(),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": dict(),
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_fun_inpaint_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    "wan2.2_fun_inpaint_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=36),
    # Fun 2.2 Control: control latents, 4 mask channels, start-image latents; ref_conv channels
    "wan2.2_fun_control_5B_bf16.safetensors": dict(in_channels=148, out_channels=48, ref_conv=48),
    "wan2.2_fun_control_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=52, ref_conv=16),
    "wan2.2_fun_control_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=52, ref_conv=16),
    # Fun Camera: i2v channels and the control adapter of 24 Plücker channels (6 x 4 pictures)
    "Wan2_1-I2V-ATI-14B_fp8_e4m3fn.safetensors": dict(i2v=True, in_channels=36),   # ATI: a plain i2v model
    "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors": dict(i2v=True, in_channels=36, camera=24),
    "wan2.1_fun_camera_v1.1_14B_bf16.safetensors": dict(i2v=True, in_channels=36, camera=24),
    "wan2.2_fun_camera_high_noise_14B_fp8_scaled.safetensors": dict(in_channels=36, camera=24),
    "wan2.2_fun_camera_low_noise_14B_fp8_scaled.safetensors": dict(in_channels=36, camera=24),
}
OTHER_LORAS = {"Wan21_CausVid_14B_T2V_lora_rank32.safetensors": "wan2.1_vace_14B_fp16.safetensors",
               "wan_alpha_2.1_rgba_lora.safetensors": "wan2.1_t2v_14B_fp8_scaled.safetensors"}
WAN_LORAS = ("wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
             "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors",
             "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
             "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors")


TEMPLATES = tf.family_templates(("video_wan", "wan2.1_", "text_to_video_wan", "image_to_video_wan", "ltxv_"))


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


def input_video(path: str, seed: int, frames: int = 9, size: tuple[int, int] = (48, 40)) -> None:
    import numpy as np
    rng = np.random.default_rng(seed)
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, "rgb24")))
        out.mux(stream.encode(None))


def input_names(workflows) -> tuple[list[str], list[str]]:
    """(images of LoadImage, videos of LoadVideo) the workflows (subgraphs included) ask for."""
    images, videos = [], []
    for workflow in workflows:
        images += tf.load_image_names(workflow)
        graphs = [workflow]
        while graphs:
            graph = graphs.pop()
            graphs += (graph.get("definitions") or {}).get("subgraphs") or []
            videos += [n["widgets_values"][0] for n in graph.get("nodes") or []
                       if n.get("type") == "LoadVideo" and n.get("widgets_values")]
    return images, videos


def write_video_template_files(base: str, images: list[str], videos: list[str]) -> None:
    import json as _json

    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from models.flux_fixtures import hf_t5, t5_sd
    from models.test_ltxv_vae import TINY_090, _tiny

    models = os.path.join(base, "models")
    folder = lambda name: os.makedirs(os.path.join(models, name), exist_ok=True) or os.path.join(models, name)  # noqa: E731
    natives = {}
    for seed, (name, variant) in enumerate(WAN_DIFFUSION.items()):
        variant = dict(variant)
        ref_channels, camera_channels = variant.pop("ref_conv", None), variant.pop("camera", None)
        native = wan_fixtures.native_sd(wan_fixtures.diffusers_wan(seed=seed, text_dim=TEXT_DIM,
                                                                   image_dim=VISION_DIM, **variant))
        if ref_channels:
            native.update(wan_fixtures.fun_ref_conv(native, ref_channels, seed=seed))
        if camera_channels:
            native.update(wan_fixtures.fun_camera_adapter(native, camera_channels, seed=seed))
        natives[name] = native
        tf.save(tf.scaled_fp8(native) if "fp8_scaled" in name else native, os.path.join(folder("diffusion_models"), name))
        if name.startswith(("wan2.2_t2v", "wan2.2_i2v")):
            kind, noise = name.split("_")[1], name.split("_")[2]
            lora = next(n for n in WAN_LORAS if n.startswith(f"wan2.2_{kind}_") and f"_{noise}_noise" in n)
            save_file(wan_lora(native, seed=seed), os.path.join(folder("loras"), lora))
    name = "wan2.1_vace_14B_fp16.safetensors"
    natives[name] = wan_fixtures.native_sd(wan_fixtures.diffusers_vace(seed=40, text_dim=TEXT_DIM))
    tf.save(natives[name], os.path.join(folder("diffusion_models"), name))
    for seed, (lora, model) in enumerate(OTHER_LORAS.items()):
        save_file(wan_lora(natives[model], seed=50 + seed), os.path.join(folder("loras"), lora))
    proto = wan_fixtures.spiece_model()
    umt5 = wan_fixtures.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(),
                                d_model=TEXT_DIM)
    for name in ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "umt5_xxl_fp16.safetensors"):
        save_file(wan_fixtures.umt5_file_sd(umt5, proto), os.path.join(folder("text_encoders"), name))
    for seed, name in enumerate(("wan_2.1_vae.safetensors", "wan_alpha_2.1_vae_rgb_channel.safetensors",
                                 "wan_alpha_2.1_vae_alpha_channel.safetensors")):
        save_file(wan_fixtures.wan_vae_sd(seed=2 + seed), os.path.join(folder("vae"), name))
    save_file(wan_fixtures.wan22_vae_sd(seed=5, z_dim=48), os.path.join(folder("vae"), "wan2.2_vae.safetensors"))
    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=VISION_DIM, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=32, hidden_act="gelu")).eval()
    save_file({k: v.detach().clone().contiguous() for k, v in vision.state_dict().items()},
              os.path.join(folder("clip_vision"), "clip_vision_h.safetensors"))
    # LTX-Video 0.9 / 0.9.5 all-in-one checkpoints (no text encoder inside) and T5-XXL
    for seed, name in enumerate(("ltx-video-2b-v0.9.safetensors", "ltx-video-2b-v0.9.5.safetensors")):
        ckpt = ltxv_fixtures.to_native(ltxv_fixtures.diffusers_ltxv(seed=11 + seed).state_dict(),
                                       "model.diffusion_model.")
        ckpt.update({"vae." + k: v for k, v in _tiny(seed=12 + seed).state_dict().items()})
        save_file({k: v.contiguous() for k, v in ckpt.items()}, os.path.join(folder("checkpoints"), name),
                  metadata={"config": _json.dumps({"vae": TINY_090})})
    save_file(t5_sd(hf_t5(seed=13)), os.path.join(folder("text_encoders"), "t5xxl_fp16.safetensors"))
    os.makedirs(os.path.join(base, "input"), exist_ok=True)
    for i, image in enumerate(sorted(set(images))):
        tf.input_image(os.path.join(base, "input", image), seed=i)
    for i, video in enumerate(sorted(set(videos))):
        input_video(os.path.join(base, "input", video), seed=i)


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
    write_video_template_files(str(base), *input_names(TEMPLATES.values()))
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


def _formula(prompt: dict, value) -> dict | None:
    """The ComfyMathExpression node a link reads, if it does."""
    if isinstance(value, list) and prompt[value[0]]["class_type"] == "ComfyMathExpression":
        return prompt[value[0]]
    return None


def shrink(prompt: dict, lora_switch: bool = False) -> dict:
    """The test-size changes listed in the module docstring."""
    p = copy.deepcopy(prompt)
    for node in list(p.values()):
        i, kind = node["inputs"], node["class_type"]
        if "width" in i and "length" in i:
            w, h, frames = LTXV if "LTXV" in kind else WAN
            for key, size in (("width", w), ("height", h)):
                formula = _formula(p, i[key])   # a multiple-of-16 rounding: size in, size out
                _set(p, formula["inputs"] if formula else i, "values.a" if formula else key, size)
            formula = _formula(p, i["length"])
            if formula and formula["inputs"]["expression"] == "a * 16 + 1":
                _set(p, formula["inputs"], "values.a", 1)   # seconds at 16 fps: 17 frames
            elif formula:
                _set(p, formula["inputs"], "values.a", 0.25)   # floor(seconds * fps) + 1 = 5
            else:
                _set(p, i, "length", frames)
        if kind in ("LTXVScheduler", "KSampler"):
            _set(p, i, "steps", 2)
        if kind == "KSamplerAdvanced":
            _set(p, i, "steps", 2)
            if i["start_at_step"] == 0:
                _set(p, i, "end_at_step", 1)
            else:
                _set(p, i, "start_at_step", 1)
        if kind == "ComfySwitchNode" and lora_switch:
            _set(p, i, "switch", True)
    return p


def read_frames(path: str) -> list:
    """The frames of an MP4 (PyAV) or an animated WEBP (Pillow: FFmpeg has no animated WEBP
    decoder), as RGB arrays."""
    import numpy as np
    from PIL import Image, ImageSequence
    if path.endswith(".webp"):
        with Image.open(path) as image:
            return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


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
              if prompt[node_id]["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")]
    assert videos
    for item in videos:
        frames = read_frames(os.path.join(env["base"], "output", item["subfolder"], item["filename"]))
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
        frames = read_frames(os.path.join(env["base"], "output", item["subfolder"], item["filename"]))
        outputs.append(json.dumps([f.tolist() for f in frames]))
    assert outputs[0] != outputs[1]


if __name__ == "__main__":   # write the files to a ComfyUI base directory
    write_video_template_files(sys.argv[1] if len(sys.argv) > 1 else ".", *input_names(TEMPLATES.values()))
