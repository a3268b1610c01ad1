"""LTX-Video nodes: latent shapes, the scheduler against diffusers' FlowMatchEulerDiscreteScheduler
(exponential time shift with mu from the token count, stretched to the terminal), the sampling
patch, image-to-video masks, guides appended with their positions and cropped again, and the
H.264 preprocessing."""
import math

import pytest
import torch

from comfyui.nodes.builtin import ltxv as N


class _StubVAE:
    """Encodes a frame batch [T,H,W,3] into [1,128,(T-1)//8+1,H/32,W/32] filled with the frame
    means (enough to see which latent frames the nodes place where)."""
    downscale_index_formula = (8, 32, 32)

    def __init__(self):
        self.seen = []

    def encode(self, pixels):
        self.seen.append(tuple(pixels.shape))
        t = (pixels.shape[0] - 1) // 8 + 1
        out = torch.zeros(1, 128, t, pixels.shape[1] // 32, pixels.shape[2] // 32)
        for i in range(t):
            out[:, :, i] = pixels[i * 8].mean() + 1.0
        return out


def _cond():
    return [[torch.zeros(1, 4, 8), {}]]


def test_empty_latent_shape():
    out = N.EmptyLTXVLatentVideo.execute(768, 512, 97, 2).result[0]["samples"]
    assert out.shape == (2, 128, 13, 16, 24) and not out.any()
    assert N.EmptyLTXVLatentVideo.execute(64, 64, 1, 1).result[0]["samples"].shape == (1, 128, 1, 2, 2)


@pytest.mark.parametrize("stretch", [True, False])
def test_scheduler_matches_diffusers(stretch):
    from diffusers import FlowMatchEulerDiscreteScheduler
    latent = {"samples": torch.zeros(1, 128, 4, 16, 24)}  # 1536 tokens
    sigmas = N.LTXVScheduler.execute(30, 2.05, 0.95, stretch, 0.1, latent).result[0]
    assert sigmas.shape == (31,) and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    mu = 0.95 + (1536 - 1024) * (2.05 - 0.95) / 3072
    sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential",
                                            shift_terminal=0.1 if stretch else None)
    sched.set_timesteps(sigmas=torch.linspace(1.0, 0.0, 31)[:-1].tolist(), mu=mu)
    torch.testing.assert_close(sigmas, sched.sigmas.float(), atol=1e-6, rtol=1e-5)
    if stretch:
        assert sigmas[-2].item() == pytest.approx(0.1)
    # without a latent: 4096 tokens -> mu = max_shift
    default = N.LTXVScheduler.execute(4, 2.05, 0.95, False, 0.1).result[0]
    assert default[1].item() == pytest.approx(math.exp(2.05) / (math.exp(2.05) + 1 / 0.75 - 1))


def test_model_sampling_ltxv_sets_the_token_shift():
    from comfyui.models.patcher import ModelPatcher

    class _M(torch.nn.Module):
        pass
    m = ModelPatcher(_M(), load_device="cpu", offload_device="cpu")
    out = N.ModelSamplingLTXV.execute(m, 2.05, 0.95, {"samples": torch.zeros(1, 128, 2, 32, 16)}).result[0]
    ms = out.object_patches["model_sampling"]
    assert ms.shift == pytest.approx(0.95 + (1024 - 1024) * 1.1 / 3072)
    assert float(ms.timestep(torch.tensor(0.4))) == pytest.approx(0.4)  # FLUX type: timestep = sigma


def test_conditioning_sets_frame_rate():
    pos, neg = N.LTXVConditioning.execute(_cond(), _cond(), 24.0).result
    assert pos[0][1]["frame_rate"] == 24.0 and neg[0][1]["frame_rate"] == 24.0


def test_img_to_video_places_the_image_and_masks_it():
    vae = _StubVAE()
    image = torch.full((1, 40, 70, 3), 0.5)
    pos, neg, latent = N.LTXVImgToVideo.execute(_cond(), _cond(), image, vae, 96, 64, 17, 2, 0.8).result
    assert vae.seen == [(1, 64, 96, 3)]  # resized to the video size before encoding
    s, m = latent["samples"], latent["noise_mask"]
    assert s.shape == (2, 128, 3, 2, 3) and m.shape == (2, 1, 3, 1, 1)
    assert torch.allclose(s[:, :, 0], torch.tensor(1.5)) and not s[:, :, 1:].any()
    assert m[:, 0, :, 0, 0].tolist() == [[pytest.approx(0.2), 1.0, 1.0]] * 2


def test_add_guide_then_crop_guides():
    vae = _StubVAE()
    latent = N.EmptyLTXVLatentVideo.execute(64, 64, 33, 1).result[0]  # 5 latent frames
    frames = torch.rand(17, 64, 64, 3)  # 17 pictures -> 3 latent frames
    pos, neg, out = N.LTXVAddGuide.execute(_cond(), _cond(), vae, latent, frames, 9, 1.0).result
    s, m = out["samples"], out["noise_mask"]
    # picture 9 = latent frame 2: the guide's first 2 latent frames (for video latents 2, 3) are
    # appended as keyframes, its third replaces video latent frame 4
    assert s.shape[2] == 7 and m.shape == (1, 1, 7, 1, 1)
    assert torch.allclose(s[:, :, 5], frames[0].mean() + 1) and torch.allclose(s[:, :, 6], frames[8].mean() + 1)
    assert torch.allclose(s[:, :, 4], frames[16].mean() + 1) and not s[:, :, :4].any()
    assert m[0, 0, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    idxs = pos[0][1]["keyframe_idxs"]
    assert idxs.shape == (1, 3, 2 * 2 * 2)
    assert sorted(set(idxs[0, 0].tolist())) == [9.0, 17.0]  # pixel frame of each guide latent frame
    assert sorted(set(idxs[0, 1].tolist())) == [0.0, 32.0]
    pos2, neg2, cropped = N.LTXVCropGuides.execute(pos, neg, out).result
    assert cropped["samples"].shape[2] == 5 and cropped["noise_mask"].shape[2] == 5
    assert pos2[0][1]["keyframe_idxs"] is None and neg2[0][1]["keyframe_idxs"] is None
    # nothing to crop without guides
    _, _, same = N.LTXVCropGuides.execute(_cond(), _cond(), latent).result
    assert same["samples"].shape == latent["samples"].shape


def test_preprocess_compresses_through_h264():
    pytest.importorskip("av")
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    image = torch.stack([y, x, (x + y) / 2], dim=-1)[None].repeat(2, 1, 1, 1)
    light = N.LTXVPreprocess.execute(image, 1).result[0]
    heavy = N.LTXVPreprocess.execute(image, 60).result[0]
    assert light.shape == image.shape
    assert (light - image).abs().mean() < (heavy - image).abs().mean() < 0.2
    assert N.LTXVPreprocess.execute(image, 0).result[0] is image
