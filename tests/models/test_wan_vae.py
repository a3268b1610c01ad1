"""The Wan 2.1 causal 3-D VAE against diffusers' AutoencoderKLWan on the same tiny random
weights (diffusers' own converter maps the released layout to its keys), the real-size layout
of the shapes spec, causality of the chunked decode, and the loader path: VAELoader's loader
detects it from its keys and VAEEncode / VAEDecode turn frame batches into 5-D latents and back."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from . import wan_fixtures as fx

_threads = pytest.fixture(scope="module", autouse=True)(fx.one_thread)

from comfyui.models.wan.vae import WanVAE, is_wan21_vae, vae_config  # noqa: E402

SHAPES = Path(__file__).with_name("data") / "model-families-shapes.json.gz"


@pytest.fixture(scope="module")
def tiny():
    sd = fx.wan_vae_sd(seed=0)
    net = WanVAE(**vae_config(sd)).eval()
    net.load_state_dict(sd, strict=True)
    return sd, net


def test_real_layout_and_config_from_the_spec():
    entry = json.loads(gzip.decompress(SHAPES.read_bytes()))["wan_2.1_vae (dim 96, z 16)"]["shapes"]
    sd = {k: torch.empty(v, device="meta") for k, v in entry.items()}
    assert is_wan21_vae(sd)
    config = vae_config(sd)
    assert config == {"dim": 96, "z_dim": 16, "dim_mult": (1, 2, 4, 4), "num_res_blocks": 2,
                      "temporal_downsample": (False, True, True)}
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in WanVAE(**config).state_dict().items()}
    assert ours == entry


def test_matches_diffusers(tiny):
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    sd, net = tiny
    ref = AutoencoderKLWan(base_dim=16, z_dim=16).eval()
    ref.load_state_dict(convert_wan_vae_to_diffusers(dict(sd)), strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 5, 16, 16, generator=g) * 2 - 1
    with torch.no_grad():
        z, z_ref = net.encode(x), ref.encode(x).latent_dist.mean
        assert z.shape == (1, 16, 2, 2, 2)
        assert (z - z_ref).abs().max() < 1e-5 * max(1.0, z_ref.abs().max().item())
        y, y_ref = net.decode(z), ref.decode(z).sample  # diffusers clamps to -1..1
        assert y.shape == (1, 3, 5, 16, 16)
        assert (y.clamp(-1, 1) - y_ref).abs().max() < 2e-5


def test_decode_is_causal(tiny):
    """Decoding the first latent frames gives the first pictures of the longer decode (what
    temporal tiling relies on)."""
    _, net = tiny
    z = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, head = net.decode(z), net.decode(z[:, :, :2])
    assert full.shape[2] == 9 and head.shape[2] == 5
    assert torch.allclose(full[:, :, :5], head, atol=1e-5)
    assert (full[:, :, 5:] - full[:, :, 4:5]).abs().max() > 1e-4


def test_loader_and_vae_nodes_on_frame_batches(tiny, tmp_path):
    from safetensors.torch import save_file

    from comfyui.models import sd as loaders
    from comfyui.models.video_vae import VideoVAE
    from comfyui.nodes.builtin.vae import VAEDecode, VAEEncode

    sd, net = tiny
    path = tmp_path / "wan_2.1_vae.safetensors"
    save_file(sd, str(path))
    vae = loaders.load_vae(str(path))
    assert isinstance(vae, VideoVAE) and vae.latent_dim == 3 and vae.latent_channels == 16
    assert vae.spacial_compression_decode() == 8 and vae.temporal_compression_decode() == 4
    frames = torch.rand(9, 24, 16, 3, generator=torch.Generator().manual_seed(3))  # IMAGE [T, H, W, C]
    (latent,) = VAEEncode().encode(vae, frames)
    assert latent["samples"].shape == (1, 16, 3, 3, 2)
    with torch.no_grad():
        expected = net.float().encode(frames.movedim(-1, 0)[None] * 2 - 1)
    assert torch.allclose(latent["samples"], expected, atol=1e-4)
    (images,) = VAEDecode().decode(vae, latent)
    assert images.shape == (9, 24, 16, 3) and images.min() >= 0 and images.max() <= 1
    with torch.no_grad():
        pictures = ((net.decode(expected) + 1) / 2).clamp(0, 1)[0].movedim(0, -1)
    assert torch.allclose(images, pictures, atol=1e-4)


# ------------------------------------------------------------------------------ Wan 2.2
def test_wan22_vae_matches_diffusers():
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKLWan

    from comfyui.models.wan.vae import WanVAE22, is_wan22_vae, vae22_config
    sd = fx.wan22_vae_sd(seed=0)
    assert is_wan22_vae(sd) and not is_wan21_vae(sd)
    config = vae22_config(sd)
    assert config == {"dim": 16, "dec_dim": 24, "z_dim": 8, "dim_mult": (1, 2, 4, 4), "num_res_blocks": 2,
                      "temporal_downsample": (False, True, True)}
    net = WanVAE22(**config).eval()
    net.load_state_dict(sd, strict=True)
    ref = AutoencoderKLWan(base_dim=16, decoder_base_dim=24, z_dim=8, is_residual=True, in_channels=12,
                           out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                           latents_mean=[0.0] * 8, latents_std=[1.0] * 8).eval()
    ref.load_state_dict(fx.wan22_vae_to_diffusers(sd), strict=True)
    x = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        z, z_ref = net.encode(x), ref.encode(x).latent_dist.mean
        assert z.shape == (1, 8, 2, 2, 2)  # 16x spatial, 4x temporal
        assert (z - z_ref).abs().max() < 1e-5 * max(1.0, z_ref.abs().max().item())
        y, y_ref = net.decode(z), ref.decode(z).sample
        assert y.shape == x.shape
        assert (y.clamp(-1, 1) - y_ref).abs().max() < 2e-5


def test_wan22_real_size_config_and_loader(tmp_path):
    from safetensors.torch import save_file

    from comfyui.models import sd as loaders
    from comfyui.models.wan.vae import WanVAE22, vae22_config
    with torch.device("meta"):
        real = WanVAE22().state_dict()  # upstream's config: dim 160, decoder 256, z 48
    assert vae22_config(real) == {"dim": 160, "dec_dim": 256, "z_dim": 48, "dim_mult": (1, 2, 4, 4),
                                  "num_res_blocks": 2, "temporal_downsample": (False, True, True)}
    path = tmp_path / "wan2.2_vae_tiny.safetensors"
    save_file(fx.wan22_vae_sd(seed=1, z_dim=48), str(path))
    vae = loaders.load_vae(str(path))
    assert vae.latent_channels == 48 and vae.spacial_compression_decode() == 16
    latent = vae.encode(torch.rand(5, 32, 48, 3))
    assert latent.shape == (1, 48, 2, 2, 3)
    assert vae.decode(latent).shape == (1, 5, 32, 48, 3)
