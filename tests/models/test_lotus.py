"""Lotus-D depth estimation: the diffusers-layout file loads as the "lotus_d" variant (8 heads,
img_to_img sampling, the task embedding as ``y``) and its network matches diffusers'
UNet2DConditionModel on the same tiny weights; LotusConditioning gives upstream's tensor; one
sampling step from sigma 10000 returns the network's x0 straight from the image latent."""
import pytest
import torch

from comfyui.models import memory
from comfyui.models.sd import load_diffusion_model_state_dict

from .lotus_fixtures import diffusers_lotus

pytest.importorskip("diffusers")

TASK = torch.tensor([[torch.sin(torch.tensor(1.0)), 0.0, torch.cos(torch.tensor(1.0)), 1.0]])


@pytest.fixture(autouse=True)
def cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


def test_lotus_file_detected_and_matches_diffusers():
    ref = diffusers_lotus(seed=3).eval()
    patcher = load_diffusion_model_state_dict({k: v.clone() for k, v in ref.state_dict().items()},
                                              weight_dtype=torch.float32)
    model = patcher.model
    assert model.model_config.name == "lotus_d" and model.model_type == "img_to_img"
    assert model.config["adm_in_channels"] == 4 and model.config["num_heads"] == 8
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 2, 1024, generator=torch.Generator().manual_seed(1))
    conds = model.extra_conds(cross_attn=context, noise=x, device=torch.device("cpu"))
    assert torch.allclose(conds["y"], TASK)
    sigma = torch.tensor([10000.0])
    ours = model.apply_model(x, sigma, **conds)
    timestep = model.model_sampling.timestep(sigma)
    assert timestep.item() == pytest.approx(999.0)          # the schedule's last step
    with torch.no_grad():
        theirs = ref(x, timestep, encoder_hidden_states=context, class_labels=TASK).sample
    assert torch.allclose(ours, theirs, atol=1e-5)          # img_to_img: the input as is, output = x0


def test_lotus_conditioning_is_upstreams_tensor():
    from comfyui.nodes.builtin.lotus import LotusConditioning
    ((cond, extra),) = LotusConditioning.execute().args[0]
    assert cond.shape == (1, 2, 1024) and cond.dtype == torch.float32 and extra == {}
    # spot values of upstream's literal (first, the two largest magnitudes, last)
    assert cond[0, 0, 0].item() == -0.3134765625 and cond[0, 1, -1].item() == 1.5009765625
    assert cond.max().item() == 13.0234375 and cond.min().item() == -5.7578125
