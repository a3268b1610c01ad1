"""Wan end to end on tiny fixture files through the engine: text-to-video (UNETLoader +
CLIPLoader type wan + VAELoader + EmptyHunyuanLatentVideo + ModelSamplingSD3 + KSampler +
VAEDecode + CreateVideo/SaveVideo) and image-to-video (CLIPVisionEncode + WanImageToVideo),
plus what the image-to-video nodes hand the model: the mask and image channels beside the
noise and the CLIP-vision tokens."""
from __future__ import annotations

import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm

from . import wan_fixtures as fx

pytest.importorskip("diffusers")
pytest.importorskip("sentencepiece")

_threads = pytest.fixture(scope="module", autouse=True)(fx.one_thread)
TEXT_DIM = 32  # the tiny UMT5's width


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


def _hf_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=32, hidden_act="gelu")
    return CLIPVisionModelWithProjection(cfg).eval()


def _write_models(workspace, i2v: bool = False) -> None:
    from PIL import Image
    from safetensors.torch import save_file
    import sentencepiece as spm
    models = os.path.join(workspace, "models")
    opts = dict(i2v=True, in_channels=36, image_dim=64) if i2v else {}
    dm = fx.diffusers_wan(seed=0, text_dim=TEXT_DIM, **opts)
    save_file(fx.native_sd(dm), os.path.join(models, "diffusion_models", "wan_tiny.safetensors"))
    proto = fx.spiece_model()
    umt5 = fx.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(), d_model=TEXT_DIM)
    save_file(fx.umt5_file_sd(umt5, proto), os.path.join(models, "text_encoders", "umt5_tiny.safetensors"))
    save_file(fx.wan_vae_sd(seed=2), os.path.join(models, "vae", "wan_vae_tiny.safetensors"))
    if i2v:
        vision = {k: v.detach().clone().contiguous() for k, v in _hf_vision().state_dict().items()}
        save_file(vision, os.path.join(models, "clip_vision", "clip_vision_tiny.safetensors"))
        pixels = (torch.rand(40, 48, 3, generator=torch.Generator().manual_seed(5)) * 255).byte().numpy()
        Image.fromarray(pixels).save(os.path.join(workspace, "input", "start.png"))


def _prompt(i2v: bool) -> dict:
    p = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan_tiny.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_tiny.safetensors", "type": "wan"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_vae_tiny.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a cat walks across the street"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "blurry, static"}},
        "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 32, "length": 5, "batch_size": 1}},
        "7": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 8.0}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["7", 0], "seed": 3, "steps": 3, "cfg": 5.0,
                                                   "sampler_name": "uni_pc", "scheduler": "simple",
                                                   "positive": ["4", 0], "negative": ["5", 0],
                                                   "latent_image": ["6", 0], "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
        "10": {"class_type": "CreateVideo", "inputs": {"images": ["9", 0], "fps": 16.0}},
        "11": {"class_type": "SaveVideo", "inputs": {"video": ["10", 0], "filename_prefix": "video/wan",
                                                    "format": "auto", "codec": "auto"}},
    }
    if i2v:
        p["12"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_tiny.safetensors"}}
        p["13"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
        p["14"] = {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["12", 0], "image": ["13", 0],
                                                              "crop": "none"}}
        p["15"] = {"class_type": "WanImageToVideo", "inputs": {
            "positive": ["4", 0], "negative": ["5", 0], "vae": ["3", 0], "width": 32, "height": 32, "length": 5,
            "batch_size": 1, "clip_vision_output": ["14", 0], "start_image": ["13", 0]}}
        p["8"]["inputs"].update(positive=["15", 0], negative=["15", 1], latent_image=["15", 2])
    return p


def _run(prompt: dict) -> dict:
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        sub = eng.submit(prompt)
        assert sub.node_errors == {}
        hist = eng.wait(sub.prompt_id).result(300)
        assert hist["status"]["status_str"] == "success", hist["status"]
        return hist
    finally:
        eng.stop()


@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
def test_prompt_runs_to_a_saved_video(workspace, i2v):
    import av
    _write_models(workspace, i2v)
    hist = _run(_prompt(i2v))
    (saved,) = hist["outputs"]["11"]["images"]
    path = os.path.join(workspace, "output", saved["subfolder"], saved["filename"])
    with av.open(path) as container:
        frames = [f for f in container.decode(video=0)]
    assert len(frames) == 5 and (frames[0].width, frames[0].height) == (32, 32)


def test_image_to_video_conditioning_reaches_the_model(workspace):
    """WanImageToVideo: the start image (padded with grey to ``length``) encoded beside the
    noise, a 4-channel mask that is 1 on the latent frames the image covers, the CLIP-vision
    penultimate features as image tokens."""
    from comfyui.nodes.builtin import vision
    from comfyui.nodes.builtin.wan import WanImageToVideo
    from comfyui.sampling.conditioning import encode_model_conds
    _write_models(workspace, i2v=True)
    model = sdm.load_diffusion_model(os.path.join(workspace, "models", "diffusion_models", "wan_tiny.safetensors"))
    vae = sdm.load_vae(os.path.join(workspace, "models", "vae", "wan_vae_tiny.safetensors"))
    (cv_model,) = vision.CLIPVisionLoader().load_clip("clip_vision_tiny.safetensors")
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(6))
    (clip_out,) = vision.CLIPVisionEncode().encode(cv_model, image, "none")
    text = [[torch.randn(1, 512, TEXT_DIM), {}]]
    pos, _, latent = WanImageToVideo.execute(text, text, vae, 32, 32, 9, 1, start_image=image,
                                             clip_vision_output=clip_out).args
    noise = latent["samples"]
    assert noise.shape == (1, 16, 3, 4, 4)
    conds = encode_model_conds(model.model, [dict(pos[0][1], cross_attn=pos[0][0], model_conds={})], noise,
                               torch.device("cpu"), "positive")
    mc = conds[0]["model_conds"]
    concat = mc["c_concat"].cond
    assert concat.shape == (1, 20, 3, 4, 4)
    assert torch.all(concat[:, :4, 0] == 1) and torch.all(concat[:, :4, 1:] == 0)
    grey = torch.full((9, 32, 32, 3), 0.5)
    from comfyui.nodes.builtin._image_utils import common_upscale
    grey[:1] = common_upscale(image.movedim(-1, 1), 32, 32, "bilinear", "center").movedim(1, -1)
    expected = model.model.process_latent_in(vae.encode(grey))
    assert torch.allclose(concat[:, 4:], expected, atol=1e-5)
    assert torch.equal(mc["clip_fea"].cond, clip_out.penultimate_hidden_states)
    assert mc["clip_fea"].cond.shape == (1, 17, 64)


def test_wan22_5b_image_to_video_keeps_the_start_frame(workspace):
    """Wan 2.2 5B: Wan22ImageToVideoLatent puts the start image's latent in frame 0 under a
    noise mask of 0; the model gets timestep 0 for that frame and the sampler keeps it clean,
    so the sampled latent's first frame is exactly the encoded start image."""
    from safetensors.torch import save_file
    import sentencepiece as spm

    from comfyui.nodes.builtin.conditioning import conditioning_set_values  # noqa: F401
    from comfyui.nodes.builtin.sampling import KSampler
    from comfyui.nodes.builtin.wan import Wan22ImageToVideoLatent
    models = os.path.join(workspace, "models")
    dm = fx.diffusers_wan(seed=0, text_dim=TEXT_DIM, in_channels=48, out_channels=48)
    save_file(fx.native_sd(dm), os.path.join(models, "diffusion_models", "wan22_5b_tiny.safetensors"))
    proto = fx.spiece_model()
    umt5 = fx.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(), d_model=TEXT_DIM)
    save_file(fx.umt5_file_sd(umt5, proto), os.path.join(models, "text_encoders", "umt5_tiny.safetensors"))
    save_file(fx.wan22_vae_sd(seed=2, z_dim=48), os.path.join(models, "vae", "wan22_vae_tiny.safetensors"))

    model = sdm.load_diffusion_model(os.path.join(models, "diffusion_models", "wan22_5b_tiny.safetensors"))
    assert model.model.model_config.name == "wan22_5b"
    clip = sdm.load_clip([os.path.join(models, "text_encoders", "umt5_tiny.safetensors")], clip_type="wan")
    vae = sdm.load_vae(os.path.join(models, "vae", "wan22_vae_tiny.safetensors"))
    start = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(4))
    (latent,) = Wan22ImageToVideoLatent.execute(vae, 32, 32, 9, 1, start_image=start).args
    assert latent["samples"].shape == (1, 48, 3, 2, 2) and latent["noise_mask"][:, :, 0].max() == 0
    encoded = vae.encode(start)
    assert torch.allclose(latent["samples"][:, :, :1], encoded, atol=1e-5)
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a boat in the fog"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    seen = []
    hook = model.model.diffusion_model.register_forward_pre_hook(lambda mod, args: seen.append(args[1].clone()))
    try:
        (out,) = KSampler().sample(model, 7, 3, 4.0, "euler", "simple", pos, neg, latent)
    finally:
        hook.remove()
    samples = out["samples"]
    assert seen and all(t.shape[-1] == 3 and torch.all(t[:, 0] == 0) and torch.all(t[:, 1:] > 0) for t in seen)
    assert torch.allclose(samples[:, :, :1], encoded, atol=1e-5)      # kept
    assert (samples[:, :, 1:] - latent["samples"][:, :, 1:]).abs().max() > 1e-2  # generated


def test_vace_control_video_with_reference_image(workspace):
    """VACE: WanVaceToVideo's control input reaches the control blocks; the reference frame is
    sampled with the video and TrimVideoLatent drops it before decoding."""
    from safetensors.torch import save_file
    import sentencepiece as spm

    from comfyui.nodes.builtin.latent_video import TrimVideoLatent
    from comfyui.nodes.builtin.sampling import KSampler
    from comfyui.nodes.builtin.vae import VAEDecode
    from comfyui.nodes.builtin.wan import WanVaceToVideo
    models = os.path.join(workspace, "models")
    save_file(fx.native_sd(fx.diffusers_vace(seed=0, text_dim=TEXT_DIM)),
              os.path.join(models, "diffusion_models", "wan_vace_tiny.safetensors"))
    proto = fx.spiece_model()
    umt5 = fx.hf_umt5(seed=1, vocab=spm.SentencePieceProcessor(model_proto=proto).get_piece_size(), d_model=TEXT_DIM)
    save_file(fx.umt5_file_sd(umt5, proto), os.path.join(models, "text_encoders", "umt5_tiny.safetensors"))
    save_file(fx.wan_vae_sd(seed=2), os.path.join(models, "vae", "wan_vae_tiny.safetensors"))
    model = sdm.load_diffusion_model(os.path.join(models, "diffusion_models", "wan_vace_tiny.safetensors"))
    assert model.model.model_config.name == "wan21_vace"
    clip = sdm.load_clip([os.path.join(models, "text_encoders", "umt5_tiny.safetensors")], clip_type="wan")
    vae = sdm.load_vae(os.path.join(models, "vae", "wan_vae_tiny.safetensors"))
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a dancer on a stage"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    control = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(3))
    pos, neg, latent, trim = WanVaceToVideo.execute(pos, neg, vae, 32, 32, 5, 1, 1.0, control_video=control,
                                                    reference_image=control[:1]).args
    seen = []
    hook = model.model.diffusion_model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("vace_context")), with_kwargs=True)
    try:
        (sampled,) = KSampler().sample(model, 1, 2, 3.0, "euler", "simple", pos, neg, latent)
    finally:
        hook.remove()
    assert seen and all(v is not None and v.shape[1:] == (1, 96, 3, 4, 4) for v in seen)
    (trimmed,) = TrimVideoLatent.execute(sampled, trim).args
    assert trimmed["samples"].shape == (1, 16, 2, 4, 4)
    (frames,) = VAEDecode().decode(vae, trimmed)
    assert frames.shape == (5, 32, 32, 3)
