"""A full 4-step Euler txt2img with CFG matches diffusers' StableDiffusionPipeline with
EulerDiscreteScheduler on the same tiny SD1 UNet weights and the same initial noise."""
import os
import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models import fixtures as fx  # noqa: E402  (the models' tiny checkpoint builder)

from comfyui.models import convert, memory  # noqa: E402
from comfyui.models import sd as sdm  # noqa: E402
from comfyui.nodes.builtin import sampling as S  # noqa: E402
from comfyui.sampling.noise import prepare_noise  # noqa: E402

SD1_DIFFUSERS = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                     down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                     attention_head_dim=8, norm_num_groups=32)


@pytest.fixture(autouse=True)
def _cpu_fp32():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def test_euler_txt2img_matches_diffusers_pipeline():
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    sd = fx.sd1_state_dict(seed=3)
    model, _, _ = sdm.load_state_dict_guess_config(sd, output_vae=False, output_clip=False)
    ucfg = model.model.model_config.unet_config
    ldm = {k[len("model.diffusion_model."):]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    unet = UNet2DConditionModel(**SD1_DIFFUSERS).eval()
    mapping = convert.unet_to_diffusers(ucfg)
    missing, unexpected = unet.load_state_dict({dk: ldm[lk] for dk, lk in mapping.items() if lk in ldm}, strict=False)
    assert not missing and not unexpected
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   num_train_timesteps=1000, timestep_spacing="linspace",
                                   prediction_type="epsilon")
    pipe = StableDiffusionPipeline(vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    g = torch.Generator().manual_seed(0)
    pos = torch.randn(1, 77, 32, generator=g)
    neg = torch.randn(1, 77, 32, generator=g)
    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    (ours,) = S.KSampler().sample(model, 42, 4, 7.5, "euler", "normal", [[pos, {}]], [[neg, {}]], latent, 1.0)
    noise = prepare_noise(latent["samples"], 42)
    # ComfyUI starts a full-strength schedule at noise * sqrt(1 + sigma_max^2); diffusers'
    # "linspace" spacing multiplies the given latents by sigma_max: pre-scale to start equal.
    smax = float(model.model.model_sampling.sigma_max)
    start = noise * ((1 + smax ** 2) ** 0.5 / smax)
    with torch.no_grad():
        theirs = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, latents=start, height=128, width=128,
                      num_inference_steps=4, guidance_scale=7.5, output_type="latent").images
    # our LATENT is in VAE space (divided by the SD1 scale factor); diffusers returns model space
    ours_model_space = ours["samples"] * 0.18215
    assert theirs.abs().mean() > 1e-2
    torch.testing.assert_close(ours_model_space, theirs, rtol=1e-3, atol=1e-3)
