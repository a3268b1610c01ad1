"""LTX-Video 0.9.x: the transformer against diffusers' LTXVideoTransformer3DModel on tiny random
weights in the checkpoint layout, detection (shapes, the 32-head rule, metadata config),
per-token timesteps from the denoise mask, the flow sampling settings and the latent format."""
from __future__ import annotations

import json

import pytest
import torch

from comfyui.models.ltxv.detection import detect
from comfyui.models.ltxv.model import LTXVModel, latent_coords, patchify, pixel_coords
from comfyui.models.registry import detect_family

from . import ltxv_fixtures as fx


def _ours(dm) -> LTXVModel:
    sd = fx.to_native(dm.state_dict())
    config = detect(sd)
    model = LTXVModel(**config)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not missing and not unexpected
    return model.eval()


def _coords(frames, h, w, frame_rate, b=1):
    c = pixel_coords(latent_coords(frames, h, w, b, "cpu")).float()
    c[:, 0] /= frame_rate
    return c


@pytest.mark.parametrize("frame_rate", [25, 8])
def test_transformer_matches_diffusers(frame_rate):
    dm = fx.diffusers_ltxv(seed=1)
    ours = _ours(dm)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 128, 3, 4, 5, generator=g)
    ctx = torch.randn(2, 7, 64, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    sigma = torch.tensor([0.7, 0.3])
    with torch.no_grad():
        out = ours(x, sigma, ctx, attention_mask=mask, frame_rate=frame_rate)
        ref = dm(hidden_states=patchify(x), encoder_hidden_states=ctx, timestep=sigma * 1000,
                 encoder_attention_mask=mask, video_coords=_coords(3, 4, 5, frame_rate, 2), return_dict=False)[0]
    assert out.shape == x.shape
    torch.testing.assert_close(patchify(out), ref, atol=1e-4, rtol=1e-4)
    # the positions matter: another frame rate gives another output
    with torch.no_grad():
        other = ours(x, sigma, ctx, attention_mask=mask, frame_rate=frame_rate * 2)
    assert (other - out).abs().max() > 1e-3


def test_per_token_timesteps_match_diffusers():
    """A denoise mask of 0 on the first latent frame (image-to-video) gives those tokens
    timestep 0 and the others sigma, as diffusers' per-token timestep does."""
    from comfyui.models.ltxv import FAMILIES
    from comfyui.models.ltxv.base import LTXV
    dm = fx.diffusers_ltxv(seed=3)
    native = fx.to_native(dm.state_dict())
    model = LTXV(detect(native), FAMILIES[0])
    model.diffusion_model.load_state_dict(native)
    model.eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 128, 2, 3, 3, generator=g)
    ctx = torch.randn(1, 5, 64, generator=g)
    dmask = torch.ones_like(x)
    dmask[:, :, 0] = 0.0
    sigma = torch.tensor([0.6])
    conds = model.extra_conds(cross_attn=ctx, denoise_mask=dmask, frame_rate=24, noise=x)
    assert conds["frame_rate"] == 24.0
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds)
        per_token = torch.full((1, 18), 600.0)
        per_token[:, :9] = 0.0
        v = dm(hidden_states=patchify(x), encoder_hidden_states=ctx, timestep=per_token,
               encoder_attention_mask=None, video_coords=_coords(2, 3, 3, 24), return_dict=False)[0]
    v = v.transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(denoised, x - 0.6 * v, atol=1e-4, rtol=1e-4)
    # and without the mask every token runs at sigma: a different output
    conds.pop("denoise_mask")
    with torch.no_grad():
        plain = model.apply_model(x, sigma, **conds)
    assert (plain - denoised)[:, :, 0].abs().max() > 1e-3
    # the sampler keeps the kept tokens clean (no re-noising)
    assert model.scale_latent_inpaint(sigma=sigma, noise=x, latent_image=ctx) is ctx


def test_detection_reads_shapes_and_metadata():
    dm = fx.diffusers_ltxv(seed=5, layers=3)
    sd = fx.to_native(dm.state_dict(), "model.diffusion_model.")
    family, config = detect_family(sd, "model.diffusion_model.")
    assert family.name == "ltxv" and family.latent_format.__name__ == "LTXV"
    assert dict(family.sampling) == {"type": "flux", "shift": 2.37}
    assert config["num_layers"] == 3 and config["attention_head_dim"] == 8 and config["num_attention_heads"] == 32
    assert config["cross_attention_dim"] == 256 and config["caption_channels"] == 64
    # a PixArt layout (pos_embed) is not LTX-Video
    assert detect({**sd, "model.diffusion_model.pos_embed.proj.bias": torch.zeros(1)}, "model.diffusion_model.") is None

    from comfyui.models.loading import StateDict
    with_meta = StateDict(sd)
    with_meta.metadata = {"config": json.dumps({"transformer": {"causal_temporal_positioning": True},
                                                "vae": {"timestep_conditioning": True}})}
    assert detect(with_meta, "model.diffusion_model.")["causal_temporal_positioning"] is True


def test_metadata_travels_from_the_file(tmp_path):
    import safetensors.torch
    from comfyui.models.loading import load_torch_file
    dm = fx.diffusers_ltxv(seed=6, layers=1)
    path = tmp_path / "ltxv.safetensors"
    safetensors.torch.save_file(fx.to_native(dm.state_dict()), str(path),
                                metadata={"config": json.dumps({"transformer": {"positional_embedding_theta": 500.0}})})
    config = detect(load_torch_file(str(path)))
    assert config["positional_embedding_theta"] == 500.0


def test_causal_temporal_positioning_moves_the_first_frame():
    c = pixel_coords(latent_coords(3, 1, 1, 1, "cpu"), causal_fix=True)
    assert c[0, 0].tolist() == [0, 1, 9]
    assert pixel_coords(latent_coords(3, 1, 1, 1, "cpu"))[0, 0].tolist() == [0, 8, 16]


def test_latent_format_and_t5_attention_mask():
    from comfyui.models.latent_formats import LTXV
    from comfyui.models.text_encoders.recipes import CLIP_TYPES
    from comfyui.models.text_encoders.t5 import end_mask
    fmt = LTXV()
    assert fmt.latent_channels == 128 and fmt.latent_dimensions == 3 and len(fmt.latent_rgb_factors) == 128
    x = torch.randn(1, 128, 2, 2, 2)
    assert torch.equal(fmt.process_in(x), x)
    ltxv = CLIP_TYPES["ltxv"]
    assert ltxv.recipes == ("t5xxl",) and ltxv.options["t5xxl"]["min_length"] == 128
    assert end_mask(torch.tensor([[5, 6, 1, 0, 0], [1, 0, 0, 0, 0]])).tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
