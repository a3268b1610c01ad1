"""5-D video latents [B,C,T,H,W] through the latent nodes, the sampler (a tiny causal 3-D
model), masks over time, and the video VAE hook: VAEEncode / VAEDecode of frame batches and
VAEDecodeTiled / VAEEncodeTiled with temporal tiling against the untiled result."""
import os
import sys

import pytest
import torch
from torch import nn

from comfyui.models.video_vae import VideoVAE
from comfyui.nodes.builtin import latent as L
from comfyui.nodes.builtin import vae as V
from comfyui.nodes.builtin.latent_video import EmptyHunyuanLatentVideo, TrimVideoLatent
from comfyui.sampling import samplers as smp
from comfyui.sampling.noise import prepare_noise

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sampling"))
from sampling_toy import GaussianModel, ToyPatcher, cond  # noqa: E402


def lat(t, **kw):
    return {"samples": t, **kw}


def _video(b=1, c=4, t=5, h=6, w=8, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ latent nodes
def test_empty_hunyuan_latent_video_shape():
    (out,) = EmptyHunyuanLatentVideo().generate(848, 480, 25, 2)
    assert out["samples"].shape == (2, 16, 7, 60, 106)
    assert torch.count_nonzero(out["samples"]) == 0
    (one,) = EmptyHunyuanLatentVideo().generate(64, 32, 1)
    assert one["samples"].shape == (1, 16, 1, 4, 8)
    (odd,) = EmptyHunyuanLatentVideo().generate(64, 32, 8)  # 8 pictures: (8-1)//4+1 latent frames
    assert odd["samples"].shape[2] == 2


@pytest.mark.parametrize("method", L.UPSCALE_METHODS)
def test_upscale_acts_on_each_frame(method):
    x = _video(b=2, t=3)
    (out,) = L.LatentUpscale().upscale(lat(x), method, 128, 96, "disabled")
    assert out["samples"].shape == (2, 4, 3, 12, 16)
    for t in range(3):
        (frame,) = L.LatentUpscale().upscale(lat(x[:, :, t].contiguous()), method, 128, 96, "disabled")
        torch.testing.assert_close(out["samples"][:, :, t], frame["samples"])
    (by,) = L.LatentUpscaleBy().upscale(lat(x), method, 2.0)
    assert by["samples"].shape == (2, 4, 3, 12, 16)


def test_crop_flip_rotate_keep_time():
    x = _video(t=4, h=16, w=16)
    (crop,) = L.LatentCrop().crop(lat(x), 64, 32, 16, 8)
    torch.testing.assert_close(crop["samples"], x[:, :, :, 1:5, 2:10])
    (flip,) = L.LatentFlip().flip(lat(x), "y-axis: horizontally")
    torch.testing.assert_close(flip["samples"], x.flip(-1))
    (rot,) = L.LatentRotate().rotate(lat(x), "90 degrees")
    assert rot["samples"].shape == x.shape
    torch.testing.assert_close(rot["samples"][:, :, 2], torch.rot90(x[:, :, 2], 1, dims=[3, 2]))


def test_composite_and_masked_composite_over_time():
    dst, src = torch.zeros(1, 4, 3, 8, 8), torch.ones(1, 4, 3, 4, 4)
    (out,) = L.LatentComposite().composite(lat(dst), lat(src), 16, 8)
    assert out["samples"][:, :, :, 1:5, 2:6].eq(1).all() and out["samples"].sum() == 4 * 3 * 16
    # a one-frame mask applies to every frame
    mask = torch.zeros(1, 4, 4)
    mask[:, :, :2] = 1.0
    (m1,) = L.LatentCompositeMasked().composite(lat(dst), lat(src), 0, 0, False, mask)
    assert m1["samples"][:, :, :, :4, :2].eq(1).all() and m1["samples"][:, :, :, :4, 2:].eq(0).all()
    # a mask per frame applies to its frame
    per = torch.zeros(3, 4, 4)
    per[1] = 1.0
    (m3,) = L.LatentCompositeMasked().composite(lat(dst), lat(src), 0, 0, False, per)
    assert m3["samples"][:, :, 1, :4, :4].eq(1).all()
    assert m3["samples"][:, :, 0].eq(0).all() and m3["samples"][:, :, 2].eq(0).all()
    with pytest.raises(ValueError, match="frame"):
        L.LatentComposite().composite(lat(dst), lat(torch.ones(1, 4, 2, 4, 4)), 0, 0)


def test_batch_nodes_and_trim():
    a, b = _video(t=3, seed=1), _video(t=3, seed=2)
    (both,) = L.LatentBatch().batch(lat(a), lat(b))
    assert both["samples"].shape == (2, 4, 3, 6, 8) and both["batch_index"] == [0, 0]
    (one,) = L.LatentFromBatch().frombatch(both, 1, 1)
    torch.testing.assert_close(one["samples"], b)
    (rep,) = L.RepeatLatentBatch().repeat(lat(a), 3)
    assert rep["samples"].shape == (3, 4, 3, 6, 8)
    with pytest.raises(ValueError, match="frame counts"):
        L.LatentBatch().batch(lat(a), lat(_video(t=2)))
    (trim,) = TrimVideoLatent.execute(lat(a), 2).result
    torch.testing.assert_close(trim["samples"], a[:, :, 2:])


def test_noise_mask_is_broadcast_over_time():
    (masked,) = L.SetLatentNoiseMask().set_mask(lat(_video()), torch.ones(1, 48, 64))
    shape = (2, 4, 5, 6, 8)
    m = smp.prepare_mask(masked["noise_mask"], shape, "cpu")
    assert m.shape == shape and torch.all(m == 1)
    # N mask frames are stretched over the T latent frames
    frames = torch.zeros(9, 48, 64)
    frames[:2] = 1.0  # the first pictures
    m = smp.prepare_mask(frames, shape, "cpu")
    assert m.shape == shape and m[:, :, 0].eq(1).all() and m[:, :, -1].eq(0).all()


# ------------------------------------------------------------------------------ sampler
class CausalVideoDenoiser(nn.Module):
    """A 3-D network: a causal temporal convolution (frame t sees t-1 and t) followed by the
    exact denoiser of N(mu, s^2) data. It only accepts 5-D input."""

    def __init__(self, channels=4, s=0.5):
        super().__init__()
        self.s = s
        self.conv = nn.Conv3d(channels, channels, (2, 1, 1), bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(channels):
                self.conv.weight[c, c, 1] = 1.0   # current frame
                self.conv.weight[c, c, 0] = 0.1   # previous frame
        self.shapes = []

    def forward(self, x, sigma, mu):
        assert x.ndim == 5, x.shape
        self.shapes.append(tuple(x.shape))
        h = self.conv(torch.cat([x[:, :, :1], x], dim=2))
        s2 = self.s ** 2
        sigma = sigma.reshape(-1, 1, 1, 1, 1)
        return (s2 * h + sigma ** 2 * mu) / (s2 + sigma ** 2)


class VideoToyModel(GaussianModel):
    def __init__(self):
        super().__init__()
        self.net = CausalVideoDenoiser()

    def apply_model(self, x, t, c_crossattn=None, **kwargs):
        self.calls += 1
        mu = c_crossattn.float().mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1)
        return self.net(x, t.to(x.dtype), mu)


def test_ksampler_on_video_latents_with_a_3d_model():
    model = VideoToyModel()
    p = ToyPatcher(model)
    latent = torch.zeros(1, 4, 5, 6, 8)
    out = smp.common_ksampler(p, 3, 6, 4.0, "euler", "normal", cond(0.5), cond(-1.0), lat(latent))[0]["samples"]
    assert out.shape == (1, 4, 5, 6, 8)
    assert set(model.net.shapes) == {(2, 4, 5, 6, 8)}  # cond + uncond batched, time kept
    torch.testing.assert_close(out, smp.common_ksampler(p, 3, 6, 4.0, "euler", "normal", cond(0.5), cond(-1.0),
                                                        lat(latent))[0]["samples"])
    # causal model, per-frame sampler: changing the last frame of the input changes no earlier frame
    src = _video(t=5, seed=4)
    changed = src.clone()
    changed[:, :, -1] += 3.0
    a = smp.common_ksampler(p, 3, 6, 4.0, "euler", "normal", cond(0.5), cond(-1.0), lat(src), denoise=0.6)[0]
    b = smp.common_ksampler(p, 3, 6, 4.0, "euler", "normal", cond(0.5), cond(-1.0), lat(changed), denoise=0.6)[0]
    torch.testing.assert_close(a["samples"][:, :, :-1], b["samples"][:, :, :-1])
    assert not torch.allclose(a["samples"][:, :, -1], b["samples"][:, :, -1])


def test_video_noise_and_sampling_match_the_flattened_latent():
    """The initial noise of a 5-D latent is torch.randn of its shape from the seed (as ComfyUI),
    and an elementwise model gives the same result on [B,C,T,H,W] as on [B,C,T*H,W]."""
    latent = torch.zeros(2, 4, 3, 4, 6)
    noise = prepare_noise(latent, 11)
    torch.testing.assert_close(noise, torch.randn(latent.shape, generator=torch.manual_seed(11)))
    p = ToyPatcher(GaussianModel())
    five = smp.common_ksampler(p, 11, 5, 3.0, "dpmpp_2m", "karras", cond(0.2), cond(-0.5), lat(latent))[0]["samples"]
    four = smp.common_ksampler(p, 11, 5, 3.0, "dpmpp_2m", "karras", cond(0.2), cond(-0.5),
                               lat(latent.reshape(2, 4, 12, 6)))[0]["samples"]
    torch.testing.assert_close(five.reshape(2, 4, 12, 6), four)


def test_noise_mask_keeps_frames_outside_the_mask():
    p = ToyPatcher(VideoToyModel())
    src = _video(t=4, h=8, w=8, seed=3)
    mask = torch.ones(4, 64, 64)
    mask[0] = 0.0  # keep the first frame (an image-to-video style anchor)
    out = smp.common_ksampler(p, 5, 6, 1.0, "euler", "normal", cond(0.5), cond(0.0),
                              lat(src, noise_mask=mask))[0]["samples"]
    torch.testing.assert_close(out[:, :, 0], src[:, :, 0])
    assert not torch.allclose(out[:, :, 1:], src[:, :, 1:])
    # one mask frame covers all latent frames: the right half is kept everywhere
    half = torch.ones(1, 64, 64)
    half[:, :, 32:] = 0.0
    out = smp.common_ksampler(p, 5, 6, 1.0, "euler", "normal", cond(0.5), cond(0.0),
                              lat(src, noise_mask=half))[0]["samples"]
    torch.testing.assert_close(out[..., 4:], src[..., 4:])


def test_empty_image_latent_gets_a_time_axis_for_a_video_model():
    model = VideoToyModel()
    model.latent_format.latent_dimensions = 3
    try:
        fixed = smp.fix_empty_latent_channels(ToyPatcher(model), torch.zeros(1, 4, 6, 8))
    finally:
        del model.latent_format.latent_dimensions
    assert fixed.shape == (1, 4, 1, 6, 8)


# ------------------------------------------------------------------------------ video VAE
class TinyCausalVideoAE(nn.Module):
    """A causal video autoencoder (time /4, space /8; first picture alone), 1x1 spatial ops.

    decode: latent frame j mixes z_j with z_{j-1} (causal conv, the first frame padded by
    itself), then turns into 1 picture (j = 0) or 4 pictures (one linear head per sub-frame).
    encode: the pictures of each latent frame are averaged, then the same kind of causal mix."""

    def __init__(self, c=4, hidden=8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.dec_t = nn.Conv3d(c, hidden, (2, 1, 1))
        self.heads = nn.ModuleList(nn.Conv3d(hidden, 3 * 64, 1) for _ in range(4))
        self.enc_in = nn.Conv3d(3 * 64, hidden, 1)
        self.enc_t = nn.Conv3d(hidden, c, (2, 1, 1))
        for prm in self.parameters():
            with torch.no_grad():
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.3)
        self.decode_lengths = []
        self.encode_lengths = []

    @staticmethod
    def _causal(conv, x):
        return conv(torch.cat([x[:, :, :1], x], dim=2))

    def decode(self, z):
        self.decode_lengths.append(z.shape[2])
        h = torch.tanh(self._causal(self.dec_t, z))
        frames = [self.heads[3](h[:, :, :1])]
        for j in range(1, z.shape[2]):
            frames += [head(h[:, :, j:j + 1]) for head in self.heads]
        x = torch.cat(frames, dim=2)  # [B, 3*64, T, h, w]
        b, _, t, hh, ww = x.shape
        x = x.reshape(b, 3, 8, 8, t, hh, ww).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, 3, t, hh * 8, ww * 8)
        return torch.tanh(x)

    def encode(self, x):
        self.encode_lengths.append(x.shape[2])
        b, _, t, H, W = x.shape
        x = x.reshape(b, 3, t, H // 8, 8, W // 8, 8).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, 192, t, H // 8, W // 8)
        groups = [x[:, :, :1]] + [x[:, :, 4 * j - 3:4 * j + 1].mean(2, keepdim=True) for j in range(1, (t - 1) // 4 + 1)]
        h = torch.tanh(self.enc_in(torch.cat(groups, dim=2)))
        return self._causal(self.enc_t, h)


@pytest.fixture
def video_vae():
    return VideoVAE(TinyCausalVideoAE(), latent_channels=4, temporal_compression=4, spatial_compression=8,
                    device=torch.device("cpu"), dtype=torch.float32)


def test_video_vae_hook_attributes(video_vae):
    assert video_vae.latent_dim == 3 and video_vae.temporal_compression_decode() == 4
    assert video_vae.spacial_compression_decode() == 8 and video_vae.spacial_compression_encode() == 8
    assert video_vae.upscale_ratio[0](7) == 25 and video_vae.downscale_ratio[0](25) == 7
    assert video_vae.upscale_index_formula == (4, 8, 8)


def test_vae_encode_decode_frame_batches(video_vae):
    frames = torch.rand(17, 40, 48, 3)  # one video of 17 pictures, cropped to 40x48 (already /8)
    (enc,) = V.VAEEncode().encode(video_vae, frames)
    assert enc["samples"].shape == (1, 4, 5, 5, 6)
    (images,) = V.VAEDecode().decode(video_vae, enc)
    assert images.shape == (17, 40, 48, 3) and images.min() >= 0 and images.max() <= 1
    # two videos in a latent batch come back as one IMAGE batch, video after video
    two = torch.cat([enc["samples"], enc["samples"] * 0.5])
    (both,) = V.VAEDecode().decode(video_vae, lat(two))
    assert both.shape == (34, 40, 48, 3)
    torch.testing.assert_close(both[:17], images)


@pytest.mark.parametrize("temporal_size,temporal_overlap,expect_tile", [(16, 8, 4), (12, 4, 3), (8, 4, 2)])
def test_vae_decode_tiled_in_time_equals_untiled(video_vae, temporal_size, temporal_overlap, expect_tile):
    z = _video(t=11, h=5, w=6, seed=7)
    (full,) = V.VAEDecode().decode(video_vae, lat(z))
    net = video_vae.first_stage_model
    net.decode_lengths.clear()
    (tiled,) = V.VAEDecodeTiled().decode(video_vae, lat(z), tile_size=512, overlap=64,
                                         temporal_size=temporal_size, temporal_overlap=temporal_overlap)
    assert tiled.shape == full.shape == (41, 40, 48, 3)
    torch.testing.assert_close(tiled, full, rtol=0, atol=1e-5)
    # memory bounded by the tile: no call saw more latent frames than a tile
    assert max(net.decode_lengths) == expect_tile and len(net.decode_lengths) > 1


def test_vae_decode_tiled_in_space_and_time(video_vae):
    z = _video(t=6, h=12, w=16, seed=8)
    (full,) = V.VAEDecode().decode(video_vae, lat(z))
    (tiled,) = V.VAEDecodeTiled().decode(video_vae, lat(z), tile_size=64, overlap=32,
                                         temporal_size=12, temporal_overlap=4)
    torch.testing.assert_close(tiled, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("temporal_size,max_pictures", [(16, 13), (12, 9)])
def test_vae_encode_tiled_in_time_equals_untiled(video_vae, temporal_size, max_pictures):
    """The encoder's context latent sees one picture instead of four, so its receptive field (one
    latent back) needs two latent frames of overlap: temporal_overlap 8 pictures."""
    frames = torch.rand(29, 32, 32, 3, generator=torch.Generator().manual_seed(5))
    (full,) = V.VAEEncode().encode(video_vae, frames)
    net = video_vae.first_stage_model
    net.encode_lengths.clear()
    (tiled,) = V.VAEEncodeTiled().encode(video_vae, frames, tile_size=512, overlap=64,
                                         temporal_size=temporal_size, temporal_overlap=8)
    assert tiled["samples"].shape == full["samples"].shape == (1, 4, 8, 4, 4)
    torch.testing.assert_close(tiled["samples"], full["samples"], rtol=0, atol=1e-5)
    assert max(net.encode_lengths) == max_pictures and len(net.encode_lengths) > 1


def test_conditioning_masks_apply_to_every_frame():
    """ConditioningSetMask with a one-frame mask on a video latent: the left half of every latent
    frame follows one prompt, the right half the other (cfg 1, elementwise toy model)."""
    from comfyui.nodes.builtin.conditioning import ConditioningCombine, ConditioningSetMask

    left = torch.zeros(1, 32, 64)
    left[..., :32] = 1.0
    (a,) = ConditioningSetMask().append(cond(1.0), left, "default", 1.0)
    (b,) = ConditioningSetMask().append(cond(-1.0), 1.0 - left, "default", 1.0)
    (both,) = ConditioningCombine().combine(a, b)
    p = ToyPatcher(GaussianModel())
    latent = torch.zeros(1, 4, 3, 4, 8)
    out = smp.common_ksampler(p, 2, 8, 1.0, "euler", "normal", both, cond(0.0), lat(latent))[0]["samples"]
    only_a = smp.common_ksampler(p, 2, 8, 1.0, "euler", "normal", cond(1.0), cond(0.0), lat(latent))[0]["samples"]
    only_b = smp.common_ksampler(p, 2, 8, 1.0, "euler", "normal", cond(-1.0), cond(0.0), lat(latent))[0]["samples"]
    torch.testing.assert_close(out[..., :4], only_a[..., :4], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[..., 4:], only_b[..., 4:], rtol=1e-4, atol=1e-4)


def test_sampler_nodes_agree_on_video_latents():
    """KSampler, SamplerCustom and SamplerCustomAdvanced (the Hunyuan/Wan templates' stack) give
    the same video from the same seed, and KSamplerAdvanced's step ranges chain on 5-D latents
    (the Wan 2.2 two-expert workflows)."""
    from comfyui.nodes.builtin import sampling as nodes

    p = ToyPatcher(VideoToyModel())
    (latent,) = EmptyHunyuanLatentVideo().generate(64, 32, 9)
    latent = {"samples": latent["samples"][:, :4]}  # the toy model's 4 channels
    (ks,) = nodes.KSampler().sample(p, 7, 6, 2.0, "euler", "simple", cond(0.5), cond(0.0), latent, 1.0)
    assert ks["samples"].shape == (1, 4, 3, 4, 8)
    (sigmas,) = nodes.BasicScheduler().get_sigmas(p, "simple", 6, 1.0)
    (sampler,) = nodes.KSamplerSelect().get_sampler("euler")
    (guider,) = nodes.CFGGuider().get_guider(p, cond(0.5), cond(0.0), 2.0)
    (noise,) = nodes.RandomNoise().get_noise(7)
    out, denoised = nodes.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)
    torch.testing.assert_close(out["samples"], ks["samples"])
    assert denoised["samples"].shape == (1, 4, 3, 4, 8)
    (high,) = nodes.KSamplerAdvanced().sample(p, "enable", 7, 6, 2.0, "euler", "simple", cond(0.5), cond(0.0),
                                             latent, 0, 3, "enable")
    (low,) = nodes.KSamplerAdvanced().sample(p, "disable", 7, 6, 2.0, "euler", "simple", cond(0.5), cond(0.0),
                                            high, 3, 10000, "disable")
    torch.testing.assert_close(low["samples"], ks["samples"], rtol=1e-4, atol=1e-4)
