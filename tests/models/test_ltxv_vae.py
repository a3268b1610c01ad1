"""The LTX-Video causal video VAE against diffusers' AutoencoderKLLTXVideo on tiny random
weights in the checkpoint layout (converted with diffusers' own single-file converter), the
version guess from shapes, the metadata config, and the seeded decode noise."""
from __future__ import annotations

import pytest
import torch

from comfyui.models.ltxv.vae import LTXVVAE, build_vae, guess_config

# the 0.9.0 block list with one layer per res block (base width 16 from the tensors)
TINY_090 = {"encoder_blocks": [["res_x", 1], ["compress_all", 1], ["res_x_y", 1], ["res_x", 1], ["compress_all", 1],
                               ["res_x_y", 1], ["res_x", 1], ["compress_all", 1], ["res_x", 1], ["res_x", 1]],
            "patch_size": 4, "norm_layer": "pixel_norm", "latent_log_var": "uniform", "causal_decoder": False,
            "timestep_conditioning": False, "spatial_padding_mode": "zeros"}
TINY_090["decoder_blocks"] = TINY_090["encoder_blocks"]


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in ** 0.5))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def _tiny(config=TINY_090, seed=0) -> LTXVVAE:
    vae = LTXVVAE(config, 16, 64).eval()
    _randomise(vae, seed)
    stats = vae.per_channel_statistics
    stats.get_buffer("mean-of-means").copy_(torch.linspace(-0.2, 0.2, 128))
    stats.get_buffer("std-of-means").copy_(torch.linspace(0.5, 1.5, 128))
    return vae


def _diffusers(native_sd):
    from diffusers import AutoencoderKLLTXVideo
    from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers
    ref = AutoencoderKLLTXVideo(block_out_channels=(16, 32, 64, 64), decoder_block_out_channels=(16, 32, 64, 64),
                                layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1)).eval()
    converted = convert_ltx_vae_checkpoint_to_diffusers({"vae." + k: v.clone() for k, v in native_sd.items()})
    missing, unexpected = ref.load_state_dict(converted, strict=False)
    assert not missing, missing
    assert set(unexpected) <= {"per_channel_statistics.mean-of-stds_over_std-of-means", "per_channel_statistics.channel",
                               "per_channel_statistics.mean-of-stds"}, unexpected
    return ref


def test_vae_matches_diffusers():
    ours = _tiny()
    sd = ours.state_dict()
    assert sum(v.numel() for v in sd.values()) < 6_000_000
    ref = _diffusers(sd)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 9, 64, 96, generator=g) * 2 - 1
    with torch.no_grad():
        means = ours.encoder(x)
        ref_means = ref.encode(x).latent_dist.mean
        assert means.shape == (1, 128, 2, 2, 3)
        torch.testing.assert_close(means, ref_means, atol=1e-4, rtol=1e-4)
        z = torch.randn(1, 128, 3, 2, 3, generator=g)
        out = ours.decoder(z)
        ref_out = ref.decode(z).sample
    assert out.shape == (1, 3, 17, 64, 96)
    torch.testing.assert_close(out, ref_out, atol=1e-4, rtol=1e-4)
    # the statistics normalise the encoder output and undo it before decoding
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), (means - ours.per_channel_statistics.get_buffer("mean-of-means")
                                                    .view(1, -1, 1, 1, 1)) /
                                   ours.per_channel_statistics.get_buffer("std-of-means").view(1, -1, 1, 1, 1))
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        ours.encode(x[:, :, :8])


def test_version_guess_from_real_shapes():
    import gzip
    import json
    from pathlib import Path
    entries = json.loads(gzip.decompress((Path(__file__).with_name("data") / "model-families-shapes.json.gz").read_bytes()))
    seen = {}
    for name, entry in entries.items():
        if name.startswith("ltxv vae"):
            sd = {k: torch.empty(s, device="meta") for k, s in entry["shapes"].items()}
            config = guess_config(sd)
            with torch.device("meta"):
                vae = build_vae(sd)
            ours = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
            assert ours == {k: tuple(v) for k, v in entry["shapes"].items()}, name
            seen[name] = config["timestep_conditioning"]
    assert len(seen) >= 2 and set(seen.values()) == {False, True}


def test_timestep_conditioned_decode_noise_is_seeded():
    config = {**TINY_090, "timestep_conditioning": True,
              "decoder_blocks": [["res_x", {"num_layers": 1, "inject_noise": True}],
                                 ["compress_all", {"residual": True, "multiplier": 2}],
                                 ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
                                 ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
                                 ["res_x", {"num_layers": 1}]]}
    vae = LTXVVAE(config, 32, 256).eval()
    _randomise(vae, 3)
    vae.per_channel_statistics.get_buffer("std-of-means").fill_(1.0)
    z = torch.randn(1, 128, 2, 1, 1, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, b = vae.decode(z, seed=7), vae.decode(z, seed=7)
        c = vae.decode(z, seed=8)
        vae.decode_seed = 7
        d = vae.decode(z)
    assert a.shape == (1, 3, 9, 32, 32)
    assert torch.equal(a, b) and torch.equal(a, d) and not torch.equal(a, c)


TINY_091 = {**TINY_090, "timestep_conditioning": True,
            "decoder_blocks": [["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
                               ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
                               ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
                               ["res_x", {"num_layers": 1}]]}


def test_timestep_conditioned_decoder_matches_diffusers():
    """The 0.9.1 decoder layout (residual depth-to-space upsamplers halving the width,
    timestep-conditioned residual blocks and output modulation; noise injection off)."""
    from diffusers import AutoencoderKLLTXVideo
    from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers
    ours = LTXVVAE(TINY_091, 16, 128).eval()
    _randomise(ours, 5)
    ref = AutoencoderKLLTXVideo(block_out_channels=(16, 32, 64, 64), decoder_block_out_channels=(32, 64, 128),
                                layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
                                decoder_spatio_temporal_scaling=(True, True, True),
                                decoder_inject_noise=(False, False, False, False), upsample_residual=(True, True, True),
                                upsample_factor=(2, 2, 2), timestep_conditioning=True).eval()
    converted = convert_ltx_vae_checkpoint_to_diffusers({"vae." + k: v.clone() for k, v in ours.state_dict().items()})
    missing, _ = ref.load_state_dict(converted, strict=False)
    assert not missing, missing
    z = torch.randn(1, 128, 2, 2, 2, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([0.05])
    with torch.no_grad():
        out = ours.decoder(z, t)
        ref_out = ref.decode(z, temb=t).sample
    assert out.shape == (1, 3, 9, 64, 64)
    torch.testing.assert_close(out, ref_out, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        assert (ours.decoder(z, torch.tensor([0.5])) - out).abs().max() > 1e-3  # the timestep is used
