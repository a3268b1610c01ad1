"""SD_4XUpscale_Conditioning: the image in -1..1 resized (bilinear, centre crop) to a quarter of
the target size on both conditionings with the noise level, and an empty latent of that size."""
import pytest
import torch
import torch.nn.functional as F

from comfyui.nodes.builtin.sd_upscale import SD_4XUpscale_Conditioning


def test_conditioning_and_latent():
    images = torch.rand(2, 24, 32, 3, generator=torch.Generator().manual_seed(0))
    cond = [[torch.zeros(1, 77, 8), {"pooled_output": torch.zeros(1, 8)}]]
    pos, neg, latent = SD_4XUpscale_Conditioning().encode(images, cond, cond, 2.0, 0.25)
    want = F.interpolate(images.movedim(-1, 1) * 2 - 1, size=(12, 16), mode="bilinear")  # target 48x64 / 4
    for c in (pos, neg):
        torch.testing.assert_close(c[0][1]["concat_image"], want)
        assert c[0][1]["noise_augmentation"] == 0.25 and "pooled_output" in c[0][1]
    assert "concat_image" not in cond[0][1]
    assert latent["samples"].shape == (2, 4, 12, 16) and not latent["samples"].any()
    _, _, default = SD_4XUpscale_Conditioning().encode(images, cond, cond, 4.0, 0.0)
    assert default["samples"].shape == (2, 4, 24, 32)  # x4 of the input in pixels, / 4 in latents
    with pytest.raises(ValueError, match="under 4 pixels"):
        SD_4XUpscale_Conditioning().encode(images, cond, cond, 0.0, 0.0)
