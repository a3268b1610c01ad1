"""The Wan conditioning nodes (what they put beside the noise: pictures, masks, CLIP-vision
tokens), CFG-Zero*, the DiT block-replacement hook behind SkipLayerGuidanceDiT, and
UNetTemporalAttentionMultiply."""
from __future__ import annotations

import pytest
import torch

from comfyui.models.clip_vision import Output
from comfyui.nodes.builtin import wan

TEXT = [[torch.zeros(1, 4, 8), {}]]


class RecordingVAE:
    """A VAE socket stand-in: 8x spatial, 4x temporal, 16 channels; records what it encodes."""
    latent_channels = 16

    def __init__(self):
        self.encoded = []

    def spacial_compression_encode(self):
        return 8

    def encode(self, pictures):
        self.encoded.append(pictures.clone())
        t = (pictures.shape[0] - 1) // 4 + 1
        return torch.full((1, 16, t, pictures.shape[1] // 8, pictures.shape[2] // 8), float(len(self.encoded)))


def _cv(tokens, value):
    return Output(penultimate_hidden_states=torch.full((1, tokens, 8), value))


def test_first_last_frame_pictures_mask_and_clip_tokens():
    vae = RecordingVAE()
    start, end = torch.full((1, 32, 32, 3), 0.2), torch.full((1, 32, 32, 3), 0.9)
    pos, neg, latent = wan.WanFirstLastFrameToVideo.execute(
        TEXT, TEXT, vae, 32, 32, 9, 2, start_image=start, end_image=end,
        clip_vision_start_image=_cv(3, 1.0), clip_vision_end_image=_cv(3, 2.0)).args
    assert latent["samples"].shape == (2, 16, 3, 4, 4)
    (pictures,) = vae.encoded
    assert pictures.shape == (9, 32, 32, 3)
    assert torch.all(pictures[0] == 0.2) and torch.all(pictures[-1] == 0.9) and torch.all(pictures[1:-1] == 0.5)
    mask = pos[0][1]["concat_mask"]
    assert mask.shape == (1, 4, 3, 4, 4)  # 4 pictures per latent frame, folded into channels
    assert torch.all(mask[:, :, 0] == 0) and torch.all(mask[:, :, 1] == 1)
    assert torch.all(mask[:, :3, 2] == 1) and torch.all(mask[:, 3, 2] == 0)  # the last picture slot
    tokens = pos[0][1]["clip_vision_output"].penultimate_hidden_states
    assert tokens.shape == (1, 6, 8) and tokens[0, 0, 0] == 1.0 and tokens[0, 5, 0] == 2.0
    assert neg[0][1]["concat_latent_image"] is pos[0][1]["concat_latent_image"]


def test_fun_inpaint_is_first_last_frame_with_one_clip_output():
    vae = RecordingVAE()
    pos, _, _ = wan.WanFunInpaintToVideo.execute(TEXT, TEXT, vae, 32, 32, 5, 1, start_image=torch.rand(1, 32, 32, 3),
                                                 clip_vision_output=_cv(2, 3.0)).args
    assert pos[0][1]["clip_vision_output"].penultimate_hidden_states.shape == (1, 2, 8)
    assert pos[0][1]["concat_mask"].shape == (1, 4, 2, 4, 4)


def test_fun_control_channels():
    from comfyui.models.latent_formats import Wan21
    vae = RecordingVAE()
    control = torch.rand(5, 48, 40, 3)
    pos, _, latent = wan.WanFunControlToVideo.execute(TEXT, TEXT, vae, 32, 32, 5, 1, start_image=torch.rand(1, 32, 32, 3),
                                                      control_video=control).args
    concat = pos[0][1]["concat_latent_image"]
    assert concat.shape == (1, 32, 2, 4, 4) and "concat_mask" not in pos[0][1]
    assert torch.all(concat[:, :16] == 2.0)             # the control video (encoded second)
    assert torch.all(concat[:, 16:, 0] == 1.0)          # the start image's latent frame
    empty = Wan21().process_in(concat[:, 16:, 1:])      # the rest normalises to zero
    assert torch.allclose(empty, torch.zeros_like(empty), atol=1e-6)
    assert vae.encoded[1].shape == (5, 32, 32, 3)       # resized to the target size


def test_image_to_video_without_image_sets_only_clip_output():
    vae = RecordingVAE()
    pos, _, latent = wan.WanImageToVideo.execute(TEXT, TEXT, vae, 64, 32, 13, 1, clip_vision_output=_cv(2, 1.0)).args
    assert latent["samples"].shape == (1, 16, 4, 4, 8)
    assert "concat_latent_image" not in pos[0][1] and "clip_vision_output" in pos[0][1] and not vae.encoded


def test_cfg_zero_star_scales_the_unconditional_prediction():
    class M:
        def clone(self):
            c = M()
            c.fns = []
            c.set_model_sampler_post_cfg_function = lambda fn: c.fns.append(fn)
            return c

    (patched,) = wan.CFGZeroStar.execute(M()).args
    (fn,) = patched.fns
    g = torch.Generator().manual_seed(0)
    x, cond, uncond = (torch.randn(2, 4, 3, 2, 2, generator=g) for _ in range(3))
    s = 5.0
    out = fn({"cond_scale": s, "input": x, "cond_denoised": cond, "uncond_denoised": uncond,
              "denoised": uncond + s * (cond - uncond)})
    for b in range(2):
        eps_c, eps_u = (x[b] - cond[b]).flatten(), (x[b] - uncond[b]).flatten()
        alpha = (eps_c @ eps_u) / (eps_u @ eps_u)
        expected = alpha * uncond[b] + s * (cond[b] - alpha * uncond[b])
        assert torch.allclose(out[b], expected, atol=1e-5)


def test_dit_block_replacement_skips_blocks():
    pytest.importorskip("diffusers")
    from comfyui.models.wan.detection import detect
    from comfyui.models.wan.model import WanModel
    from tests.models import wan_fixtures as fx
    native = fx.native_sd(fx.diffusers_wan(seed=0, layers=3))
    model = WanModel(**detect(native, "")).eval()
    model.load_state_dict(native)
    x, t, ctx = torch.randn(1, 16, 2, 4, 4), torch.tensor([400.0]), torch.randn(1, 16, 64)
    options = wan._with_skipped({}, "double_block", [1])["transformer_options"]
    with torch.no_grad():
        skipped = model(x, t, ctx, transformer_options=options)
        full = model(x, t, ctx)
        del model.blocks[1]
        without = model(x, t, ctx)
    assert torch.allclose(skipped, without, atol=1e-6) and (skipped - full).abs().max() > 1e-4


def test_temporal_attention_multiply_scales_output_projections():
    from comfyui.models.patcher import ModelPatcher

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.to_out = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn1, self.attn2 = Attn(), Attn()
            self.block = torch.nn.Module()
            self.block.time_stack = torch.nn.Module()
            self.block.time_stack.attn1 = Attn()

    net = Net()
    original = {k: v.clone() for k, v in net.state_dict().items()}
    patcher = ModelPatcher(net, torch.device("cpu"), torch.device("cpu"))
    (out,) = wan.UNetTemporalAttentionMultiply.execute(patcher, 2.0, 3.0, 0.5, 1.0).args
    out.patch_model(torch.device("cpu"))
    sd = out.model.state_dict()
    assert torch.allclose(sd["attn1.to_out.0.weight"], original["attn1.to_out.0.weight"] * 2.0)
    assert torch.allclose(sd["block.time_stack.attn1.to_out.0.bias"], original["block.time_stack.attn1.to_out.0.bias"] * 3.0)
    assert torch.allclose(sd["attn2.to_out.0.weight"], original["attn2.to_out.0.weight"] * 0.5)
    out.unpatch_model(torch.device("cpu"))


def test_vace_control_split_mask_folding_and_reference_frame():
    vae = RecordingVAE()
    control = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(5, 32, 32)
    masks[:, :, 16:] = 1.0  # generate the right half
    masks[:, 0, 0] = 1.0    # one pixel of the first 8x8 cell
    pos, neg, latent, trim = wan.WanVaceToVideo.execute(TEXT, TEXT, vae, 32, 32, 5, 1, 0.8, control_video=control,
                                                        control_masks=masks,
                                                        reference_image=torch.rand(1, 32, 32, 3)).args
    assert trim == 1 and latent["samples"].shape == (1, 16, 3, 4, 4)  # 2 latent frames + the reference
    reference, inactive, reactive = vae.encoded
    assert torch.allclose(inactive[:, :, 16:], torch.full_like(inactive[:, :, 16:], 0.5))  # masked out: grey
    assert torch.allclose(inactive[:, 1:, :16], control[:, 1:, :16]) and torch.all(inactive[:, 0, 0] == 0.5)
    assert torch.allclose(reactive[:, :, 16:], control[:, :, 16:]) and torch.all(reactive[:, 1:, :16] == 0.5)
    (frames,) = pos[0][1]["vace_frames"]
    assert frames.shape == (1, 32, 3, 4, 4)  # [reference ; control] in time, inactive ++ reactive channels
    (mask,) = pos[0][1]["vace_mask"]
    assert mask.shape == (1, 64, 3, 4, 4)
    assert torch.all(mask[:, :, 0] == 0)          # the reference frame is given
    assert torch.all(mask[:, :, 1:, :, 2:] == 1) and torch.all(mask[:, 1:, 1:, :, :2] == 0)
    assert torch.all(mask[:, 0, 1, 0, 0] == 1)    # cell (0, 0)'s first pixel, in channel 0
    assert pos[0][1]["vace_strength"] == [0.8]
    pos2, _, _, _ = wan.WanVaceToVideo.execute(pos, neg, RecordingVAE(), 32, 32, 5, 1, 0.5).args
    assert len(pos2[0][1]["vace_frames"]) == 2 and pos2[0][1]["vace_strength"] == [0.8, 0.5]


def test_wan22_fun_control_conditioning_reaches_the_reference_model():
    """Wan22FunControlToVideo: control latents, a 4-channel "generate everything" mask at
    channel 16, an empty start-image half, and the reference image's latent; a ref_conv model
    gets them as c_concat (control | mask 0 | zero image) and the normalised reference frame."""
    from comfyui.models.latent_formats import Wan21
    from comfyui.models.registry import detect_family
    from models import wan_fixtures as fx

    vae = RecordingVAE()
    pos, neg, latent = wan.Wan22FunControlToVideo.execute(
        TEXT, TEXT, vae, 32, 32, 5, 1, ref_image=torch.rand(2, 48, 40, 3), control_video=torch.rand(5, 48, 40, 3)).args
    cond = pos[0][1]
    assert latent["samples"].shape == (1, 16, 2, 4, 4) and cond["concat_latent_image"].shape == (1, 32, 2, 4, 4)
    assert torch.all(cond["concat_latent_image"][:, :16] == 1.0)     # the control video, encoded first
    empty = Wan21().process_in(cond["concat_latent_image"][:, 16:])
    assert torch.allclose(empty, torch.zeros_like(empty), atol=1e-6)
    assert cond["concat_mask_index"] == 16 and torch.all(cond["concat_mask"] == 1.0)
    (reference,) = cond["reference_latents"]
    assert torch.all(reference == 2.0) and vae.encoded[1].shape == (1, 32, 32, 3)   # first picture, resized
    assert neg[0][1]["reference_latents"][0] is reference

    native = fx.native_sd(fx.diffusers_wan(seed=3, in_channels=52))
    native.update(fx.fun_ref_conv(native, 16))
    family, config = detect_family(native, "")
    model = family.model_class(config, family)
    noise = torch.zeros(1, 16, 2, 4, 4)
    conds = model.extra_conds(noise=noise, **cond)
    concat = conds["c_concat"].cond
    assert concat.shape == (1, 36, 2, 4, 4) and torch.all(concat[:, 16:20] == 0.0)
    assert torch.allclose(concat[:, :16], Wan21().process_in(torch.ones(1, 16, 2, 4, 4)))
    assert torch.allclose(conds["reference_latent"].cond, Wan21().process_in(reference)[:, :, 0])


def _rays(pose, width=32, height=32, length=5, **kw):
    from comfyui.nodes.builtin.camera_trajectory import WanCameraEmbedding
    embedding, w, h, n = WanCameraEmbedding.execute(pose, width, height, length, **kw).args
    assert (w, h, n) == (width, height, length)
    assert embedding.shape == (1, 24, (length - 1) // 4 + 1, height, width)
    # channel c of picture k of latent frame g at 4c + k; picture 0 alone (x4) in frame 0
    pictures = [embedding[0, k::4, g] for g in range(embedding.shape[2]) for k in range(4)]
    return torch.stack(pictures[3:]).permute(0, 2, 3, 1)   # [length, H, W, 6]


def test_camera_embedding_is_the_plucker_rays_of_the_move():
    static = _rays("Static")
    assert torch.all(static[..., :3] == 0) and torch.allclose(static, static[:1].expand_as(static))
    # the pinhole: 32x32 is narrower than the 1280x720 poses, so fx becomes 0.5 * 32 * 16/9 / 32
    fx, fy = 0.5 * 32 * 16 / 9, 0.5 * 32
    centres = torch.arange(32) + 0.5
    y, x = torch.meshgrid((centres - 16) / fy, (centres - 16) / fx, indexing="ij")
    d = torch.stack((x, y, torch.ones_like(x)), dim=-1)
    d = d / d.norm(dim=-1, keepdim=True)
    assert torch.allclose(static[0, ..., 3:], d, atol=1e-6)

    pan = _rays("Pan Right", speed=2.0)   # picture i at x = i / 5 * 2 * 1.5, same directions
    for i in range(5):
        o = torch.tensor([i / 5 * 3.0, 0.0, 0.0])
        assert torch.allclose(pan[i, ..., 3:], d, atol=1e-6)
        assert torch.allclose(pan[i, ..., :3], torch.linalg.cross(o.expand_as(d), d, dim=-1), atol=1e-6)

    cw = _rays("ClockWise (CW)")   # picture i rotated about z by i / 5 * 60 degrees
    a = torch.tensor(4 / 5 * torch.pi / 3)
    rz = torch.tensor([[a.cos(), -a.sin(), 0], [a.sin(), a.cos(), 0], [0, 0, 1]])
    assert torch.allclose(cw[4, ..., 3:], d @ rz.T, atol=1e-6) and torch.all(cw[..., :3] == 0)
    with pytest.raises(ValueError, match="4n \\+ 1"):
        _rays("Static", length=6)


def test_camera_image_to_video_conditioning():
    from comfyui.models.latent_formats import Wan21
    from comfyui.models.registry import detect_family
    from models import wan_fixtures as fx

    vae = RecordingVAE()
    camera = torch.rand(1, 24, 2, 32, 32)
    pos, neg, latent = wan.WanCameraImageToVideo.execute(
        TEXT, TEXT, vae, 32, 32, 5, 1, start_image=torch.rand(1, 48, 40, 3), clip_vision_output=_cv(2, 1.0),
        camera_conditions=camera).args
    cond = pos[0][1]
    assert latent["samples"].shape == (1, 16, 2, 4, 4) and cond["camera_conditions"] is camera
    assert torch.all(cond["concat_latent_image"][:, :, 0] == 1.0)          # the start image
    rest = Wan21().process_in(cond["concat_latent_image"][:, :, 1:])
    assert torch.allclose(rest, torch.zeros_like(rest), atol=1e-6)
    mask = cond["concat_mask"]
    assert mask.shape == (1, 4, 2, 4, 4) and torch.all(mask[:, :, 0] == 0) and torch.all(mask[:, :, 1] == 1)
    assert "clip_vision_output" in neg[0][1] and neg[0][1]["camera_conditions"] is camera

    native = fx.native_sd(fx.diffusers_wan(seed=3, i2v=True, in_channels=36))
    plain_family, plain_config = detect_family(native, "")
    native.update(fx.fun_camera_adapter(native, 24))
    family, config = detect_family(native, "")
    noise = torch.zeros(1, 16, 2, 4, 4)
    assert family.model_class(config, family).extra_conds(noise=noise, **cond)["camera_conditions"].cond is camera
    assert "camera_conditions" not in plain_family.model_class(plain_config, plain_family).extra_conds(noise=noise, **cond)


def test_tracks_are_resampled_to_the_frames():
    from comfyui.nodes.builtin._wan_tracks import parse_tracks, track_tensor
    track = [{"x": float(i), "y": 8.0} for i in range(130)]          # cut to 121 points
    (batch,) = parse_tracks(str([track]).replace('"', "'"))
    t = track_tensor(batch + [track[:3]], width=64, height=32, frames=4)
    assert t.shape == (5, 2, 4)
    picked = torch.tensor([0, 2, 32, 62, 92])   # the first, then every 30th of the other 120, from the 2nd
    assert torch.allclose(t[:, 0, 0], torch.linspace(-1, 1, 121)[picked])
    assert torch.allclose(t[:, 0, 1], (picked.float() - 32) / 32 * 2) and torch.all(t[:, 0, 2] == (8 - 16) / 32 * 2)
    assert torch.all(t[:2, 1, 3] == 1) and torch.all(t[2:, 1, 3] == -1)   # a 3-point track: points 0 and 2 seen
    assert parse_tracks("[]") == [] and len(parse_tracks(str([[track], [track]]))) == 2
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_tracks("[{x: 1}")


def test_patch_motion_paints_the_start_features_along_a_track():
    from comfyui.nodes.builtin._wan_tracks import patch_motion
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, 2, 4, 4, generator=g)                      # [C, T, H, W] latents
    colour = torch.tensor([0.5, -1.0, 2.0])
    video[:, 0] = colour.view(3, 1, 1)                                # a uniform start frame
    point = torch.tensor([1 / 3, -1 / 3])                             # the grid position (row 1, column 2)
    tracks = torch.zeros(5, 1, 4)
    tracks[:, 0, 1:3], tracks[:, 0, 3] = point, 1.0
    mask, features = patch_motion(tracks, video, temperature=1.0, topk=1)
    assert mask.shape == (4, 2, 4, 4) and features.shape == (3, 2, 4, 4)
    assert torch.all(mask[:, 0] == 1) and torch.equal(features[:, 0], video[:, 0])
    grid = torch.linspace(-1, 1, 4)
    for row in range(4):
        for col in range(4):
            weight = torch.exp(-((grid[col] - point[0]) ** 2 + (grid[row] - point[1]) ** 2))
            assert torch.allclose(mask[:, 1, row, col], weight.expand(4), atol=1e-5)
            expected = colour * weight + video[:, 1, row, col] * (1 - weight)
            assert torch.allclose(features[:, 1, row, col], expected, atol=1e-5)
    assert torch.allclose(features[:, 1, 1, 2], colour, atol=1e-5)


def test_track_to_video_without_tracks_is_image_to_video():
    start = torch.rand(1, 32, 32, 3)
    plain = wan.WanImageToVideo.execute(TEXT, TEXT, RecordingVAE(), 32, 32, 5, 1, start_image=start).args
    tracked = wan.WanTrackToVideo.execute(TEXT, TEXT, RecordingVAE(), "[]", 32, 32, 5, 1, 220.0, 2,
                                          start_image=start).args
    assert torch.equal(plain[0][0][1]["concat_latent_image"], tracked[0][0][1]["concat_latent_image"])
    track = str([{"x": 16, "y": 16}] * 121)
    pos, _, latent = wan.WanTrackToVideo.execute(TEXT, TEXT, RecordingVAE(), track, 32, 32, 5, 1, 220.0, 2,
                                                 start_image=start).args
    assert pos[0][1]["concat_mask"].shape == (1, 4, 2, 4, 4) and torch.all(pos[0][1]["concat_mask"][:, :, 0] == 0)
    assert latent["samples"].shape == (1, 16, 2, 4, 4)
