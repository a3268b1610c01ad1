"""Detection on real-size layouts, from shapes only (meta tensors, no weights).

``model-families-shapes.json`` (the shared spec) holds the key -> shape maps of 26 real models
with the config upstream ComfyUI detects for each. Every diffusion-model entry runs through
:func:`detect_family`: where a registered family takes it, its config must hold upstream's
values exactly and its latent format and sampling settings must be upstream's; where no
family is registered yet, detection must refuse it, and the entry is reported as an expected
failure naming what is missing (so adding a family's detector is what turns it green).
The SD families (not in that file) are checked by a round trip through real-size UNets.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from comfyui.models.family import UnknownModelError
from comfyui.models.registry import detect_family
from comfyui.models.stable_diffusion.unet import UNetModel

# a gzipped copy of the spec's model-families-shapes.json (generated from upstream's classes on
# the meta device: key names, shapes and upstream's detected configs -- facts, no weights)
SHAPES = Path(__file__).with_name("data") / "model-families-shapes.json.gz"
ENTRIES = json.loads(gzip.decompress(SHAPES.read_bytes()))
DIFFUSION_ENTRIES = {name: e for name, e in ENTRIES.items() if "upstream_detected_config" in e}
# upstream's class selector, not a network setting
NOT_CONFIG = {"image_model"}


def meta_state_dict(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


def test_the_spec_file_is_there():
    assert len(DIFFUSION_ENTRIES) == 20 and len(ENTRIES) == 26


@pytest.mark.parametrize("name", sorted(DIFFUSION_ENTRIES))
def test_detection_matches_upstream(name):
    entry = DIFFUSION_ENTRIES[name]
    sd = meta_state_dict(entry["shapes"])
    try:
        family, config = detect_family(sd, "")
    except UnknownModelError as exc:
        assert "no model family matches" in str(exc)
        pytest.xfail(f"no family registered yet for upstream's {entry['upstream_model_config_class']}")
    expected = {k: v for k, v in entry["upstream_detected_config"].items() if k not in NOT_CONFIG}
    # the spec file writes tuples as their str() (e.g. Wan's patch_size "(1, 2, 2)")
    got = {k: str(v) if isinstance(v := config.get(k, "<missing>"), tuple) and isinstance(expected[k], str) else v
           for k in expected}
    assert got == expected, f"{family.name}: config differs from upstream's"
    assert family.latent_format.__name__ == entry["latent_format"]
    sampling = dict(family.sampling)
    for key, value in entry["sampling_settings"].items():
        assert sampling.get(key) == pytest.approx(value), (family.name, key)


# --------------------------------------------------------------------------- SD families
SD_CONFIGS = {
    # upstream ComfyUI's unet_config of each (supported_models.py), as our UNet takes it
    "sd15": dict(in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4],
                 num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                 context_dim=768, use_linear_in_transformer=False, num_heads=8, num_head_channels=-1),
    "sd20": dict(in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4],
                 num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                 context_dim=1024, use_linear_in_transformer=True, num_heads=-1, num_head_channels=64),
    "sd21_unclip": dict(in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4],
                        num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                        transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                        context_dim=1024, use_linear_in_transformer=True, num_heads=-1, num_head_channels=64,
                        adm_in_channels=2048),
    "sdxl": dict(in_channels=4, out_channels=4, model_channels=320, channel_mult=[1, 2, 4],
                 num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 2, 2, 10, 10],
                 transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], transformer_depth_middle=10,
                 context_dim=2048, use_linear_in_transformer=True, num_heads=-1, num_head_channels=64,
                 adm_in_channels=2816),
    "sdxl_refiner": dict(in_channels=4, out_channels=4, model_channels=384, channel_mult=[1, 2, 4, 4],
                         num_res_blocks=[2, 2, 2, 2], transformer_depth=[0, 0, 4, 4, 4, 4, 0, 0],
                         transformer_depth_output=[0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0],
                         transformer_depth_middle=4, context_dim=1280, use_linear_in_transformer=True,
                         num_heads=-1, num_head_channels=64, adm_in_channels=2560),
}


def _sd_meta(config: dict) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return UNetModel(**config).state_dict()


@pytest.mark.parametrize("name", sorted(SD_CONFIGS))
@pytest.mark.parametrize("inpaint", [False, True])
def test_sd_detection_round_trips_real_sizes(name, inpaint):
    if inpaint and name in ("sd21_unclip", "sdxl_refiner"):
        return
    config = dict(SD_CONFIGS[name], in_channels=9 if inpaint else 4)
    family, detected = detect_family(_sd_meta(config), "")
    assert family.name == name
    assert family.variant_name(detected) == name + ("_inpaint" if inpaint else "")
    assert detected == config
